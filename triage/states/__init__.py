"""The statuses, reasons, actions and event kinds of a ticket (:mod:`.tickets`) and of a delivery
(:mod:`.deliveries`): the shared core, so that storage, the stages and the views all use them by name.

The package itself imports nothing.
"""
