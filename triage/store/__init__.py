"""Storage: the SQLAlchemy models, engines and sessions, migrations, and the read queries the rest needs.

Writes to a ticket's status go through :mod:`triage.tickets.lifecycle`, never around it.
"""
