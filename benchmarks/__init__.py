"""The benchmark harness of ``make bench``: triage in the production shape against its baselines.

``python -m benchmarks --help`` lists the scenarios and options; docs/benchmarks.md says what
each row of the results means.
"""
