"""A ticket's life: where it goes, its allowed transitions as data, and the one module that changes them.

:mod:`triage.tickets.routing` decides a ticket's route, priority and SLA; :mod:`triage.states.tickets`
holds the enums and the transition table; :mod:`triage.tickets.lifecycle` every write.
"""
