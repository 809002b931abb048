"""The desk's sign-in: sessions kept on the server, signed cookies, and the CSRF token every form carries.

Signing in exchanges an access token from ``TRIAGE_API_TOKENS`` for a session: a row in
``desk_sessions`` (:mod:`triage.store.desk_sessions`) and a cookie holding its random id, signed with
``TRIAGE_SESSION_SECRET`` (itsdangerous, with its signing time). A cookie counts only while its row
does: "Sign out" deletes the row, so a copied cookie is sent back to sign-in at once; the row ends
after ``api.session_hours`` (the cookie's signature too), and the retention job deletes ended rows.
The row keys the session by a hash of its id and holds a fingerprint of the token (an HMAC under the
secret, never the token itself); each request finds the actor whose configured token has that
fingerprint, so removing or changing a token ends its sessions.

Every form carries ``csrf_token``, an HMAC of the session id: a forged form from another site has
no way to know it. The sign-in form is covered the same way through a short pre-session cookie.

>>> from pydantic import SecretStr
>>> from triage.clock import SystemClock
>>> from triage.store.db import make_engine, make_sessionmaker
>>> from triage.store.models import Base, DeskSession as Row
>>> engine = make_engine("sqlite://")
>>> Base.metadata.create_all(engine, tables=[Row.__table__])
>>> keys = SessionKeys("k" * 32, {"alice": SecretStr("a" * 32)}, 12, SystemClock(), make_sessionmaker(engine))
>>> session = keys.sign_in("a" * 32)
>>> cookie = keys.cookie(session)
>>> keys.read(cookie).actor, keys.sign_in("wrong") is None
('alice', True)
>>> keys.csrf_ok(session.sid, keys.csrf_token(session.sid)), keys.csrf_ok(session.sid, "forged")
(True, False)
>>> keys.sign_out(session)
>>> keys.read(cookie) is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from triage.api.auth import actor_for
from triage.clock import Clock
from triage.store import desk_sessions

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
    """Opens, reads and ends the desk's sessions (rows in ``store``), and signs their cookies with one secret."""

    def __init__(self, secret: str, tokens: Mapping[str, SecretStr], hours: float, clock: Clock,
                 store: sessionmaker[Session]) -> None:
        self._secret = secret.encode()
        self._tokens = tokens
        self._clock = clock
        self._store = store
        self.max_age = int(hours * SECONDS_PER_HOUR)

        class ClockSigner(TimestampSigner):
            """Signs and checks ages by the app's clock (tests move it instead of waiting 12 hours)."""

            def get_timestamp(self) -> int:
                return int(clock.now().timestamp())

        self._sessions = URLSafeTimedSerializer(secret, salt="triage-desk-session", signer=ClockSigner)
        self._presessions = URLSafeTimedSerializer(secret, salt="triage-desk-signin", signer=ClockSigner)

    def _fingerprint(self, token: str) -> str:
        return hmac.new(self._secret, b"token:" + token.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _key(sid: str) -> str:
        """The row's key: a hash of the session id, so the table alone opens no session."""
        return hashlib.sha256(sid.encode()).hexdigest()

    def sign_in(self, token: str) -> DeskSession | None:
        """A new session (its row recorded) for a configured token, else None."""
        actor = actor_for(token.strip(), self._tokens)
        if actor is None:
            return None
        session = DeskSession(secrets.token_urlsafe(SID_BYTES), actor, self._fingerprint(token.strip()))
        now = self._clock.now()
        desk_sessions.open_session(self._store, self._key(session.sid), actor, session.fingerprint, now,
                                   now + timedelta(seconds=self.max_age))
        return session

    def cookie(self, session: DeskSession) -> str:
        return self._sessions.dumps({"sid": session.sid})

    def read(self, cookie: str | None) -> DeskSession | None:
        """The session a cookie holds, if it is ours, its row is there (not signed out, not expired), and its
        token is still configured."""
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired, its subclass
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return None
        stored = desk_sessions.live_session(self._store, self._key(data["sid"]), self._clock.now())
        if stored is None:
            return None
        actor = next((name for name, token in self._tokens.items()
                      if hmac.compare_digest(self._fingerprint(token.get_secret_value()).encode(),
                                             stored.token_fingerprint.encode())), None)
        return DeskSession(data["sid"], actor, stored.token_fingerprint) if actor else None

    def sign_out(self, session: DeskSession) -> None:
        """End ``session`` now: its cookie, and every copy of it, is no session from here on."""
        desk_sessions.end_session(self._store, self._key(session.sid))

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
