"""`make test-chaos`: kill -9 each service and restart Kafka, PostgreSQL and Triton under load;
count what was lost or doubled from independent sources (see :mod:`tests.chaos.suite`)."""
