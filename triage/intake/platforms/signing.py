"""Sign requests the way each vendor does: for tests, end-to-end checks and benchmarks.

>>> body, headers = signed_request("generic", {"external_id": "A-1", "text": "hi"},
...                                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now=1614265330, delivery_id="msg_1")
>>> body
b'{"external_id": "A-1", "text": "hi"}'
>>> sorted(headers)
['content-type', 'webhook-id', 'webhook-signature', 'webhook-timestamp']
"""

from __future__ import annotations

import json
from typing import Any

from .registry import PLATFORMS


def sign(platform: str, body: bytes, secret: str, now: float, delivery_id: str | None = None) -> dict[str, str]:
    """The headers ``platform`` would send with ``body`` at unix time ``now``.

    ``delivery_id`` sets the delivery header where the vendor sends one (generic, chatwoot,
    zammad; derived from the body when omitted) and is ignored elsewhere.
    """
    return PLATFORMS[platform].sign(body, secret, now, delivery_id)


def signed_request(platform: str, payload: dict[str, Any], secret: str, now: float,
                   delivery_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """``payload`` serialised as UTF-8 JSON (non-ASCII kept as is) and its signed headers."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return body, sign(platform, body, secret, now, delivery_id)
