"""Issue 11 item 8: a running sync notices source schema changes and applies `onSchemaChange`.

It used to read the schema once at start: a new column was missed until a restart, after a type
change every new row was skipped while the table showed `idle`, and `onSchemaChange: fail` did
not stop the table. Now `evolve` takes the change for the rows synced from then on (audited),
and `fail` stops the table with an error that names the change (status, audit, metric); no row
is silently skipped in either case.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.e2e.live import records, running, wait_for
from tests.support import make_source

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.phases import RunState
from harperbq.sync.state import StateStore
from harperbq.sync.stored_status import table_statuses
from harperbq.times import parse_iso

WriteConfig = Callable[..., tuple[Path, Config]]
OLD_ROWS = 200
NEW_ROWS = 20
SCHEMA = [F("ts", "TIMESTAMP"), F("k", "INT64"), F("x", "FLOAT64")]


def old_rows() -> list[dict[str, Any]]:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    return [
        {"ts": (start + timedelta(seconds=i)).isoformat(), "k": i, "x": i / 4}
        for i in range(OLD_ROWS)
    ]


def new_rows(change: str) -> list[dict[str, Any]]:
    """Rows stamped just ahead of now, so the running sync takes them in its next windows."""
    start = datetime.now(UTC) + timedelta(seconds=2)
    rows: list[dict[str, Any]] = []
    for i in range(NEW_ROWS):
        row: dict[str, Any] = {
            "ts": (start + timedelta(milliseconds=10 * i)).isoformat(),
            "k": OLD_ROWS + i,
        }
        if change == "add":
            row |= {"x": 1.5, "c": f"new-{i}"}
        else:
            row |= {"x": f"text-{i}"}
        rows.append(row)
    return rows


def change_source(bq: bigquery.Client, ref: str, change: str) -> None:
    """CREATE OR REPLACE TABLE with the new schema and the old rows (the emulator's
    `update_table` changes the metadata only, and BigQuery cannot retype a column in place)."""
    if change == "add":
        schema, rows = [*SCHEMA, F("c", "STRING")], old_rows()
    else:
        schema = [F("ts", "TIMESTAMP"), F("k", "INT64"), F("x", "STRING")]
        rows = [{**r, "x": str(r["x"])} for r in old_rows()]
    bq.delete_table(ref)
    bq.create_table(bigquery.Table(ref, schema=schema))
    bq.load_table_from_json(rows, ref).result()


@pytest.mark.parametrize(
    ("mode", "change"),
    [("evolve", "add"), ("fail", "add"), ("evolve", "retype"), ("fail", "retype")],
)
def test_source_schema_change_while_running(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: WriteConfig,
    unique: str,
    mode: str,
    change: str,
) -> None:
    dataset = f"schema_{unique}"
    make_source(bq, dataset, "s", SCHEMA, old_rows())
    ref = f"{bq.project}.{dataset}.s"
    spec = {
        "id": "s",
        "dataset": dataset,
        "table": "s",
        "timestampColumn": "ts",
        "targetTable": "S",
        "primaryKey": ["k"],
        "onSchemaChange": mode,
    }
    _, cfg = write_config(
        [spec], sync={"settle": "0s", "pollInterval": 200}, validation={"enabled": False}
    )
    database = cfg.harper.database
    state = StateStore(harper_client, cfg.harper.state_database)
    with running(cfg, harper_client) as service:
        runner = service.runners()[0]
        wait_for(
            "the initial sync",
            lambda: (
                len(records(harper_client, database, "S")) == OLD_ROWS
                and runner.state == RunState.IDLE
            ),
        )
        change_source(bq, ref, change)
        fresh = new_rows(change)
        bq.load_table_from_json(fresh, ref).result()
        if mode == "evolve":
            wanted = {r["k"]: r for r in fresh}

            def taken() -> bool:
                got = {int(r["k"]): r for r in records(harper_client, database, "S").values()}
                return all(
                    k in got and all(got[k].get(c) == v for c, v in row.items() if c != "ts")
                    for k, row in wanted.items()
                )

            wait_for("the new rows in the new shape", taken, timeout_s=90)
            assert runner.engine.status.rows_skipped == 0
            entries = state.recent_audit("s", kind="schema", limit=5)
            described = "added c" if change == "add" else "retyped x NULLABLE FLOAT64 -> "
            assert entries and described in entries[0].message, entries
            exposition = service.metrics.exposition().decode()
            assert 'reason="schema_evolved"' in exposition
            notices = table_statuses(cfg, harper_client)[0]["notices"]
            assert any(n["kind"] == "schema" for n in notices)
            if change == "add":  # rows synced before keep the old shape (docs: sync reset)
                old = records(harper_client, database, "S")
                assert sum(1 for r in old.values() if r.get("c") is None) == OLD_ROWS
            return
        wait_for("the table to stop with an error", lambda: runner.state == RunState.ERROR)
        error = runner.engine.status.last_error or ""
        for part in ("SourceSchemaChangedError", "onSchemaChange", ref.split(".", 1)[1]):
            assert part in error, error
        assert ("added c" if change == "add" else "retyped x") in error, error
        # It stays stopped: no new row written, none skipped, the checkpoint not past them.
        wait_for("a retry", lambda: runner.attempts >= 2, timeout_s=30)
        assert runner.state == RunState.ERROR
        assert len(records(harper_client, database, "S")) == OLD_ROWS
        assert runner.engine.status.rows_skipped == 0
        first_new = parse_iso(min(r["ts"] for r in fresh))
        stored = state.get_checkpoints("s")
        assert all(cp.hi is None or cp.hi <= first_new for cp in stored.values())
        status = table_statuses(cfg, harper_client)[0]
        assert "SourceSchemaChangedError" in (status["last_error"] or "")
        assert 'kind="SourceSchemaChangedError"' in service.metrics.exposition().decode()
