"""The benches leave nothing running when they have printed their result (`make bench` runs
them one after another and must finish), and the throughput bench reports the sync process's
own peak memory, not its parent's. Exercises the shared helpers with tiny inputs, without
Harper or the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """bench/sync_throughput.py, importable as the other benches import it."""
    monkeypatch.syspath_prepend(str(BENCH))
    import sync_throughput

    yield sync_throughput


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_deadline_leaves_no_thread_when_the_work_ends_first(bench: ModuleType) -> None:
    before = set(threading.enumerate())
    assert bench.wait_at_most(lambda stop: not stop.is_set(), 600) is True
    assert new_threads(before) == []


def test_deadline_stops_the_wait_and_leaves_no_thread(bench: ModuleType) -> None:
    before = set(threading.enumerate())
    started = time.monotonic()
    assert bench.wait_at_most(lambda stop: stop.wait(60), 0.05) is True
    assert time.monotonic() - started < 30
    assert new_threads(before) == []


def test_deadline_leaves_no_thread_when_the_wait_fails(bench: ModuleType) -> None:
    before = set(threading.enumerate())

    def broken(stop: threading.Event) -> bool:
        raise RuntimeError("the sync failed")

    with pytest.raises(RuntimeError, match="the sync failed"):
        bench.wait_at_most(broken, 600)
    assert new_threads(before) == []


def test_interpreter_exits_right_after_a_run_with_a_long_deadline() -> None:
    """What `make bench` met: a pending 900 s timer kept the finished bench alive."""
    script = "import sync_throughput\nprint(sync_throughput.wait_at_most(lambda stop: True, 900))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_peak_rss_is_the_childs_own(bench: ModuleType, tmp_path: Path) -> None:
    """A child that allocates 96 MiB reports at least that; a bare child reports its own few
    MiB even though this process holds much more (what RUSAGE_CHILDREN got wrong)."""
    held = bytearray(256 << 20)  # touched: zero-filled pages are resident
    for offset in range(0, len(held), 4096):
        held[offset] = 1
    assert bench.vm_hwm_kib(os.getpid()) >= 256 << 10

    env = dict(os.environ)
    code, big = bench.run_measured(
        [sys.executable, "-c", "import time; b = bytearray(96 << 20); time.sleep(0.5)"],
        env,
        tmp_path / "big.log",
    )
    assert code == 0 and big >= 96 << 10, big
    code, small = bench.run_measured(
        [sys.executable, "-c", "import time; time.sleep(0.5)"], env, tmp_path / "small.log"
    )
    assert code == 0 and 0 < small < 64 << 10, small
    del held


def test_peak_rss_of_a_failing_command_keeps_its_exit_code(
    bench: ModuleType, tmp_path: Path
) -> None:
    log = tmp_path / "fail.log"
    code, _ = bench.run_measured(
        [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], dict(os.environ), log
    )
    assert code == 3
    assert "boom" in log.read_text()
