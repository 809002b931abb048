"""The message list both intake paths take: ``{"text": str}`` or ``{"messages": [{"role", "text"}, ...]}``.

``triage submit`` lines and generic webhooks share this shape; each raises its own error class::

>>> [m.role for m in parse_messages({"messages": [{"role": "customer", "text": "hi"}]}, ValueError)]
['customer']
>>> parse_messages({"text": 3}, ValueError)
Traceback (most recent call last):
...
ValueError: "text" must be a string
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from triage.conversation import ROLES, Message


def parse_messages(data: Mapping[str, Any], error: type[Exception]) -> tuple[Message, ...]:
    """The messages of ``data``; a malformed shape raises ``error`` naming the field."""
    if "text" in data and "messages" in data:
        raise error('give either "text" or "messages", not both')
    if "text" in data:
        if not isinstance(data["text"], str):
            raise error('"text" must be a string')
        return (Message("customer", data["text"]),)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise error('"text" (a string) or "messages" (a non-empty list) is required')
    parsed = []
    for i, item in enumerate(messages):
        if not isinstance(item, dict) or item.get("role") not in ROLES or not isinstance(item.get("text"), str):
            raise error(f'messages[{i}] must be {{"role": "customer"|"agent", "text": str}}')
        parsed.append(Message(item["role"], item["text"]))
    return tuple(parsed)
