"""Bytes in, a JSON value out, or an error saying why: webhook bodies, ``triage submit`` lines and the
API's request bodies alike.

Whatever a sender can put in the bytes ends as the value or as ``error`` (an
:class:`~triage.errors.InputError` naming the problem), never as another exception: invalid
UTF-8, nesting too deep for the decoder, an integer beyond Python's digit limit, the
non-standard constants ``NaN``/``Infinity`` (and numbers like ``1e999`` that overflow to them),
which no JSON column can store, and an object that gives a key twice. ``json.loads`` keeps the
last of two equal keys; a platform that pastes a customer's subject into its body unescaped lets
``"subject": "x", "ticket_id": "4242"`` file the message under another ticket, so the object is
refused instead, naming the key:

>>> load_object(b'{"a": [1, 2.5]}', ValueError)
{'a': [1, 2.5]}
>>> load_object(b'{"a": NaN}', ValueError)
Traceback (most recent call last):
...
ValueError: not usable JSON: NaN is not a JSON number
>>> load_object(b'{"subject": "x", "ticket_id": "4242", "ticket_id": "17"}', ValueError)
Traceback (most recent call last):
...
ValueError: not usable JSON: the key "ticket_id" is given twice
>>> load_object(b"[" * 100_000, ValueError)
Traceback (most recent call last):
...
ValueError: not usable JSON: nested too deep
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

#: The byte-order mark some editors put before UTF-8 text; JSON itself does not allow it.
UTF8_BOM = "\ufeff"


class _UnusableValueError(ValueError):
    """A JSON value no store can keep (raised from inside the decoder's hooks)."""


def _no_constant(name: str) -> float:
    raise _UnusableValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _UnusableValueError(f"{text[:40]} is out of range for a JSON number")
    return value


#: The longest part of a repeated key an error quotes.
QUOTED_KEY_CHARS = 80


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members as a dict, refusing a key given twice (the decoder's ``object_pairs_hook``)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _UnusableValueError(f"the key {json.dumps(key, ensure_ascii=False)[:QUOTED_KEY_CHARS]} is "
                                          "given twice")
            seen.add(key)
    return found


def load_object(raw: bytes, error: type[Exception], *, strict: bool = True, subject: str = "") -> dict[str, Any]:
    """``raw`` decoded as UTF-8 and parsed as one JSON object, else ``error`` with the reason
    (``subject`` names what was read: ``"body"`` gives ``body: not JSON: ...``).

    ``strict=False`` lets raw control characters (a literal line break) stand inside strings.

    >>> load_object(b"[1]", ValueError, subject="body")
    Traceback (most recent call last):
    ...
    ValueError: body: expected a JSON object
    """
    data = load_json(raw, error, strict=strict, subject=subject)
    if not isinstance(data, dict):
        raise error(f"{subject}: expected a JSON object" if subject else "expected a JSON object")
    return data


def load_json(raw: bytes, error: type[Exception], *, strict: bool = True, subject: str = "") -> Any:
    """``raw`` decoded as UTF-8 and parsed as one JSON value of any kind, else ``error`` with the reason,
    as :func:`load_object`.

    >>> load_json(b'[{"a": 1}, {"a": 2}]', ValueError)
    [{'a': 1}, {'a': 2}]
    >>> load_json(b'[{"a": 1, "b": {"c": 1, "c": 2}}]', ValueError, subject="body")
    Traceback (most recent call last):
    ...
    ValueError: body: not usable JSON: the key "c" is given twice
    """
    where = f"{subject}: " if subject else ""
    try:
        text = raw.decode("utf-8").removeprefix(UTF8_BOM)
    except UnicodeDecodeError as exc:
        raise error(f"{where}not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text, strict=strict, parse_constant=_no_constant, parse_float=_finite,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise error(f"{where}not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _UnusableValueError as exc:
        raise error(f"{where}not usable JSON: {exc}") from None
    except RecursionError:
        raise error(f"{where}not usable JSON: nested too deep") from None
    except ValueError:  # the one other ValueError json.loads raises: an integer beyond the digit limit
        limit = sys.get_int_max_str_digits()
        raise error(f"{where}not usable JSON: an integer of more than {limit} digits") from None
