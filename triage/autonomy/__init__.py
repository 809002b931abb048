"""Autonomy per route: how much of a routed ticket's decision triage writes to the helpdesk by itself.

:mod:`triage.autonomy.levels` holds the levels, the confidence bands and the one precedence table
(:func:`~triage.autonomy.levels.applied`) the worker's policy consults for every valid answer.
"""
