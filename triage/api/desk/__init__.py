"""The dispatch desk: server-rendered pages (Jinja2, htmx as a static file) where the dispatch team signs in,
reviews, claims, releases, corrects, resolves and reprocesses tickets, and sees how accurate the extraction is.

Templates and static files are package data (``templates/``, ``static/``): nothing is loaded from
another site, so the desk works on a network without internet.
"""

from triage.api.desk.views import DESK_PATH, install_desk

__all__ = ["DESK_PATH", "install_desk"]
