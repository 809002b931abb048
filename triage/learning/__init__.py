"""The learned extractor: a text classifier per enum field, fitted on a team's labelled tickets and reviews.

``triage learn`` fits it (:mod:`triage.learning.fit`, scikit-learn) and stores it as a new version in the
database, as numbers (:mod:`triage.learning.store`); every worker scores with the latest version
(:mod:`triage.learning.extractor`); the scheduled job retrains it on the desk's reviews
(:mod:`triage.learning.retrain`).
"""
