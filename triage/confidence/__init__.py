"""How sure the machine is of each routing decision: signals, their combination, and its calibration.

- :mod:`~triage.confidence.signals`: the signal vector of each routing field (parse path, repairs, re-asks,
  disagreeing candidates, injection, trimming, the rules' and the learned model's second opinions, logprobs);
- :mod:`~triage.confidence.combine`: the logistic combination per (routing field, extractor), its documented
  default, the ticket's confidence (its lowest routing field) and the High / Medium / Low :func:`band`;
- :mod:`~triage.confidence.scorer`: what a worker runs on every machine extraction before the policy decides;
- :mod:`~triage.confidence.calibrate`: fitting the combination on labelled decisions (scikit-learn), held-out ECE
  and the thresholds reaching ``quality.target_precision``;
- :mod:`~triage.confidence.store`: calibration versions in the database, as data; :mod:`~triage.cli.calibrate`:
  ``triage calibrate`` and the scheduled job.
"""
