"""Memory soak: the sync's resident set while the synthesizer writes live traffic (issue 15).

Starts Harper and the BigQuery emulator, creates the synthesizer's tables with `--history-hours`
of positions for `--vessels` vessels, catches up once (`harperbq sync run --once`, its peak
VmHWM reported), then runs `harperbq sync run` continuously as a child process for `--minutes`
while the synthesizer, in this process, writes new positions live (its rolling window, load
jobs every two minutes). The sync child's VmRSS (`/proc/<pid>/status`) is sampled every
`--every` seconds. Validation and reconciliation run every 60 s (JOB_INTERVAL_S), so they
run many times. Flat means every sample after `--warmup-minutes` (start-up and the first run
of each periodic job) is within 10 % of those samples' mean: the range is judged, not a median.
Prints JSON (every sample, min, max, mean), a table with one row per minute, and one summary
line. At the end, after the last live write, Harper must reach BigQuery's row count.

Everything started here (Harper, the emulator, the sync child, the synthesizer's thread) is
stopped in a `finally`, whatever ends the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from google.cloud import bigquery

from harperbq.bigquery.client import make_client
from harperbq.config import load_config
from harperbq.devstack import emulator, harper
from harperbq.devstack.paths import harper_install_dir
from harperbq.harper.client import HarperClient
from harperbq.synth.params import SynthParams
from harperbq.synth.window import LiveStats, Synthesizer
from sync_throughput import run_measured, write_config

DATASET = "soak"
AIM_PCT = 10.0
JOB_INTERVAL_S = 60
"""Validation and reconciliation interval in the soak (the defaults are 300 s and longer)."""


def vm_rss_kib(pid: int) -> int:
    """The process's current resident set (VmRSS) in KiB; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def config_file(path: Path, node: harper.HarperNode, emu: emulator.Emulator) -> Path:
    """Periodic jobs shortened (validation every `JOB_INTERVAL_S`, not 300 s; reconciliation
    likewise) so each runs several times within the soak and its memory is judged, not skipped."""
    sync = {"settle": "5s", "pollInterval": 10_000, "reconcileInterval": f"{JOB_INTERVAL_S}s"}
    validation: dict[str, object] = {"interval": f"{JOB_INTERVAL_S}s"}
    return write_config(
        path,
        node,
        emu,
        "soak",
        sync,
        validation,
        dataset=DATASET,
        table="vessel_positions",
        columns="*",
    )


class LiveWriter:
    """The synthesizer's live mode in a thread, stoppable and joined (`Synthesizer.run`)."""

    def __init__(self, synth: Synthesizer, interval_s: float) -> None:
        self.stop = threading.Event()
        self.stats: LiveStats | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(synth, interval_s), name="soak-synth", daemon=True
        )

    def _run(self, synth: Synthesizer, interval_s: float) -> None:
        try:
            self.stats = synth.run(self.stop, backfill=False, interval_s=interval_s)
        except BaseException as exc:  # reported by the bench, not lost in the thread
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop after the current window (it flushes what it holds), and wait for it."""
        self.stop.set()
        self._thread.join(timeout=300)


def stop_child(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (the sync finishes its window and exits), SIGKILL if it does not in 60 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def sample(
    proc: subprocess.Popen[bytes], minutes: float, every_s: float, writer: LiveWriter
) -> list[tuple[float, float]]:
    """(seconds since start, VmRSS MiB) every `every_s` for `minutes`, on a fixed schedule."""
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    ticks = int(minutes * 60 / every_s)
    for tick in range(ticks + 1):
        delay = started + tick * every_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if proc.poll() is not None:
            raise SystemExit(f"the sync exited during the soak (code {proc.returncode})")
        if writer.error is not None:
            raise SystemExit(f"the synthesizer failed: {writer.error!r}")
        samples.append(
            (round(time.monotonic() - started, 1), round(vm_rss_kib(proc.pid) / 1024, 1))
        )
    return samples


def kept_up(
    bq: bigquery.Client, node: harper.HarperNode, proc: subprocess.Popen[bytes]
) -> dict[str, Any]:
    """After the last live write: does Harper reach the source's row count (within 180 s)?"""
    source = f"`{bq.project}.{DATASET}.vessel_positions`"
    rows = int(next(iter(bq.query(f"SELECT COUNT(*) AS n FROM {source}").result()))["n"])  # noqa: S608
    deadline = time.monotonic() + 180
    harper_rows = -1
    with HarperClient(node.url, node.username, node.password) as client:
        while time.monotonic() < deadline and proc.poll() is None:
            harper_rows = int(client.sql("SELECT COUNT(*) AS n FROM soak.Positions")[0]["n"])
            if harper_rows >= rows:
                break
            time.sleep(2)
    return {"bigquery_rows": rows, "harper_rows": harper_rows, "caught_up": harper_rows >= rows}


def summarise(samples: list[tuple[float, float]], warmup_min: float) -> dict[str, Any]:
    """Flat means every sample after the warm-up lies within AIM_PCT of those samples' mean:
    judged on the range (max and min), not a median, so a step cannot hide."""
    warmup_s = warmup_min * 60
    values = [m for t, m in samples if t >= warmup_s]
    if not values:
        raise SystemExit(f"no samples after the {warmup_min:g}-min warm-up: run longer")
    mean = statistics.fmean(values)
    lo, hi = min(values), max(values)
    return {
        "samples": len(samples),
        "judged_samples": len(values),
        "minutes": round(samples[-1][0] / 60, 2),
        "warmup_minutes": warmup_min,
        "min_mib": lo,
        "max_mib": hi,
        "mean_mib": round(mean, 1),
        "below_mean_pct": round((lo - mean) / mean * 100, 2),
        "above_mean_pct": round((hi - mean) / mean * 100, 2),
        "flat": (hi - mean) / mean * 100 <= AIM_PCT and (mean - lo) / mean * 100 <= AIM_PCT,
    }


def table(samples: list[tuple[float, float]], width: int = 40) -> str:
    """One row per minute: the minute's median RSS and a bar between the run's min and max."""
    by_minute: dict[int, list[float]] = {}
    for t, m in samples:
        by_minute.setdefault(int(t // 60), []).append(m)
    values = [m for _, m in samples]
    lo, hi = min(values), max(values)
    lines = [f"minute  RSS MiB  {lo:.1f} .. {hi:.1f} MiB"]
    for minute, ms in sorted(by_minute.items()):
        median = statistics.median(ms)
        bar = round((median - lo) / (hi - lo) * width) if hi > lo else 0
        lines.append(f"{minute:6d}  {median:7.1f}  |{'#' * bar}{' ' * (width - bar)}|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=3.0,
        help="start-up plus the first validation and reconciliation (each due after "
        f"{JOB_INTERVAL_S} s, then taking about a minute under load): shown, not judged",
    )
    parser.add_argument("--vessels", type=int, default=2_000)
    parser.add_argument("--history-hours", type=float, default=0.25)
    parser.add_argument("--interval", type=float, default=10.0, help="synthesizer window, s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harperbq-soak-") as tmp:
        node = harper.new_node(Path(tmp) / "harper", name="bench")
        emu = emulator.new_emulator(Path(tmp) / "emulator", project="bench")
        writer: LiveWriter | None = None
        proc: subprocess.Popen[bytes] | None = None
        try:
            harper.start(node, harper_install_dir())
            emulator.start(emu)
            env = {**os.environ, "BENCH_HARPER_PASSWORD": node.password}
            path = config_file(Path(tmp) / "soak.yaml", node, emu)
            bq = make_client(load_config(path, env).bigquery)
            params = SynthParams(dataset=DATASET, total_vessels=args.vessels, retention_days=3)
            synth = Synthesizer(bq, params)
            history = synth.initialize(args.history_hours / 24)
            # Control API on any free port: a fixed one may be taken on a shared machine.
            argv = [sys.executable, "-m", "harperbq", "sync", "run", "--config", str(path)]
            argv += ["--control-port", "0"]
            code, catch_up_kib = run_measured([*argv, "--once"], env, Path(tmp) / "once.log")
            if code != 0:
                log = (Path(tmp) / "once.log").read_text()[-2000:]
                raise SystemExit(f"catch-up failed ({code}): {log}")
            writer = LiveWriter(synth, args.interval)
            writer.start()
            log_path = Path(tmp) / "soak.log"
            with log_path.open("wb") as log_file:
                proc = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
                samples = sample(proc, args.minutes, args.every, writer)
                writer.close()  # its last rows are loaded: the sync must reach them
                synced = kept_up(bq, node, proc)
                exit_code = stop_child(proc)
            live = writer.stats
        finally:
            if proc is not None:
                stop_child(proc)
            if writer is not None:
                writer.close()
            emulator.stop(emu)
            harper.stop(node)
    summary = summarise(samples, args.warmup_minutes)
    result = {
        "vessels": args.vessels,
        "history_rows": dict(history.rows),
        "catch_up_peak_rss_mib": round(catch_up_kib / 1024, 1),
        "live_rows_written": dict(live.rows) if live is not None else None,
        "sync_exit_code": exit_code,
        "after_last_write": synced,
        "every_s": args.every,
        **summary,
        "aim_pct": AIM_PCT,
        "job_interval_s": JOB_INTERVAL_S,
        "rss_mib": samples,
    }
    print(json.dumps(result, indent=2))
    print(table(samples))
    verdict = "flat" if summary["flat"] else "NOT flat"
    print(
        f"soak: RSS {verdict} over {summary['minutes']:g} min: after {args.warmup_minutes:g} min "
        f"of warm-up, {summary['judged_samples']} samples in {summary['min_mib']}.."
        f"{summary['max_mib']} MiB, mean {summary['mean_mib']} MiB "
        f"({summary['below_mean_pct']:+.1f} % / {summary['above_mean_pct']:+.1f} %; aim within "
        f"±{AIM_PCT:g} %); validation and reconciliation every {JOB_INTERVAL_S} s; "
        f"catch-up peak {result['catch_up_peak_rss_mib']} MiB"
    )


if __name__ == "__main__":
    main()
