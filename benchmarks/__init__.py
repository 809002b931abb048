"""The benchmark harness of ``make bench``: triage in the production shape against its baselines.

``python -m benchmarks --help`` lists the scenarios and options; README.md ("Benchmarks") says what
each row of the results means.
"""
