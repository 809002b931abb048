"""Bytes in, a JSON object out, or an error saying why: webhook bodies and ``triage submit`` lines alike.

Whatever a sender can put in the bytes ends as the object or as ``error`` (an
:class:`~triage.errors.InputError` naming the problem), never as another exception: invalid
UTF-8, nesting too deep for the decoder, an integer beyond Python's digit limit, and the
non-standard constants ``NaN``/``Infinity`` (and numbers like ``1e999`` that overflow to them),
which no JSON column can store:

>>> load_object(b'{"a": [1, 2.5]}', ValueError)
{'a': [1, 2.5]}
>>> load_object(b'{"a": NaN}', ValueError)
Traceback (most recent call last):
...
ValueError: not usable JSON: NaN is not a JSON number
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


def load_object(raw: bytes, error: type[Exception], *, strict: bool = True, subject: str = "") -> dict[str, Any]:
    """``raw`` decoded as UTF-8 and parsed as one JSON object, else ``error`` with the reason
    (``subject`` names what was read: ``"body"`` gives ``body: not JSON: ...``).

    ``strict=False`` lets raw control characters (a literal line break) stand inside strings.

    >>> load_object(b"[1]", ValueError, subject="body")
    Traceback (most recent call last):
    ...
    ValueError: body: expected a JSON object
    """
    where = f"{subject}: " if subject else ""
    try:
        text = raw.decode("utf-8").removeprefix(UTF8_BOM)
    except UnicodeDecodeError as exc:
        raise error(f"{where}not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text, strict=strict, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise error(f"{where}not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _UnusableValueError as exc:
        raise error(f"{where}not usable JSON: {exc}") from None
    except RecursionError:
        raise error(f"{where}not usable JSON: nested too deep") from None
    except ValueError:  # the one other ValueError json.loads raises: an integer beyond the digit limit
        limit = sys.get_int_max_str_digits()
        raise error(f"{where}not usable JSON: an integer of more than {limit} digits") from None
    if not isinstance(data, dict):
        raise error(f"{where}expected a JSON object")
    return data
