"""Stopping a child process the way Celery and uvicorn expect: SIGTERM, a grace period, then SIGKILL.

>>> import subprocess, sys
>>> child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
>>> stop_gracefully(child, grace_seconds=5)
-15
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_gracefully(process: subprocess.Popen[Any], grace_seconds: float) -> int:
    """Ask ``process`` to stop (SIGTERM: Celery finishes its tasks), kill it after ``grace_seconds``.

    Returns its exit status.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
