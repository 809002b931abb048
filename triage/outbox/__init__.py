"""The transactional outbox: every decision that must leave triage is a ``deliveries`` row written in
the decision's own transaction, delivered by the Celery task on the queue ``deliveries``.

- :mod:`triage.states.deliveries`: a delivery's kinds and statuses (the shared core);
- :mod:`.rules`: which deliveries a decision needs (pure);
- :mod:`.retry`: when a delivery that did not go through is tried again, and when the outbox gives up
  (transient answers until ``writeback.give_up_after_hours``, others at most ``writeback.max_attempts``);
- :mod:`.outbox`: the :class:`~triage.outbox.outbox.Outbox`: records deliveries from
  :func:`triage.tickets.lifecycle._audit`, publishes them after the commit, and owns every later
  change of a delivery (a lease for each attempt, steps, retries, the end, the sweep, a person's retry)
  and the SLA-breach alerts (:func:`triage.worker.scheduled.sla_alerts` runs them on beat);
- :mod:`.send`: one attempt (the adapters of :mod:`triage.delivery`), the ``deliveries`` task's body.

Nothing here writes a ticket: :mod:`triage.tickets.lifecycle` stays the one writer of tickets.
The package itself imports nothing.
"""
