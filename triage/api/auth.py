"""Bearer-token auth for the dispatch review API: the token's name is the actor in the audit trail.

Tokens come from ``TRIAGE_API_TOKENS=alice:<token>,bob:<token>``, each at least
:data:`~triage.settings.MIN_TOKEN_CHARS` characters (``triage token new NAME`` makes one). Comparison
is constant-time and every configured token is compared, so timing tells nothing about which one
nearly matched. A wrong token counts against the caller's address (:mod:`triage.api.guard`).
"""

from __future__ import annotations

import fnmatch
import hmac
from collections.abc import Callable, Mapping

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from triage.api.guard import AuthGuard

_bearer = HTTPBearer(auto_error=False, description="a token from TRIAGE_API_TOKENS")

#: The routes anyone may call without a bearer token (``fnmatch`` patterns over the path): the root,
#: health and metrics, the webhooks (each checks its platform's signature instead), the API docs, and
#: the dispatch desk's sign-in page and static files. Every other route needs a token, or is a
#: :data:`SESSION_ROUTES` page: ``tests/test_api_fuzz.py`` calls each route without one and expects
#: 401 (a page: a redirect to the sign-in page).
PUBLIC_ROUTES: tuple[str, ...] = ("/", "/healthz", "/metrics", "/webhooks/*", "/docs", "/docs/*", "/openapi.json",
                                  "/desk/sign-in", "/desk/static/*")
#: The dispatch desk's pages: signed in with a session cookie (made from a token), not a bearer header;
#: without a session they answer 303 to the sign-in page.
SESSION_ROUTES: tuple[str, ...] = ("/desk/*",)


def is_session_route(path: str) -> bool:
    """Whether ``path`` is a desk page that takes a session cookie instead of a bearer token.

    >>> is_session_route("/desk/tickets/{ticket_id}"), is_session_route("/desk/sign-in")
    (True, False)
    """
    return not is_public(path) and any(fnmatch.fnmatchcase(path, pattern) for pattern in SESSION_ROUTES)


def is_public(path: str) -> bool:
    """Whether ``path`` (a route's path, parameters as ``{name}``) may be called without a token.

    >>> is_public("/webhooks/{source}"), is_public("/tickets/{ticket_id}")
    (True, False)
    """
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in PUBLIC_ROUTES)


def actor_for(token: str, tokens: Mapping[str, SecretStr]) -> str | None:
    """The name whose token this is, or ``None``.

    >>> actor_for("t2", {"alice": SecretStr("t1"), "bob": SecretStr("t2")})
    'bob'
    """
    found = None
    for name, secret in tokens.items():
        if hmac.compare_digest(token.encode(), secret.get_secret_value().encode()):
            found = name
    return found


def require_actor(tokens: Mapping[str, SecretStr], guard: AuthGuard) -> Callable[..., str]:
    """A FastAPI dependency returning the caller's actor name, or answering 401 (429 while the caller's address
    has made too many failed attempts this minute: :mod:`triage.api.guard`)."""

    def dependency(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:  # noqa: B008
        if credentials is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        guard.check(request)
        actor = actor_for(credentials.credentials, tokens)
        if actor is None:
            guard.failed(request)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        return actor

    return dependency
