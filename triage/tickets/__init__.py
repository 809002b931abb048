"""A ticket's life: its statuses and allowed transitions as data, and the one module that changes them.

:mod:`triage.tickets.states` holds the enums and the transition table; :mod:`triage.tickets.lifecycle` every write.
"""
