"""Issue 11 item 13: sync state belongs to one source, target, cursor and key, never to an id alone.

A second configuration on the same Harper whose table reuses an `id` for another target or
another source used to inherit the first one's checkpoints silently (it started at the end and
wrote almost nothing). Now it stops with an error naming the mismatch and the fix, the other
tables of that configuration go on, and the first configuration keeps working.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import bigquery
from tests.e2e.live import records
from tests.support import keyed_table, make_source, run_once, run_to_end

from harperbq.bigquery.client import make_client
from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.phases import RunState
from harperbq.sync.service import SyncService
from harperbq.sync.state import StateStore
from harperbq.sync.stored_status import table_statuses

WriteConfig = Callable[..., tuple[Path, Config]]
ROWS = 300
SETTLED = {"settle": "0s"}  # a run syncs up to now: rows stamped now are not late


def keys(client: HarperClient, database: str, table: str) -> list[int]:
    return sorted(int(r["k"]) for r in records(client, database, table).values())


def run_expecting_failure(cfg: Config, harper: HarperClient) -> SyncService:
    """`sync run --once` in-process where some table is expected to fail; returns the service."""
    service = SyncService(cfg, harper, make_client(cfg.bigquery), once=True)
    ok, ended = run_to_end(service, 120)
    assert ended, "the run did not end by itself"
    assert not ok
    return service


def test_reused_table_id_never_inherits_another_configs_state(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    dataset = f"ident_{unique}"
    first = keyed_table(bq, dataset, ROWS)
    _, cfg_a = write_config([first], sync=SETTLED)
    database = cfg_a.harper.database
    run_once(cfg_a, harper_client)
    assert keys(harper_client, database, "T") == list(range(ROWS))

    # A second configuration: the same id `t` for another target table, plus a table of its own.
    other = {**first, "id": "u", "targetTable": "U"}
    _, cfg_b = write_config([{**first, "targetTable": "T2"}, other], sync=SETTLED)
    service = run_expecting_failure(cfg_b, harper_client)
    states = {r.table_id: r.state for r in service.runners()}
    assert states == {"t": RunState.FAILED, "u": RunState.DONE}, states
    error = next(r for r in service.runners() if r.table_id == "t").engine.status.last_error or ""
    for part in (
        "StateMismatchError",
        f"stored '{database}.T'",
        f"configured '{database}.T2'",
        "own `id`",
        "harperbq sync reset --table t",
    ):
        assert part in error, error
    assert records(harper_client, database, "T2") == {}  # nothing resumed from A's checkpoint
    assert keys(harper_client, database, "U") == list(range(ROWS))  # the other table went on
    assert 'reason="state_mismatch"' in service.metrics.exposition().decode()
    state = StateStore(harper_client, cfg_b.harper.state_database)
    audit = state.recent_audit("t", kind="error", limit=5)
    assert audit and "StateMismatchError" in audit[0].message
    status = {s["table"]: s for s in table_statuses(cfg_b, harper_client)}
    assert status["t"]["state_mismatch"] and "T2" in (status["t"]["last_error"] or "")
    assert not status["u"]["state_mismatch"]

    # Another source under the same id and target is refused the same way.
    start = datetime(2024, 2, 1, tzinfo=UTC)
    make_source(
        bq,
        dataset,
        "t_other",
        [bigquery.SchemaField("ts", "TIMESTAMP"), bigquery.SchemaField("k", "INT64")],
        [{"ts": (start + timedelta(seconds=i)).isoformat(), "k": 10_000 + i} for i in range(50)],
    )
    _, cfg_c = write_config([{**first, "table": "t_other"}], sync=SETTLED)
    service = run_expecting_failure(cfg_c, harper_client)
    error = service.runners()[0].engine.status.last_error or ""
    assert f".{dataset}.t'" in error and f".{dataset}.t_other'" in error, error
    assert keys(harper_client, database, "T") == list(range(ROWS))  # nothing foreign written

    # The first configuration keeps working from its own checkpoints.
    later = datetime.now(UTC) - timedelta(seconds=1)  # after A's checkpoint (runs since)
    more = [
        {"ts": (later + timedelta(milliseconds=i)).isoformat(), "k": ROWS + i} for i in range(20)
    ]
    bq.load_table_from_json(more, f"{bq.project}.{dataset}.t").result()
    run_once(cfg_a, harper_client)
    assert keys(harper_client, database, "T") == list(range(ROWS + 20))

    # The documented fix: `sync reset --table t` re-points the id to configuration B.
    assert state.delete_checkpoints("t") > 0
    run_once(cfg_b, harper_client)
    assert keys(harper_client, database, "T2") == list(range(ROWS + 20))
    stored = state.get_checkpoints("t")
    assert stored and {cp.target for cp in stored.values()} == {f"{database}.T2"}


def test_state_without_identity_is_adopted_and_stamped(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    dataset = f"adopt_{unique}"
    spec = keyed_table(bq, dataset, ROWS)
    _, cfg = write_config([spec], sync=SETTLED)
    run_once(cfg, harper_client)
    state = StateStore(harper_client, cfg.harper.state_database)
    # As the previous version stored them: no identity fields.
    legacy: list[dict[str, Any]] = []
    for cp in state.get_checkpoints("t").values():
        record = cp.to_record()
        for name in ("source", "target", "cursor", "key"):
            record[name] = None
        legacy.append(record)
    harper_client.upsert(cfg.harper.state_database, "SyncCheckpoint", legacy)
    assert all(not cp.source for cp in state.get_checkpoints("t").values())

    run_once(cfg, harper_client)  # resumes (nothing new to write) and stamps the state
    stamped = state.get_checkpoints("t")
    assert stamped and all(
        cp.source == f"{bq.project}.{dataset}.t"
        and cp.target == f"{cfg.harper.database}.T"
        and cp.cursor == "ts"
        and cp.key == "k"
        for cp in stamped.values()
    )
    assert sum(cp.rows_total for cp in stamped.values()) == ROWS  # resumed, not re-synced
    assert state.recent_audit("t", kind="state", limit=1)


def test_engine_holds_the_checkpoints_harper_holds(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    """Each stored field is stamped in one place (issue 16 item 1): the store stamps
    `updated_at`, the sink the writer and identity, and the engine keeps what was stored, so
    its next window builds on exactly the records Harper holds (it used to stamp its own
    `updated_at`, which the store then overwrote)."""
    dataset = f"stamp_{unique}"
    spec = keyed_table(bq, dataset, ROWS)
    _, cfg = write_config([spec], sync=SETTLED)
    service = run_once(cfg, harper_client)
    engine = service.runners()[0].engine
    held = engine.checkpoints()
    stored = {
        cp.partition: cp
        for cp in StateStore(harper_client, cfg.harper.state_database).checkpoint_records("t")
    }
    written = {p for p, cp in held.items() if cp.hi}
    assert written and written <= set(stored)
    fields = ("updated_at", "worker_id", "source", "target", "hi", "rows_total", "generation")
    for partition in written:
        mine, theirs = held[partition], stored[partition]
        assert mine.updated_at, partition
        assert [getattr(mine, f) for f in fields] == [getattr(theirs, f) for f in fields]
