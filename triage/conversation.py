"""The conversation value passed from intake to extraction: who said what, in order.

>>> convo = Conversation.from_text("My speaker can't connect Wi-Fi")
>>> convo.messages[0].role, convo.customer_text()
('customer', "My speaker can't connect Wi-Fi")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["customer", "agent"]
ROLES: tuple[Role, ...] = ("customer", "agent")


@dataclass(frozen=True)
class Message:
    role: Role
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "text": self.text}


@dataclass(frozen=True)
class Conversation:
    """An ordered list of messages; extraction reads only this, never a platform payload."""

    messages: tuple[Message, ...]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_text(cls, text: str) -> Conversation:
        return cls((Message("customer", text),))

    @classmethod
    def from_dicts(cls, messages: list[dict[str, str]]) -> Conversation:
        return cls(tuple(Message(m["role"], m["text"]) for m in messages))  # type: ignore[arg-type]

    def to_dicts(self) -> list[dict[str, str]]:
        return [m.to_dict() for m in self.messages]

    def customer_text(self) -> str:
        """All customer messages joined by newlines (what the rules extractor reads)."""
        return "\n".join(m.text for m in self.messages if m.role == "customer")

    def transcript(self) -> str:
        """One line per message, ``customer: ...`` / ``agent: ...``."""
        return "\n".join(f"{m.role}: {m.text}" for m in self.messages)
