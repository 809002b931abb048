"""Token counts with the cl100k_base tokenizer (the ``bpe-openai`` package ships its ranks: no download)."""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

ENCODING = "cl100k_base"


@cache
def _encoding() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    """cl100k_base tokens in ``text`` (special-token look-alikes count as plain text)."""
    return len(_encoding().encode_ordinary(text))


def system_prompt_tokens(schema_path: Path, today: date) -> int:
    """Tokens of triage's single-ticket system prompt for the schema at ``schema_path``."""
    from triage.extraction.prompt import TicketPrompt
    from triage.schema import TicketSchema

    return count_tokens(TicketPrompt(TicketSchema.load(schema_path)).system(today))
