"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The file is parsed; every triage command in it must parse with `triage`'s own parser; every
setting it passes must be one the settings reference (docs/reference/settings.md, generated from the
model) documents; the published port must be the one serve listens on, the healthchecks probe and the
production page (docs/production.md) gives. The healthcheck commands themselves are
run here against a real `triage serve`, `triage worker` (Redis broker) and `triage beat`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from benchmarks.stack import free_port
from tests.harness import REPO, Stack
from triage.cli.main import build_parser

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
TRIAGE_SERVICES = {name: service for name, service in SERVICES.items() if service.get("build")}
ONE_SHOT = {name for name, service in SERVICES.items() if service.get("restart") == "on-failure"}
DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")
SETTINGS_REFERENCE = (REPO / "docs" / "reference" / "settings.md").read_text(encoding="utf-8")
PRODUCTION = (REPO / "docs" / "production.md").read_text(encoding="utf-8")
SERVE_PORT = 8000
HEALTHY_SECONDS = 60


def _healthcheck(service: str) -> list[str]:
    return list(SERVICES[service]["healthcheck"]["test"])


def test_the_triage_services_are_the_documented_shape() -> None:
    assert set(TRIAGE_SERVICES) == {"migrate", "serve", "worker", "beat"}
    assert {"migrate"} == ONE_SHOT
    for name in set(TRIAGE_SERVICES) - ONE_SHOT:
        assert SERVICES[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


@pytest.mark.parametrize("name", sorted(TRIAGE_SERVICES))
def test_every_triage_command_parses_with_the_triage_parser(name: str) -> None:
    command = TRIAGE_SERVICES[name]["command"]
    assert command[0] == "triage"
    args = build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown command or option
    assert callable(args.func)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_restarts_and_has_a_healthcheck(name: str) -> None:
    service = SERVICES[name]
    if name in ONE_SHOT:
        assert service["healthcheck"] == {"disable": True}
    else:
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")


def test_rules_mode_needs_no_key() -> None:
    env = COMPOSE["x-triage"]["environment"]
    assert env["TRIAGE_EXTRACTOR"] == "${TRIAGE_EXTRACTOR:-rules}"
    assert env["MIMO_API_KEY"] == "${MIMO_API_KEY:-}"  # no ':?' error when unset
    assert COMPOSE["x-triage"]["env_file"] == [{"path": ".env", "required": False}]


def test_every_setting_passed_is_in_the_settings_reference() -> None:
    env = COMPOSE["x-triage"]["environment"]
    interpolated = set(re.findall(r"\$\{(\w+)", yaml.safe_dump(COMPOSE)))
    for name in set(env) | interpolated:
        assert f"| `{name}` |" in SETTINGS_REFERENCE, f"{name} is not in docs/reference/settings.md"


def test_the_published_port_is_the_one_serve_listens_on_and_the_checks_probe() -> None:
    serve = SERVICES["serve"]
    assert serve["ports"] == [f"{SERVE_PORT}:{SERVE_PORT}"]
    command = serve["command"]
    assert command[command.index("--port") + 1] == str(SERVE_PORT) and command[command.index("--host") + 1] == "0.0.0.0"
    url = f"http://127.0.0.1:{SERVE_PORT}/healthz"
    assert url in " ".join(_healthcheck("serve")) and url in DOCKERFILE
    assert f"EXPOSE {SERVE_PORT}" in DOCKERFILE and f"localhost:{SERVE_PORT}/webhooks/{{source}}" in PRODUCTION


def test_the_dockerfile_installs_the_wheel_and_runs_as_a_user() -> None:
    assert "pip wheel" in DOCKERFILE and "pip install --no-cache-dir /dist/*.whl" in DOCKERFILE
    assert "pip install -e" not in DOCKERFILE
    users = re.findall(r"^USER (\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0") and "HEALTHCHECK" in DOCKERFILE


def _run_check(test: list[str], env: dict[str, str], replace: dict[str, str] | None = None) -> int:
    """Run a compose healthcheck ``test`` here (CMD-SHELL through sh, as Docker does)."""
    kind, *argv = test
    if kind == "CMD-SHELL":
        argv = ["sh", "-c", argv[0].replace("$$", "$")]
    for old, new in (replace or {}).items():
        argv = [arg.replace(old, new) for arg in argv]
    bin_dir = str(Path(sys.executable).parent)
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    if argv[0] == "python":
        argv[0] = sys.executable
    return subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False).returncode


def _until_healthy(test: list[str], env: dict[str, str], replace: dict[str, str] | None = None) -> int:
    deadline = time.monotonic() + HEALTHY_SECONDS
    while (status := _run_check(test, env, replace)) != 0 and time.monotonic() < deadline:
        time.sleep(1)
    return status


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Stack:
    redis.Redis.from_url(redis_url).flushdb()
    stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", redis_url, api_base_url=None,
                  extra_env={"TRIAGE_EXTRACTOR": "rules"})
    stack.migrate()
    return stack


def test_the_serve_healthcheck_passes_against_triage_serve(stack: Stack) -> None:
    port = free_port()
    probe = {f":{SERVE_PORT}/": f":{port}/"}
    assert _run_check(_healthcheck("serve"), stack.env, probe) != 0
    with stack.server(port):
        assert _run_check(_healthcheck("serve"), stack.env, probe) == 0


def test_the_worker_healthcheck_pings_its_own_node(stack: Stack) -> None:
    command = SERVICES["worker"]["command"]
    env = {**stack.env, "HOSTNAME": os.uname().nodename}
    assert _run_check(_healthcheck("worker"), env) != 0
    with stack.process(*command[1:]):
        assert _until_healthy(_healthcheck("worker"), env) == 0
    with stack.process("worker", "--hostname", "someone-else@%h"):
        assert _run_check(_healthcheck("worker"), env) != 0


def test_the_beat_healthcheck_sees_beat_write_its_schedule(stack: Stack, tmp_path: Path) -> None:
    command = SERVICES["beat"]["command"]
    var = tmp_path / "var"
    var.mkdir()
    in_tmp = {"/app/var": str(var)}
    assert _run_check(_healthcheck("beat"), stack.env, in_tmp) != 0
    with stack.process(*[arg.replace("/app/var", str(var)) for arg in command[1:]]):
        assert _until_healthy(_healthcheck("beat"), stack.env, in_tmp) == 0
