"""Intake: turn what a platform (or a JSON Lines file) sends into a stored, queued conversation."""
