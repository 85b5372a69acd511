"""Registry service: holds model versions, aliases, lineage and the audit log."""
