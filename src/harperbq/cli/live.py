"""One live view for the sync's long-running commands (`demo`, `sync run` in a terminal).

In a terminal: one table redrawn in place, the full log in a file (its path printed first) and
only warnings and errors above the table. Elsewhere (a pipe, a file, systemd): no control codes,
the usual log lines, and the table as plain text only when asked (`final`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table

from harperbq import logs
from harperbq.cost import human_bytes

if TYPE_CHECKING:
    from harperbq.sync.service import SyncService

RATE_WINDOW_S = 10.0  # rows/s over the last 10 s: a poll every few seconds is not 0 rows/s


class SlidingRate:
    """Rows per second over the last `window_s`, from cumulative counts sampled at any pace."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def observe(self, key: str, total: int, now: float) -> float:
        samples = self._samples.setdefault(key, deque())
        samples.append((now, total))
        while len(samples) > 2 and now - samples[1][0] >= self.window_s:
            samples.popleft()  # keep one sample at or beyond the window's start
        first_t, first_rows = samples[0]
        return (total - first_rows) / (now - first_t) if now > first_t else 0.0


def sync_view(service: SyncService, rates: SlidingRate, now: float | None = None) -> Table:
    """Per table and local worker: state, read mode, rows, rows/s, lag, bytes billed."""
    from harperbq.sync.live_status import spent

    now = time.monotonic() if now is None else now
    view = Table(title="BigQuery → Harper")
    columns = ("table", "worker", "state", "read", "rows synced", "rows/s", "lag", "billed")
    for column in columns:
        view.add_column(column, justify="left" if column in ("table", "worker") else "right")
    for handle in service.handles:
        status = handle.engine.status
        rate = rates.observe(f"{handle.table.id}/{handle.worker_id}", status.rows_synced, now)
        view.add_row(
            handle.table.id,
            handle.worker_id,
            str(handle.runner.state),
            status.read_mode or str(status.phase),
            f"{status.rows_synced:,}",
            f"{rate:,.0f}",
            f"{status.lag_s:,.1f} s" if status.lag_s is not None else "-",
            human_bytes(int(spent(handle)["bytes_billed"])),
        )
    return view


class ConsoleHandler(logging.Handler):
    """Log lines through the rich console, so a live view keeps its place below them."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(logs.ConsoleFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # a log line must never break the command
            self.handleError(record)


def log_file(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}.log"


@contextmanager
def live_view(
    console: Console,
    render: Callable[[], Table],
    *,
    log_path: Path,
    debug: bool = False,
    refresh_s: float = 0.5,
) -> Iterator[Callable[[], None]]:
    """Yields `update()`, to call at any pace. In a terminal the view redraws in place and the
    log goes to `log_path` (warnings also above the view; the caller prints the path);
    elsewhere nothing is drawn and logging stays as it was."""
    if not console.is_terminal:
        yield lambda: None
        return
    above = ConsoleHandler(console)
    above.setLevel(logging.WARNING)
    logs.configure_file(log_path, debug, above)
    with Live(render(), console=console, refresh_per_second=1 / refresh_s) as live:
        last = 0.0

        def update() -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= refresh_s:
                last = now
                live.update(render())

        yield update
        live.update(render())
