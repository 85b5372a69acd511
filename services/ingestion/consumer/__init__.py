"""The Kafka side of ingestion: raw topics in, records and dead letters out, exactly once."""
