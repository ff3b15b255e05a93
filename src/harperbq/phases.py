"""The words a table's sync is described by (run state, poll phase), shared by the engine and
the metrics: a leaf, so that `metrics` need not import the engine to name them."""

from enum import StrEnum


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"  # caught up, waiting for the next poll
    ERROR = "error"  # last attempt failed; retrying with backoff
    STOPPED = "stopped"
    DONE = "done"  # --once: caught up, reconciled and finished
    FAILED = "failed"  # --once: gave up after the configured attempts
    # Never set by the runner: shown (status, metrics) while the Harper stall watchdog sees
    # Harper not answering the request this table waits on (harper/watchdog.py).
    STALLED = "stalled"


class Phase(StrEnum):
    """The original plugin's phases, chosen by lag (`windows.PhasePolicy`)."""

    INITIAL = "initial"
    CATCHUP = "catchup"
    STEADY = "steady"
