"""The desk's sign-in: signed session cookies and the CSRF token every form carries.

Signing in exchanges an access token from ``TRIAGE_API_TOKENS`` for a session cookie signed with
``TRIAGE_SESSION_SECRET`` (itsdangerous, with its signing time, so it expires after
``api.session_hours``). The cookie holds a random session id and a fingerprint of the token
(an HMAC under the secret, never the token itself); each request finds the actor whose
configured token has that fingerprint, so removing or changing a token ends its sessions.

Every form carries ``csrf_token``, an HMAC of the session id: a forged form from another site has
no way to know it. The sign-in form is covered the same way through a short pre-session cookie.

>>> from pydantic import SecretStr
>>> from triage.clock import SystemClock
>>> keys = SessionKeys("k" * 32, {"alice": SecretStr("alice-token")}, hours=12, clock=SystemClock())
>>> session = keys.sign_in("alice-token")
>>> keys.read(keys.cookie(session)).actor, keys.sign_in("wrong") is None
('alice', True)
>>> keys.csrf_ok(session.sid, keys.csrf_token(session.sid)), keys.csrf_ok(session.sid, "forged")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from pydantic import SecretStr

from triage.api.auth import actor_for
from triage.clock import Clock

SESSION_COOKIE = "triage_desk"
#: Before sign-in: a session id for the sign-in form's CSRF token alone.
PRESESSION_COOKIE = "triage_desk_signin"
PRESESSION_SECONDS = 3600
SECONDS_PER_HOUR = 3600
SID_BYTES = 16


@dataclass(frozen=True)
class DeskSession:
    sid: str
    actor: str
    fingerprint: str


class SessionKeys:
    """Signs and reads the desk's cookies with one secret."""

    def __init__(self, secret: str, tokens: Mapping[str, SecretStr], hours: float, clock: Clock) -> None:
        self._secret = secret.encode()
        self._tokens = tokens
        self.max_age = int(hours * SECONDS_PER_HOUR)

        class ClockSigner(TimestampSigner):
            """Signs and checks ages by the app's clock (tests move it instead of waiting 12 hours)."""

            def get_timestamp(self) -> int:
                return int(clock.now().timestamp())

        self._sessions = URLSafeTimedSerializer(secret, salt="triage-desk-session", signer=ClockSigner)
        self._presessions = URLSafeTimedSerializer(secret, salt="triage-desk-signin", signer=ClockSigner)

    def _fingerprint(self, token: str) -> str:
        return hmac.new(self._secret, b"token:" + token.encode(), hashlib.sha256).hexdigest()

    def sign_in(self, token: str) -> DeskSession | None:
        """A new session for a configured token, else None."""
        actor = actor_for(token.strip(), self._tokens)
        if actor is None:
            return None
        return DeskSession(secrets.token_urlsafe(SID_BYTES), actor, self._fingerprint(token.strip()))

    def cookie(self, session: DeskSession) -> str:
        return self._sessions.dumps({"sid": session.sid, "fp": session.fingerprint})

    def read(self, cookie: str | None) -> DeskSession | None:
        """The session a cookie holds, if it is ours, not expired, and its token is still configured."""
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired, its subclass
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str) or not isinstance(data.get("fp"), str):
            return None
        actor = next((name for name, token in self._tokens.items()
                      if hmac.compare_digest(self._fingerprint(token.get_secret_value()).encode(),
                                             data["fp"].encode("utf-8", "replace"))), None)
        return DeskSession(data["sid"], actor, data["fp"]) if actor else None

    def new_presession(self) -> tuple[str, str]:
        """A sign-in form's session id and its cookie."""
        sid = secrets.token_urlsafe(SID_BYTES)
        return sid, self._presessions.dumps(sid)

    def read_presession(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            sid = self._presessions.loads(cookie, max_age=PRESESSION_SECONDS)
        except BadSignature:
            return None
        return sid if isinstance(sid, str) else None

    def csrf_token(self, sid: str) -> str:
        return hmac.new(self._secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str | None, given: str | None) -> bool:
        """Whether ``given`` is the form's token for ``sid`` (constant time; any text, not only ASCII, is an answer:
        ``compare_digest`` refuses non-ASCII strings, so bytes are compared)."""
        expected = self.csrf_token(sid or "").encode()
        return bool(sid and given) and hmac.compare_digest(expected, (given or "").encode("utf-8", "replace"))
