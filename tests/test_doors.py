"""Every door of the HTTP service: sessions that end, guessing slowed, a size on every body, the token rule,
and what a TLS proxy in front changes (HSTS, Secure cookies, the client's address).

The failure counts run on the embedded default (the database limiter, SQLite) and on Redis, with two app
instances standing for two ``triage serve`` processes; the proxy cases run a real uvicorn server with the
options ``triage serve`` gives it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from benchmarks.stack import clean_environ, free_port
from tests.factories import (
    ALICE,
    REPO,
    TOKENS,
    TOKENS_ENV,
    ManualClock,
    api_environment,
    build_app,
    csrf_of,
    finish_with_rules,
    sign_in,
    submit,
)
from triage.api.app import create_app
from triage.app import App
from triage.cli.main import uvicorn_options
from triage.settings import MIN_TOKEN_CHARS, load_settings
from triage.store.models import DeskSession, Event
from triage.worker import scheduled

SECRET = "doors-test-secret-" + "x" * 32
LIMIT = 3


def _client(app: App, address: str = "203.0.113.1") -> TestClient:
    return TestClient(create_app(app, publish=lambda _: None), follow_redirects=False, client=(address, 50000))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def desk_app(migrated_database_url: str, clock: ManualClock) -> Iterator[App]:
    built = build_app(migrated_database_url, clock=clock, TRIAGE_API_TOKENS=TOKENS_ENV, TRIAGE_SESSION_SECRET=SECRET)
    yield built
    built.close()


def _session_rows(app: App) -> int:
    with app.sessions() as session:
        return session.scalar(select(func.count()).select_from(DeskSession)) or 0


# ---- 4. sign-out ends the session ---------------------------------------------------------------------------

def test_sign_out_ends_the_session_for_every_copy_of_its_cookie(desk_app: App) -> None:
    alice = sign_in(_client(desk_app), "alice")
    copied = _client(desk_app, "198.51.100.7")
    copied.cookies.set("triage_desk", alice.cookies["triage_desk"])
    assert copied.get("/desk/").status_code == 200, "a copy works while the session lasts"
    assert _session_rows(desk_app) == 1
    signed_out = alice.post("/desk/sign-out", data={"csrf_token": csrf_of(alice.get("/desk/").text)})
    assert signed_out.headers["location"] == "/desk/sign-in?done=signed_out"
    answer = copied.get("/desk/")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/desk/sign-in")
    assert _session_rows(desk_app) == 0


def test_a_session_ends_after_session_hours_and_the_retention_job_deletes_it(desk_app: App,
                                                                                clock: ManualClock) -> None:
    old = sign_in(_client(desk_app), "alice")
    clock.advance(hours=11)
    fresh = sign_in(_client(desk_app), "bob")
    clock.advance(hours=1, seconds=1)  # alice's 12 hours (api.session_hours) are over, bob's are not
    assert old.get("/desk/").status_code == 303 and fresh.get("/desk/").status_code == 200
    summary = scheduled.purge_expired(desk_app, holder="test")
    assert summary.endswith("; 1 expired desk sessions deleted"), summary
    with desk_app.sessions() as session:
        assert [row.actor for row in session.scalars(select(DeskSession))] == ["bob"]


def test_the_table_alone_opens_no_session(desk_app: App) -> None:
    client = sign_in(_client(desk_app), "alice")
    cookie = client.cookies["triage_desk"]
    with desk_app.sessions() as session:
        [row] = session.scalars(select(DeskSession)).all()
    assert row.id not in cookie and TOKENS["alice"] not in row.token_fingerprint


# ---- 5. guessing is slowed --------------------------------------------------------------------------------

def _guard_app(database_url: str, **env: str) -> App:
    return App.build(load_settings(api_environment(database_url, TRIAGE__API__AUTH_FAILURES_PER_MINUTE=str(LIMIT),
                                                   TRIAGE_SESSION_SECRET=SECRET, **env)))


@pytest.fixture(params=["database", "redis"])
def two_processes(request: pytest.FixtureRequest, migrated_sqlite_url: str) -> Iterator[tuple[App, App]]:
    """Two apps on one store, as two serve processes are: the embedded default's database, or Redis."""
    env: dict[str, str] = {}
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
        env = {"TRIAGE_BROKER_URL": url}
    first, second = _guard_app(migrated_sqlite_url, **env), _guard_app(migrated_sqlite_url, **env)
    yield first, second
    first.close()
    second.close()


def test_failed_attempts_from_one_address_are_counted_across_processes(two_processes: tuple[App, App]) -> None:
    first, second = two_processes
    guesser, neighbour = _client(first, "203.0.113.9"), _client(second, "203.0.113.10")
    wrong = {"Authorization": "Bearer " + "w" * 40}
    answers = [(_client(app, "203.0.113.9").get("/queues", headers=wrong).status_code) for app in (first, second,
                                                                                                      first)]
    assert answers == [401] * LIMIT, "the first api.auth_failures_per_minute failures are 401s"
    for client in (guesser, _client(second, "203.0.113.9")):  # any process, a right token included
        refused = client.get("/queues", headers=ALICE)
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        form = client.get("/desk/sign-in")
        signing_in = client.post("/desk/sign-in", data={"token": TOKENS["alice"], "csrf_token": csrf_of(form.text)})
        assert signing_in.status_code == 429 and "Too many failed sign-ins" in signing_in.text
        assert "triage_desk=" not in signing_in.headers.get("set-cookie", "")
    assert neighbour.get("/queues", headers=ALICE).status_code == 200, "other addresses are unaffected"


def test_failed_sign_ins_count_too(two_processes: tuple[App, App]) -> None:
    first, second = two_processes
    for app in (first, second, first):
        client = _client(app, "192.0.2.44")
        form = client.get("/desk/sign-in")
        guess = client.post("/desk/sign-in", data={"token": "guess", "csrf_token": csrf_of(form.text)})
        assert guess.status_code == 401
    assert _client(second, "192.0.2.44").get("/queues", headers=ALICE).status_code == 429
    assert _client(second, "192.0.2.45").get("/queues", headers=ALICE).status_code == 200


def _serve_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triage", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


def test_serve_refuses_a_short_token_naming_the_user_never_the_token(tmp_path: Path) -> None:
    env = {**clean_environ(), **api_environment(f"sqlite:///{tmp_path / 'triage.sqlite3'}"),
           "TRIAGE_API_TOKENS": "alice:" + "a" * 40 + ",bob:s3cret-but-short"}
    refused = _serve_cli(env, "serve", "--port", str(free_port()))
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "bob" in refused.stderr
    assert "s3cret" not in refused.stderr and "a" * 40 not in refused.stderr
    assert "triage token new bob" in refused.stderr


def test_token_new_prints_a_line_to_paste() -> None:
    made = _serve_cli(clean_environ(), "token", "new", "carol")
    assert made.returncode == 0
    name, _, token = made.stdout.strip().partition(":")
    assert name == "carol" and len(token) >= MIN_TOKEN_CHARS and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert load_settings({"TRIAGE_API_TOKENS": made.stdout.strip()}).api.tokens["carol"].get_secret_value() == token
    assert _serve_cli(clean_environ(), "token", "new", "a,b").returncode == 2


# ---- 6. every door has a size -------------------------------------------------------------------------------

def test_a_body_over_max_body_bytes_is_413_on_every_route_and_form(desk_app: App) -> None:
    ticket_id = submit(desk_app, "S-1", "My speaker does not turn on")
    finish_with_rules(desk_app, ticket_id)
    client = _client(desk_app)
    big = b'{"urgent_level": "' + b"x" * (1024 * 1024) + b'"}'
    json_headers = {**ALICE, "Content-Type": "application/json"}
    assert client.patch(f"/tickets/{ticket_id}", content=big, headers=json_headers).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"urgent_level": "'
        for _ in range(32):
            yield b"x" * 65536
        yield b'"}'

    assert client.patch(f"/tickets/{ticket_id}", content=chunks(), headers=json_headers).status_code == 413
    form = b"token=" + b"x" * (1024 * 1024)
    assert client.post("/desk/sign-in", content=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413
    signed = sign_in(_client(desk_app), "alice")
    assert signed.post(f"/desk/tickets/{ticket_id}/correct", content=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413
    with desk_app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.kind == "corrected")) == 0


def test_webhooks_keep_their_own_cap(migrated_sqlite_url: str) -> None:
    from tests.factories import SECRETS
    from triage.intake.platforms import signed_request

    app = App.build(load_settings(api_environment(migrated_sqlite_url, TRIAGE__WEBHOOKS__MAX_BODY_BYTES=str(2 << 20))))
    try:
        client = _client(app)
        payload = {"external_id": "BIG-1", "text": "My speaker is broken " + "x" * (1536 * 1024)}
        body, headers = signed_request("generic", payload, SECRETS["generic"], now=time.time())
        assert len(body) > app.settings.api.max_body_bytes
        assert client.post("/webhooks/generic", content=body, headers=headers).status_code == 202
    finally:
        app.close()


# ---- 7. behind a TLS proxy ----------------------------------------------------------------------------------

@contextmanager
def real_server(app: App) -> Iterator[str]:
    """``app`` under uvicorn, configured as ``triage serve`` configures it."""
    port = free_port()
    config = uvicorn.Config(create_app(app, publish=lambda _: None), host="127.0.0.1", port=port,
                            log_level="warning", **uvicorn_options(app.settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _sign_in_cookie(http: httpx.Client, base: str, headers: dict[str, str]) -> str:
    """The session cookie's Set-Cookie line (the sign-in form's cookie sent by hand: a Secure one would not be
    sent back over the test's plain connection to the proxy's side)."""
    http.cookies.clear()
    form = http.get(f"{base}/desk/sign-in", headers=headers)
    presession = next(c for c in form.headers.get_list("set-cookie") if c.startswith("triage_desk_signin="))
    http.cookies.clear()
    answer = http.post(f"{base}/desk/sign-in", data={"token": TOKENS["alice"], "csrf_token": csrf_of(form.text)},
                       headers={**headers, "Cookie": presession.split(";")[0]})
    assert answer.status_code == 303, answer.text
    return next(c for c in answer.headers.get_list("set-cookie") if c.startswith("triage_desk="))


@pytest.mark.parametrize("trusted", [True, False])
def test_behind_a_trusted_tls_proxy_cookies_are_secure_and_answers_carry_hsts(migrated_sqlite_url: str,
                                                                              trusted: bool) -> None:
    allowed = "127.0.0.1" if trusted else "10.9.9.9"
    app = _guard_app(migrated_sqlite_url, TRIAGE__API__FORWARDED_ALLOW_IPS=allowed)
    try:
        with real_server(app) as base, httpx.Client(timeout=10) as http:
            proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.77"}
            answer = http.get(f"{base}/desk/sign-in", headers=proxied)
            cookie = _sign_in_cookie(http, base, proxied)
            assert ("strict-transport-security" in answer.headers) is trusted
            assert ("; secure" in cookie.lower()) is trusted
            plain = http.get(f"{base}/desk/sign-in")
            assert "strict-transport-security" not in plain.headers, "plain HTTP on loopback (the demo) as before"
            assert "; secure" not in _sign_in_cookie(http, base, {}).lower()
            wrong = {"Authorization": "Bearer " + "w" * 40}
            for n in range(LIMIT):
                assert http.get(f"{base}/queues", headers={**wrong, "X-Forwarded-For": f"203.0.113.{n + 1}"}
                                ).status_code == 401
            # failures counted by the address the proxy forwards when it is trusted, by the peer's when not
            refused = http.get(f"{base}/queues", headers={**ALICE, "X-Forwarded-For": "203.0.113.200"})
            assert refused.status_code == (200 if trusted else 429)
    finally:
        app.close()
