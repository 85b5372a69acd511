"""Shared code of the AI Factory services, written once and imported by each service."""
