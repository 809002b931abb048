"""Extraction: a conversation in, a schema-valid ticket (or why not) out, with every LLM attempt recorded.

No Celery, no database: the prompt, the client, parsing, the attempt loop, redaction, trimming, the rules extractor.
"""
