"""The HTTP service (FastAPI): webhooks in, the dispatch review API, health.

Thin views over intake, the ticket lifecycle and the store's queries; errors map to answers once (:mod:`.errors`).
"""
