"""Standard Webhooks v1 (symmetric): the one signing scheme triage verifies on the way in
(``POST /webhooks/generic``) and signs with on the way out (``[[events.endpoints]]``).

The signature is ``v1,<base64 HMAC-SHA256>`` over ``{webhook-id}.{webhook-timestamp}.{body}``,
keyed by the base64-decoded part of the ``whsec_...`` secret. The spec's published test vector:

>>> signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
...           b'{"test": 2432232314}')
'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
>>> secret_key("whsec_not base64")
Traceback (most recent call last):
...
triage.standard_webhooks.SecretFormatError: a Standard Webhooks secret must be whsec_<base64>

Unpadded base64 is padded first, as the reference library does (``whsec_c2VjcmV0`` and
``whsec_c2VjcmV0LQ`` are both keys):

>>> secret_key("whsec_c2VjcmV0LQ")
b'secret-'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
#: Base64 comes in groups of four characters, the last one padded with "=".
BASE64_QUANTUM, BASE64_PAD = 4, "="


class SecretFormatError(ValueError):
    """The secret is not ``whsec_<base64>``, or decodes to nothing (never echoes the secret)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after ``whsec_`` (the prefix is optional, padding too)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + BASE64_PAD * (-len(encoded) % BASE64_QUANTUM), validate=True)
    except (binascii.Error, ValueError):
        raise SecretFormatError("a Standard Webhooks secret must be whsec_<base64>") from None
    if not key:
        raise SecretFormatError("the Standard Webhooks secret is empty")
    return key


def signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a producer sends with ``body`` (plus its JSON content type).

    >>> sorted(signed_headers("whsec_c2VjcmV0", "msg_1", 1700000000, b"{}"))
    ['content-type', 'webhook-id', 'webhook-signature', 'webhook-timestamp']
    """
    stamp = str(int(timestamp))
    return {"content-type": "application/json", ID_HEADER: msg_id, TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: signature(secret, msg_id, stamp, body)}
