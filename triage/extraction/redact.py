"""PII redaction: e-mail addresses, phone numbers, Chinese ID numbers and card numbers become
typed placeholders before a conversation leaves for the LLM API.

Only the text *sent* is redacted; the stored conversation keeps the original. Each kind has its
own switch in :class:`~triage.settings.PrivacySettings` (``[privacy]`` in the config file).

>>> from triage.settings import PrivacySettings
>>> found = redact("Mail me at li.lei@example.com or call +86 138 0013 8000, card 4111 1111 1111 1111",
...                PrivacySettings())
>>> found.text
'Mail me at [EMAIL] or call [PHONE], card [CARD]'
>>> found.counts
{'email': 1, 'phone': 1, 'card': 1}

The rules, applied in this order (an earlier kind's placeholder hides its digits from later ones):

- **email**: ``local@domain.tld`` with an ASCII local part and a dotted ASCII domain whose last
  label is 2+ letters (``[EMAIL]``). A QQ-mail address like ``13800138000@qq.com`` is one e-mail.
- **id_number**: an 18-character Chinese resident ID (region, a 19xx/20xx birth date, sequence,
  check character ``0-9`` or ``X``) whose ISO 7064 MOD 11-2 check character is right (``[ID_NUMBER]``).
- **phone** (``[PHONE]``), each standing alone (no letter or digit glued to either end):
  ``+`` and 8-15 digits with spaces, dashes or parentheses between (``+86 138 0013 8000``,
  ``+1 (415) 555-2671``); a Chinese mobile ``1[3-9]X XXXX XXXX`` (11 digits, optionally grouped
  3-4-4 with spaces or dashes); a North American ``(415) 555-2671`` / ``415-555-2671`` /
  ``415.555.2671`` / ``415 555 2671`` (one separator kind); a Chinese landline with its area code
  marked, ``010-12345678`` / ``(0755) 1234567``.
- **card**: 13-19 digits, alone or in groups of 3+ digits split by single spaces or dashes, that
  pass the Luhn check and do not start with 0; a 15-digit number counts only with Amex's 34/37
  prefix, because a 15-digit Luhn-valid number is far more often a phone's IMEI (``[CARD]``).

What is deliberately *not* touched: dates (``2024-11-25``), prices (``RMB 1299``), model names
(``AX3000``, ``Watch S1``), version and IP numbers (``14.0.3``, ``192.168.31.1``), order numbers
of other lengths, IMEIs. Full-width digits, letters and signs are recognised like ASCII ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from triage.conversation import Conversation, Message
from triage.settings import PrivacySettings

PLACEHOLDERS = {"email": "[EMAIL]", "id_number": "[ID_NUMBER]", "phone": "[PHONE]", "card": "[CARD]"}

#: One-to-one character folding used for *matching only* (positions stay aligned with the
#: original): full-width digits, letters, at, plus, minus, parentheses, full stop, and wide spaces become ASCII.
_FOLD: dict[int, int | str] = {
    **{0xFF10 + i: ord("0") + i for i in range(10)},
    **{0xFF21 + i: ord("A") + i for i in range(26)},
    **{0xFF41 + i: ord("a") + i for i in range(26)},
    0xFF20: "@", 0xFF0B: "+", 0xFF0D: "-", 0xFF08: "(", 0xFF09: ")", 0xFF0E: ".",
    0x3000: " ", 0x00A0: " ",
}

_FOLDABLE = re.compile("[" + "".join(re.escape(chr(code)) for code in _FOLD) + "]")

_START = r"(?<![A-Za-z0-9])"
_END = r"(?![A-Za-z0-9])"

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9\-]{1,63}\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
_ID_NUMBER = re.compile(
    _START + r"[1-8][0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]" + _END
)
_PHONE = re.compile(
    "|".join((
        # international: + and 8-15 digits, spaces / dashes / parentheses between them
        r"(?<![A-Za-z0-9+])\+[0-9](?:[ \-()]{0,2}[0-9]){7,14}(?![0-9])",
        # Chinese mobile, 11 digits, optionally 3-4-4
        _START + r"1[3-9][0-9](?:[ \-]?[0-9]{4}){2}" + _END,
        # North American: (415) 555-2671, or 415-555-2671 / 415.555.2671 / 415 555 2671
        r"(?<![A-Za-z0-9.])(?:\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[\-. ]|[2-9][0-9]{2}(?P<sep>[\-. ])[2-9][0-9]{2}(?P=sep))"
        r"[0-9]{4}(?![A-Za-z0-9]|\.[0-9])",
        # Chinese landline with its area code marked: 010-12345678, (0755) 1234567
        _START + r"(?:\(0[1-9][0-9]{1,2}\) ?|0[1-9][0-9]{1,2}-)[1-9][0-9]{6,7}" + _END,
    ))
)
#: Card candidates: 13+ characters of digits, alone or in groups of 3+ split by single spaces or dashes.
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9+])(?=[0-9 \-]{13})[0-9]{3,}(?:[ \-][0-9]{3,})*(?![A-Za-z0-9])")
_GROUP = re.compile(r"[0-9]+")

CARD_MIN_DIGITS, CARD_MAX_DIGITS = 13, 19
IMEI_LENGTH, AMEX_PREFIXES = 15, ("34", "37")
#: Each digit of a Luhn number's doubled positions -> the digit sum of its double.
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"

Span = tuple[int, int]


@dataclass(frozen=True)
class Redacted:
    """The redacted text and how many of each kind were replaced (kinds found only).

    >>> Redacted("call [PHONE]", {"phone": 1}).counts["phone"]
    1
    """

    text: str
    counts: dict[str, int] = field(default_factory=dict)


def redact(text: str, settings: PrivacySettings) -> Redacted:
    """Replace the PII kinds switched on in ``settings`` with ``[EMAIL]``, ``[PHONE]``, ...

    >>> redact("order 2024-11-25, RMB 1299, AX3000, 13800138000", PrivacySettings()).text
    'order 2024-11-25, RMB 1299, AX3000, [PHONE]'
    >>> redact("13800138000", PrivacySettings(redact_pii=False)).text
    '13800138000'
    """
    counts: dict[str, int] = {}
    if not settings.redact_pii:
        return Redacted(text, counts)
    folded = fold(text)
    for kind, enabled, find in (("email", settings.emails, _emails), ("id_number", settings.id_numbers, _id_numbers),
                                ("phone", settings.phones, _phones), ("card", settings.cards, _cards)):
        spans = find(folded) if enabled else []
        if spans:  # the same spans in both keep them aligned (placeholders fold to themselves)
            text, folded = _replace(text, spans, PLACEHOLDERS[kind]), _replace(folded, spans, PLACEHOLDERS[kind])
            counts[kind] = len(spans)
    return Redacted(text, counts)


def fold(text: str) -> str:
    """``text`` with full-width digits, letters, ``@+-().`` and wide spaces made ASCII,
    one character for one, so positions in the result are positions in ``text``.

    >>> fold("\uff11\uff13\uff18\uff20\uff51\uff51\uff0e\uff43\uff4f\uff4d")
    '138@qq.com'
    """
    return text.translate(_FOLD) if _FOLDABLE.search(text) else text


def redact_conversation(conversation: Conversation, settings: PrivacySettings) -> Conversation:
    """A copy of ``conversation`` with every message redacted (the original is not changed).

    >>> convo = Conversation.from_text("I am bob@example.com")
    >>> redact_conversation(convo, PrivacySettings()).messages[0].text, convo.messages[0].text
    ('I am [EMAIL]', 'I am bob@example.com')
    """
    if not settings.redact_pii:
        return conversation
    messages = tuple(Message(m.role, redact(m.text, settings).text) for m in conversation.messages)
    return Conversation(messages, metadata=conversation.metadata)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment cards.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    backwards = digits[::-1]
    return (sum(map(int, backwards[0::2])) + sum(map(int, backwards[1::2].translate(_LUHN_DOUBLED)))) % 10 == 0


def id_number_valid(number: str) -> bool:
    """The ISO 7064 MOD 11-2 check character of an 18-character Chinese resident ID.

    >>> id_number_valid("11010519491231002X"), id_number_valid("110105194912310021")
    (True, False)
    """
    total = sum(int(char) * weight for char, weight in zip(number[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11] == number[17].upper()


def card_like(digits: str) -> bool:
    """13-19 digits, Luhn-valid, not starting with 0; 15 digits only with an Amex prefix.

    >>> card_like("378282246310005"), card_like("356938035643809"), card_like("4111111111111111")
    (True, False, True)
    """
    if not CARD_MIN_DIGITS <= len(digits) <= CARD_MAX_DIGITS or digits[0] == "0":
        return False
    if len(digits) == IMEI_LENGTH and not digits.startswith(AMEX_PREFIXES):
        return False
    return luhn_valid(digits)


def _emails(folded: str) -> list[Span]:
    return [match.span() for match in _EMAIL.finditer(folded)]


def _id_numbers(folded: str) -> list[Span]:
    return [match.span() for match in _ID_NUMBER.finditer(folded) if id_number_valid(match.group())]


def _phones(folded: str) -> list[Span]:
    spans = []
    for match in _PHONE.finditer(folded):
        digits = sum(char.isdigit() for char in match.group())
        if match.group().startswith("+") and not 8 <= digits <= 15:
            continue
        spans.append(match.span())
    return spans


def _cards(folded: str) -> list[Span]:
    """Card spans inside each digit run: from each group, the longest window of whole groups
    that is :func:`card_like`; once one is found the search resumes after it."""
    spans: list[Span] = []
    for run in _DIGIT_RUN.finditer(folded):
        base = run.start()
        groups = [(base + g.start(), base + g.end()) for g in _GROUP.finditer(run.group())]
        spans.extend(_card_windows(folded, groups))
    return spans


def _card_windows(folded: str, groups: list[Span]) -> list[Span]:
    texts = [folded[start:end] for start, end in groups]
    found: list[Span] = []
    first = 0
    while first < len(groups):
        best: int | None = None
        digits = ""
        for last in range(first, len(groups)):
            digits += texts[last]
            if len(digits) > CARD_MAX_DIGITS:
                break
            if len(digits) >= CARD_MIN_DIGITS and card_like(digits):
                best = last
        if best is None:
            first += 1
        else:
            found.append((groups[first][0], groups[best][1]))
            first = best + 1
    return found


def _replace(text: str, spans: list[Span], placeholder: str) -> str:
    parts: list[str] = []
    position = 0
    for start, end in spans:
        parts += [text[position:start], placeholder]
        position = end
    parts.append(text[position:])
    return "".join(parts)
