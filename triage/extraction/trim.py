"""Size limit: a conversation too long for the model is trimmed by one stated rule.

The size is the length, in characters, of the transcript sent between the prompt's markers
(``customer: ...`` / ``agent: ...``, one line per message; see
:meth:`~triage.conversation.Conversation.transcript`). When it is over ``max_chars``:

1. the **first customer message** is kept (the first message when no customer spoke); when
   later messages exist it may use at most half of ``max_chars``, else all of it; a longer
   one is cut to its head, which ends with ``[... N more characters cut ...]``;
2. then as many of the **latest messages** as fit, newest first, in their order; when not even
   the latest one fits, it is cut to its head the same way;
3. a line ``[... N earlier messages omitted ...]`` follows the first customer message when
   messages were left out (any before the first customer message count too).

The result never exceeds ``max_chars``; a conversation within it is returned as it is.

>>> from triage.conversation import Conversation
>>> convo = Conversation.from_dicts([{"role": "customer", "text": "My Watch S1 will not charge."},
...     *[{"role": "agent", "text": f"Step {i}: try this." * 5} for i in range(20)],
...     {"role": "customer", "text": "Still broken, please replace it."}])
>>> trimmed = trim(convo, 300)
>>> print(trimmed.conversation.transcript())
customer: My Watch S1 will not charge.
[... 19 earlier messages omitted ...]
agent: Step 19: try this.Step 19: try this.Step 19: try this.Step 19: try this.Step 19: try this.
customer: Still broken, please replace it.
>>> trimmed.trimmed, trimmed.omitted
(True, 19)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from triage.conversation import Conversation, Message

OMITTED_MARKER = "[... {n} earlier message{s} omitted ...]"
CUT_MARKER = " [... {n} more characters cut ...]"
#: Below this a limit cannot hold a first message, a marker and a latest turn.
MIN_MAX_CHARS = 200


@dataclass(frozen=True)
class Trimmed:
    """The conversation to send, whether it was trimmed, and how many messages were left out.

    >>> Trimmed(Conversation.from_text("hi"), trimmed=False).omitted
    0
    """

    conversation: Conversation
    trimmed: bool
    omitted: int = 0


def rendered_size(messages: Sequence[Message]) -> int:
    """Characters of ``messages`` rendered as a transcript (``role: text``, newline-separated).

    >>> rendered_size(Conversation.from_text("hi").messages)
    12
    """
    return sum(_line_size(m.role, m.text) for m in messages) + max(len(messages) - 1, 0)


def trim(conversation: Conversation, max_chars: int) -> Trimmed:
    """``conversation`` cut to at most ``max_chars`` transcript characters by the module's rule.

    >>> big = Conversation.from_text("x" * 1000)
    >>> short = trim(big, 300).conversation
    >>> len(short.transcript()) <= 300, short.messages[0].text.endswith("characters cut ...]")
    (True, True)
    """
    if max_chars < MIN_MAX_CHARS:
        raise ValueError(f"max_chars={max_chars} is below the smallest usable limit, {MIN_MAX_CHARS}")
    messages = conversation.messages
    if rendered_size(messages) <= max_chars:
        return Trimmed(conversation, trimmed=False)
    first_index = next((i for i, m in enumerate(messages) if m.role == "customer"), 0)
    first, later = messages[first_index], messages[first_index + 1:]
    marker_room = 1 + len(_omitted(len(messages)))  # "\n" + marker, with the most digits it can have
    first_room = (max_chars // 2 if later else max_chars) - marker_room
    first_text = _head(first.text, first_room - _line_size(first.role, ""))
    room = max_chars - marker_room - _line_size(first.role, first_text)
    tail = _latest(later, room)
    omitted = len(messages) - 1 - len(tail)
    if omitted:
        first_text = f"{first_text}\n{_omitted(omitted)}"
    kept = (Message(first.role, first_text), *tail)
    return Trimmed(Conversation(kept, metadata=conversation.metadata), trimmed=True, omitted=omitted)


def _latest(later: Sequence[Message], room: int) -> list[Message]:
    """The newest messages that fit in ``room`` (each costs its line and a newline)."""
    tail: list[Message] = []
    for message in reversed(later):
        cost = 1 + _line_size(message.role, message.text)
        if cost > room:
            break
        tail.insert(0, message)
        room -= cost
    if not tail and later:
        latest = later[-1]
        allowance = room - 1 - _line_size(latest.role, "")
        if allowance >= len(CUT_MARKER.format(n=len(latest.text))) + 1:
            tail.append(Message(latest.role, _head(latest.text, allowance)))
    return tail


def _head(text: str, allowance: int) -> str:
    """``text`` when it fits in ``allowance`` characters, else its head plus the cut marker.

    >>> _head("abcdefghij" * 10, 60)
    'abcdefghijabcdefghijabcdef [... 74 more characters cut ...]'
    """
    if len(text) <= allowance:
        return text
    keep = max(allowance - len(CUT_MARKER.format(n=len(text))), 0)
    return text[:keep] + CUT_MARKER.format(n=len(text) - keep)


def _omitted(count: int) -> str:
    return OMITTED_MARKER.format(n=count, s="" if count == 1 else "s")


def _line_size(role: str, text: str) -> int:
    return len(role) + 2 + len(text)
