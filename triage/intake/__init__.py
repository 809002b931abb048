"""Intake: turn what a platform (or a JSON Lines file) sends into a stored, queued conversation.

Parsing and verification per source, then one durable, exactly-once store (:mod:`.receive`).
"""
