"""triage: customer-service conversations in, validated and routed tickets out.

Rooms (one job each, data flowing one way): intake -> queues -> extraction -> policy -> routing ->
tickets (lifecycle) -> store; the App (:mod:`triage.app`) hands them to the API, the CLI and the tasks.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("triage")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
