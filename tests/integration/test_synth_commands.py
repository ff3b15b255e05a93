# ruff: noqa: S608  (test queries over tables the tests create themselves)
"""Every synth command against the BigQuery emulator, and the rolling window's exact gap filling."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml
from google.cloud import bigquery
from typer.testing import CliRunner

from harperbq.cli.main import app
from harperbq.devstack.emulator import Emulator
from harperbq.synth.params import SynthParams
from harperbq.synth.tables import Generator
from harperbq.synth.window import HOUR, Synthesizer, coverage, floor_to, retention_cutoff

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def dataset_name() -> str:
    return f"synth_{uuid.uuid4().hex[:10]}"


def write_config(path: Path, emu: Emulator, dataset: str, **synth: Any) -> Path:
    body = {
        "bigquery": {"projectId": emu.project, "endpoint": emu.endpoint},
        "synthesizer": {"dataset": dataset, "totalVessels": 8, "retentionDays": 1, **synth},
    }
    file = path / f"{dataset}.yaml"
    file.write_text(yaml.safe_dump(body))
    return file


def invoke(*args: str) -> Any:
    result = runner.invoke(app, ["synth", *args])
    assert result.exit_code == 0, result.output
    return result


def count(bq: bigquery.Client, table: str, where: str = "TRUE") -> int:
    return int(
        next(iter(bq.query(f"SELECT COUNT(*) AS n FROM `{table}` WHERE {where}").result()))["n"]
    )


def rows_of(bq: bigquery.Client, table: str) -> list[tuple[Any, ...]]:
    result = bq.query(
        "SELECT mmsi, UNIX_MICROS(timestamp) AS t, UNIX_MICROS(ingested_at) AS i, latitude, "
        f"speed_knots FROM `{table}`"
    ).result()
    return sorted(
        (r["mmsi"], r["t"], r["i"], round(r["latitude"], 6), r["speed_knots"]) for r in result
    )


def expected(gen_rows: pa.Table) -> list[tuple[Any, ...]]:
    t = gen_rows["timestamp"].cast(pa.int64()).to_pylist()
    i = gen_rows["ingested_at"].cast(pa.int64()).to_pylist()
    return sorted(
        zip(
            gen_rows["mmsi"].to_pylist(),
            t,
            i,
            [round(x, 6) for x in gen_rows["latitude"].to_pylist()],
            gen_rows["speed_knots"].to_pylist(),
            strict=True,
        )
    )


def test_initialize_stats_clear_clean_reset(
    tmp_path: Path, bq: bigquery.Client, bq_emulator: Emulator
) -> None:
    ds = dataset_name()
    cfg = str(write_config(tmp_path, bq_emulator, ds))
    invoke("initialize", "small", "-c", cfg)
    stats = json.loads(invoke("stats", "-c", cfg, "--json").stdout)
    pos = stats["positions"]
    assert pos["rows"] == count(bq, f"{ds}.vessel_positions") > 300
    assert pos["vessels"] == 8 and stats["metadata"]["vessels"] == 8
    table = bq.get_table(f"{bq.project}.{ds}.vessel_positions")
    assert table.time_partitioning.field == "timestamp" and table.time_partitioning.type_ == "DAY"
    assert table.time_partitioning.expiration_ms == 86_400_000
    assert table.clustering_fields == ["mmsi"]
    assert bq.get_table(f"{bq.project}.{ds}.port_events").time_partitioning.field == "event_time"
    # initialize is idempotent: a second run adds nothing for the hour already there
    before = count(bq, f"{ds}.vessel_positions")
    invoke("initialize", "small", "-c", cfg)
    assert (
        count(
            bq,
            f"{ds}.vessel_positions",
            "ingested_at < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 10 SECOND)",
        )
        <= before
    )
    rendered = invoke("stats", "-c", cfg).stdout
    assert "vessel_positions" in rendered and "rows" in rendered

    invoke("clear", "-c", cfg)
    assert count(bq, f"{ds}.vessel_positions") == 0 and count(bq, f"{ds}.vessel_metadata") == 0
    assert bq.get_table(f"{bq.project}.{ds}.vessel_positions").clustering_fields == ["mmsi"]

    invoke("clean", "-c", cfg)
    gone = json.loads(invoke("stats", "-c", cfg, "--json").stdout)
    assert not gone["positions"]["exists"] and not gone["events"]["exists"]

    started = time.time()
    invoke("reset", "0.25", "-c", cfg)
    oldest = next(
        iter(
            bq.query(
                f"SELECT MIN(ingested_at) AS a, COUNT(*) AS n FROM `{ds}.vessel_positions`"
            ).result()
        )
    )
    assert oldest["n"] > 0
    # 6 h back from the reset's own clock (whole seconds), however long the reset took.
    assert started - oldest["a"].timestamp() <= 0.25 * 86_400 + 1


def test_backfill_restores_deleted_rows_exactly_with_late_rows_and_duplicates(
    bq: bigquery.Client,
) -> None:
    ds = dataset_name()
    params = SynthParams(
        dataset=ds,
        total_vessels=12,
        seed=3,
        late_fraction=0.1,
        late_max_s=600,
        duplicate_fraction=0.02,
        retention_days=2,
    )
    now = floor_to(time.time(), HOUR) - 2 * HOUR + 1234.0
    synth = Synthesizer(bq, params, clock=lambda: now)
    synth.initialize(3 / 24)
    table = f"{bq.project}.{ds}.vessel_positions"
    full = count(bq, table)
    # lose a middle stretch and the tail, as a crash or an outage would
    for lo, hi in ((now - 2 * HOUR + 100, now - HOUR - 50), (now - 1200, now)):
        bq.query(
            f"DELETE FROM `{table}` WHERE ingested_at >= TIMESTAMP_SECONDS({int(lo)}) "
            f"AND ingested_at < TIMESTAMP_SECONDS({int(hi)})"
        ).result()
    assert count(bq, table) < full
    gaps = synth.gaps(now - 3 * HOUR, now)["positions"]
    for lo, hi in ((now - 2 * HOUR + 100, now - HOUR - 50), (now - 1200, now)):
        assert any(a <= lo + 1 and hi - 1 <= b for a, b in gaps), (lo, hi, gaps)
    missing = full - count(bq, table)
    result = synth.backfill(now - 3 * HOUR, now)
    start = floor_to(now - 3 * HOUR, HOUR)  # backfill widens to whole hours
    widened = Generator(params).positions(start, now - 3 * HOUR).num_rows
    assert result.rows["positions"] == missing + widened
    want = expected(Generator(params).positions(start, now))
    assert (
        rows_of(bq, table) == want
    )  # every row back, none twice, late rows and duplicates included
    assert count(bq, table) == len(want)


def test_start_fills_the_rolling_window_then_resumes_exactly_after_a_stop(
    bq: bigquery.Client,
) -> None:
    ds = dataset_name()
    params = SynthParams(
        dataset=ds, total_vessels=5, seed=4, retention_days=1, late_fraction=0.05, late_max_s=300
    )
    synth = Synthesizer(bq, params)
    stats = synth.run(threading.Event(), once=True, interval_s=0.2)
    cutoff = retention_cutoff(stats.cursor, 1)
    table = f"{bq.project}.{ds}.vessel_positions"
    lo = floor_to(cutoff + 300 + HOUR - 1, HOUR)
    first = count(bq, table)
    assert first == Generator(params).positions(lo, stats.cursor).num_rows > 1000
    time.sleep(1.2)  # the process is "down" for a moment; the next start closes exactly that gap
    again = Synthesizer(bq, params).run(threading.Event(), once=True, interval_s=0.2)
    assert again.cursor > stats.cursor
    assert rows_of(bq, table) == expected(Generator(params).positions(lo, again.cursor))


def test_start_stops_cleanly_on_sigterm_and_writes_what_it_generated(
    tmp_path: Path, bq: bigquery.Client, bq_emulator: Emulator
) -> None:
    ds = dataset_name()
    cfg = write_config(tmp_path, bq_emulator, ds, totalVessels=300, generationIntervalMs=300)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harperbq",
            "synth",
            "start",
            "-c",
            str(cfg),
            "--no-backfill",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and not ready and proc.poll() is None:
            try:  # the current hour is completed first (a load job), then live windows pend
                ready = count(bq, f"{ds}.vessel_positions") > 0
            except Exception:
                ready = False
            if not ready:
                time.sleep(0.2)
        assert ready, "no rows appeared"
        time.sleep(2.5)  # a few windows pending in the buffer (loads flush every 2 min)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out.decode())
    assert summary["windows"] >= 2
    assert summary["live_rows"].get("positions", 0) > 0  # the pending windows were flushed on stop
    assert count(bq, f"{ds}.vessel_positions") >= summary["live_rows"]["positions"]


def test_streaming_inserts_when_configured(
    tmp_path: Path, bq: bigquery.Client, bq_emulator: Emulator
) -> None:
    ds = dataset_name()
    # 400 vessels reporting every ~10 s: ~100 positions in 2.5 s, so an empty window (which
    # would make this test fail by chance) has a probability below 1e-40.
    cfg = str(
        write_config(
            tmp_path, bq_emulator, ds, useStreamingAPIs=True, totalVessels=400, samplingIntervalS=10
        )
    )
    result = invoke(
        "start", "-c", cfg, "--no-backfill", "--duration", "2.5", "--interval", "1", "--json"
    )
    summary = json.loads(result.stdout)
    assert summary["load_jobs"] == 0 and summary["live_rows"]["positions"] > 0
    assert count(bq, f"{ds}.vessel_positions") >= summary["live_rows"]["positions"]
    # Right after streaming, BigQuery (and the strict emulator) refuses DML over the streamed
    # rows for 30 minutes: clear drops and recreates the tables instead.
    before = bq.get_table(f"{bq.project}.{ds}.vessel_positions")
    cleared = json.loads(invoke("clear", "-c", cfg, "--json").stdout)["deleted"]
    assert cleared["positions"] >= summary["live_rows"]["positions"]
    assert count(bq, f"{ds}.vessel_positions") == 0
    after = bq.get_table(f"{bq.project}.{ds}.vessel_positions")
    assert after.clustering_fields == before.clustering_fields == ["mmsi"]
    assert after.time_partitioning == before.time_partitioning and after.labels == before.labels
    assert [f.name for f in after.schema] == [f.name for f in before.schema]


def test_backfill_command_and_cleanup_of_expired_rows(
    tmp_path: Path, bq: bigquery.Client, bq_emulator: Emulator
) -> None:
    ds = dataset_name()
    cfg = str(write_config(tmp_path, bq_emulator, ds, totalVessels=4, retentionDays=1))
    start = floor_to(time.time() - 2.5 * 86_400, HOUR)
    out = invoke(
        "backfill",
        "--from",
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "--to",
        "-36h",
        "-c",
        cfg,
        "--json",
    )
    rows = json.loads(out.stdout)["rows"]["positions"]
    table = f"{ds}.vessel_positions"
    assert rows == count(bq, table) > 0
    # a second backfill of the same range finds nothing missing
    again = json.loads(
        invoke("backfill", "--from", "-60h", "--to", "-36h", "-c", cfg, "--json").stdout
    )
    assert again["rows"]["positions"] < rows / 10  # only the hour-widened edge, never a repeat
    keys = next(
        iter(
            bq.query(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT CONCAT(mmsi, "
                f"CAST(UNIX_MICROS(timestamp) AS STRING))) AS d FROM `{table}`"
            ).result()
        )
    )
    assert keys["n"] == keys["d"]
    cleaned = json.loads(invoke("cleanup", "-c", cfg, "--json").stdout)["deleted"]
    assert cleaned["positions"] > 0
    cutoff = retention_cutoff(time.time(), 1)
    oldest = next(iter(bq.query(f"SELECT MIN(timestamp) AS a FROM `{table}`").result()))["a"]
    assert oldest is None or oldest.timestamp() >= cutoff


def test_gap_detection_bills_only_the_partitions_of_its_range(
    tmp_path: Path, bq: bigquery.Client, bq_emulator: Emulator
) -> None:
    if not bq_emulator.strict:
        pytest.skip("only the strict local BigQuery bills bytes (HARPERBQ_BQ_STRICT=0 here)")
    ds = dataset_name()
    cfg = str(write_config(tmp_path, bq_emulator, ds, totalVessels=4, retentionDays=4))
    invoke("backfill", "--from", "-72h", "--to", "-1h", "-c", cfg)
    table_id = f"{bq.project}.{ds}.vessel_positions"
    params = SynthParams(dataset=ds, total_vessels=4, retention_days=4)
    lo = floor_to(time.time() - 30 * HOUR, HOUR)
    found = coverage(
        bq, table_id, lo, lo + HOUR, time_column="timestamp", late_horizon_s=params.late_horizon_s
    )
    assert found and all(lo <= c.hour < lo + HOUR for c in found)
    job = next(
        j
        for j in bq.list_jobs(max_results=20)
        if isinstance(j, bigquery.QueryJob)
        and "TIMESTAMP_TRUNC(ingested_at" in (j.query or "")
        and f"`{ds}`" in (j.query or "")
    )
    # The day partitions of [lo - late horizon, lo + 1 h): two columns of 8 bytes per row there.
    first = time.strftime("%Y-%m-%d", time.gmtime(lo - params.late_horizon_s))
    last = time.strftime("%Y-%m-%d", time.gmtime(lo + HOUR - 1))
    where = f"DATE(timestamp) BETWEEN '{first}' AND '{last}'"
    in_range, total = count(bq, table_id, where), count(bq, table_id)
    assert job.total_bytes_processed == 16 * in_range < 16 * total


def test_refuses_to_mix_two_fleets(
    tmp_path: Path, bq: bigquery.Client, bq_emulator: Emulator
) -> None:
    ds = dataset_name()
    cfg = str(write_config(tmp_path, bq_emulator, ds))
    invoke("initialize", "0.01", "-c", cfg)
    result = runner.invoke(app, ["synth", "backfill", "--from", "-2h", "-c", cfg, "--seed", "99"])
    assert result.exit_code == 2
    assert "reset" in result.output and "seed" in result.output


def test_product_code_loads_without_the_test_harness_upload_workaround(
    tmp_path: Path, bq: bigquery.Client, bq_emulator: Emulator
) -> None:
    ds = dataset_name()
    cfg = write_config(tmp_path, bq_emulator, ds, totalVessels=2)
    # a fresh process: no _GENERIC_CONTENT_TYPE patch from conftest; small bodies must still load
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harperbq",
            "synth",
            "initialize",
            "0.005",
            "-c",
            str(cfg),
            "--json",
        ],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert count(bq, f"{ds}.vessel_positions") > 0


def test_alias_and_help() -> None:
    exe = Path(sys.executable).parent / "maritime-data-synthesizer"
    done = subprocess.run([str(exe), "--help"], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0
    for command in (
        b"initialize",
        b"start",
        b"backfill",
        b"cleanup",
        b"stats",
        b"clear",
        b"clean",
        b"reset",
    ):
        assert command in done.stdout
    bad = runner.invoke(app, ["synth", "initialize", "huge"])
    assert bad.exit_code != 0


@pytest.fixture(autouse=True)
def _quiet_numpy() -> None:
    np.seterr(all="ignore")
