"""Worker node names: two `triage worker` processes on one host do not clash; --hostname sets one."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import redis

from tests.harness import Stack
from triage.app.queues import create_celery
from triage.settings import load_settings

READY_SECONDS = 60


def _nodes(broker_url: str, expected: int) -> set[str]:
    """The node names answering a broadcast ping, once ``expected`` of them answer."""
    app = create_celery(load_settings({"TRIAGE_BROKER_URL": broker_url}))
    deadline = time.monotonic() + READY_SECONDS
    names: set[str] = set()
    while len(names) < expected and time.monotonic() < deadline:
        names = {name for reply in app.control.ping(timeout=1.0) for name in reply}
    app.close()
    return names


def test_two_workers_on_one_host_get_their_own_names(redis_url: str, tmp_path: Path) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", redis_url, api_base_url=None,
                  extra_env={"TRIAGE_EXTRACTOR": "rules"})
    stack.migrate()
    host = socket.gethostname()
    with stack.process("worker", name="first") as first, stack.process("worker", name="second") as second, \
            stack.process("worker", "--hostname", "named@%h", name="named"):
        names = _nodes(redis_url, 3)
    assert names == {f"triage-{first.pid}@{host}", f"triage-{second.pid}@{host}", f"named@{host}"}
    assert not any("DuplicateNodenameWarning" in log for log in stack.logs.values()), stack.logs
    stack.close()
