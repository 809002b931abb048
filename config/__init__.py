"""The shipped configuration (``triage.toml``, ``ticket_schema.json``), packaged as ``triage._config``."""
