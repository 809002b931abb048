"""The Alembic migrations, packaged as ``triage._migrations`` (``triage db``, or ``alembic`` with alembic.ini)."""
