"""Ingestion service: validates producer records against the use case's data contract and publishes them."""
