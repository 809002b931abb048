"""The Celery entry module: ``celery -A triage.worker worker`` (and ``beat``) works.

This module alone builds the default :class:`~triage.app.App` at import, from the environment;
``triage worker`` and ``triage beat`` build theirs explicitly and never import it.
"""

from __future__ import annotations

from triage.app import App
from triage.settings import load_settings
from triage.worker.tasks import celery_for

app = celery_for(App.build(load_settings()))
