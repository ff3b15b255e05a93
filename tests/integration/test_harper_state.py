"""StateStore against a real Harper: checkpoints, audit, heartbeats; tables made on first use."""

import threading
import time
from dataclasses import replace

import pytest

from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.models import Condition
from harperbq.sync.checks.maintenance import AuditPruner
from harperbq.sync.state import (
    AUDIT_TABLE,
    CHECKPOINT_TABLE,
    TABLES,
    WORKER_TABLE,
    AuditEntry,
    AuditKind,
    Checkpoint,
    RecentWindow,
    StateStore,
)
from harperbq.times import MICROS, iso, parse_iso, parse_iso_datetime, utc_now_iso


@pytest.fixture
def store(client: HarperClient, db: str) -> StateStore:
    return StateStore(client, db)


def test_tables_created_on_first_use_even_when_racing(
    client: HarperClient, db: str, harper_node: HarperNode
) -> None:
    clients = [
        HarperClient(harper_node.url, harper_node.username, harper_node.password) for _ in range(4)
    ]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def first_use(c: HarperClient) -> None:
        barrier.wait()
        try:
            StateStore(c, db).get_checkpoints("t")  # no explicit ensure(): first use creates
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    assert errors == []
    tables = client.describe_database(db)
    assert set(tables) == {CHECKPOINT_TABLE, AUDIT_TABLE, WORKER_TABLE}
    for name, attributes in TABLES.items():
        info = tables[name]
        assert info.schema_defined and info.primary_key == "id"
        assert {a.name: a.type for a in info.attributes} == {a.name: a.type for a in attributes}
    StateStore(client, db).ensure()  # idempotent


def test_checkpoints_round_trip_per_table(store: StateStore) -> None:
    assert store.get_checkpoints("positions") == {}
    recent: list[RecentWindow] = [
        {
            "lo": parse_iso("2024-01-01T00:00:00.000000Z"),
            "hi": parse_iso("2024-01-01T00:01:00.000000Z"),
            "count": 1500,
        }
    ]
    first = Checkpoint(
        "positions",
        0,
        hi=parse_iso("2024-01-01T00:01:00.000000Z"),
        rows_total=1500,
        window_s=60.0,
        phase="initial",
        batch_size=10000,
        worker_id="n1-0",
        recent=recent,
    )
    before = utc_now_iso()
    store.put_checkpoints([first])
    after = utc_now_iso()
    store.put_checkpoints([Checkpoint("positions", 7, worker_id="n1-1", last_error="boom")])
    store.put_checkpoints([Checkpoint("positions_archive", 0, rows_total=9)])
    got = store.get_checkpoints("positions")
    assert set(got) == {0, 7}
    assert before <= got[0].updated_at <= after  # stamped by the store when written
    assert got[0] == replace(first, updated_at=got[0].updated_at) and got[0].recent == recent
    assert got[7].hi is None and got[7].last_error == "boom"
    # a later put replaces the whole record (last_error cleared, not merged back)
    store.put_checkpoints(
        [Checkpoint("positions", 7, hi=parse_iso("2024-01-01T00:02:00.000000Z"), worker_id="n2-0")]
    )
    seven = store.get_checkpoints("positions")[7]
    assert seven.last_error is None and seven.worker_id == "n2-0" and seven.hi is not None

    # several partitions in one confirmed write, one timestamp
    store.put_checkpoints([Checkpoint("positions", p, rows_total=p) for p in (1, 2, 3)])
    store.put_checkpoints([])
    batch = store.get_checkpoints("positions")
    assert set(batch) == {0, 1, 2, 3, 7} and batch[3].rows_total == 3
    assert len({batch[p].updated_at for p in (1, 2, 3)}) == 1

    assert store.delete_checkpoints("positions") == 6  # partition 7 has two writers' records
    assert store.get_checkpoints("positions") == {}
    assert set(store.get_checkpoints("positions_archive")) == {0}
    assert store.delete_checkpoints("positions") == 0


def test_per_writer_records_are_merged_and_reset_deletes_all(
    store: StateStore, client: HarperClient, db: str
) -> None:
    """Each writer writes its own record; readers get the merge; a legacy shared record
    (written before per-writer records) is read as one more writer; a reset deletes them all."""
    hi = [parse_iso(f"2024-01-01T00:0{m}:00.000000Z") for m in range(6)]
    w = [RecentWindow(lo=hi[m], hi=hi[m + 1], count=m + 1) for m in range(5)]
    legacy = {**Checkpoint("pos", 0, hi=hi[2], recent=w[:2]).to_record(), "worker_id": "old-0"}
    del legacy["generation"]  # as written before generations existed
    store.ensure()
    client.upsert(db, CHECKPOINT_TABLE, [legacy])
    assert store.get_checkpoints("pos")[0].hi == hi[2]  # resumes from the legacy record
    store.put_checkpoints([Checkpoint("pos", 0, hi=hi[4], worker_id="b-0", recent=w[2:4])])
    store.put_checkpoints([Checkpoint("pos", 0, hi=hi[3], worker_id="a-0", recent=w[2:3])])
    store.put_checkpoints([Checkpoint("pos", 1, hi=hi[1], worker_id="a-0")])
    rows = client.search(db, CHECKPOINT_TABLE, [Condition("table_id", "equals", "pos")])
    assert sorted(r["id"] for r in rows) == ["pos/0", "pos/0/a-0", "pos/0/b-0", "pos/1/a-0"]
    assert len(store.checkpoint_records("pos")) == 4
    merged = store.get_checkpoints("pos")
    assert merged[0].worker_id == "b-0" and merged[0].hi == hi[4]  # the stale a-0 does not win
    assert merged[0].recent == w[:4]  # completed from the legacy record, without overlap
    assert merged[1].hi == hi[1]
    # a deliberate restart in the next generation wins without `hi`
    store.put_checkpoints([Checkpoint("pos", 0, worker_id="a-0", generation=1)])
    restarted = store.get_checkpoints("pos")[0]
    assert restarted.generation == 1 and restarted.hi is None and restarted.recent == []
    assert store.delete_checkpoints("pos") == 4
    assert store.checkpoint_records("pos") == [] and store.get_checkpoints("pos") == {}


def test_audit_entries(store: StateStore) -> None:
    stored = [
        store.audit(
            AuditEntry(
                AuditKind.SKIPPED_ROW,
                "positions",
                "bad row",
                {"reason": "no timestamp", "sample": {"mmsi": 1}},
                "n1-0",
            )
        )
        for _ in range(25)
    ]
    store.audit(AuditEntry(AuditKind.VALIDATION, "positions", "ok", {"windows": 3}))
    store.audit(AuditEntry(AuditKind.ERROR, "ports", "boom", {"sample": "x" * 100_000}))
    store.audit(AuditEntry("custom", None, "global"))
    assert len({e.id for e in stored}) == 25  # unique ids even within one microsecond
    newest = store.recent_audit(limit=3)
    assert [e.message for e in newest] == ["global", "boom", "ok"]
    assert newest[1].details["truncated"] is True
    assert all(parse_iso_datetime(e.at) for e in newest)
    positions = store.recent_audit("positions", limit=100)
    assert len(positions) == 26 and positions[0].kind == "validation"
    assert positions[-1].details == {"reason": "no timestamp", "sample": {"mmsi": 1}}
    assert positions[-1].worker_id == "n1-0"
    skipped = store.recent_audit("positions", kind=AuditKind.SKIPPED_ROW, limit=5)
    assert len(skipped) == 5 and {e.kind for e in skipped} == {"skipped_row"}
    assert [e.at for e in positions] == sorted((e.at for e in positions), reverse=True)

    cutoff = stored[-1].at
    pruned = store.prune_audit(cutoff)
    assert pruned == sum(1 for e in stored if e.at < cutoff)
    assert all(e.at >= cutoff for e in store.recent_audit(limit=100))


def test_audit_retention_prunes_old_entries_in_bounded_hourly_runs(
    store: StateStore, client: HarperClient, db: str
) -> None:
    """What maintenance runs (`AuditPruner` over `StateStore.prune_audit`): entries older than
    the retention go, recent ones stay; at most `batch * max_batches` per run, once an hour."""
    hour, day = 3600.0, 86400.0
    t0 = time.time()
    now = [t0]

    def seeded(age_s: float, n: int, tag: str) -> list[str]:
        at_us = int((t0 - age_s) * MICROS)
        entries = [
            AuditEntry("skipped_row", "t", tag, at=iso(at_us + i), id=f"{tag}-{i}")
            for i in range(n)
        ]
        client.upsert(db, AUDIT_TABLE, [e.to_record() for e in entries])
        return [e.id for e in entries]

    def stored_ids() -> set[str]:
        return {e.id for e in store.recent_audit(limit=1000)}

    store.ensure()
    old = seeded(2 * day, 7, "old") + seeded(400 * day, 1, "ancient")
    recent = seeded(hour, 3, "recent")
    fresh = store.audit(AuditEntry("error", None, "just now")).id  # stamped at or after t0
    assert len(stored_ids()) == 12
    pruner = AuditPruner(store.prune_audit, day, clock=lambda: now[0], batch=3, max_batches=2)
    assert pruner.due()
    stop = threading.Event()
    assert pruner.run(stop) == 6  # two batches of 3: bounded, the rest waits for the next run
    left = stored_ids()
    assert len(left & set(old)) == 2 and set(recent) | {fresh} <= left

    now[0] += hour - 1
    assert not pruner.due()  # hourly, not every poll
    now[0] += 1
    assert pruner.due() and pruner.run(stop) == 2  # the rest (one short batch ends the run)
    assert stored_ids() == set(recent) | {fresh}  # nothing newer than the retention went
    now[0] = t0 + day  # the "recent" entries are now a day and an hour old
    assert pruner.run(stop) == 3 and stored_ids() == {fresh}
    assert pruner.pruned == 11


def test_heartbeats(store: StateStore) -> None:
    first = store.heartbeat("node-a-0", "node-a", {"pid": 1, "tables": ["positions"]})
    time.sleep(0.002)  # two distinct microsecond timestamps
    second = store.heartbeat("node-a-0", "node-a", {"pid": 1, "tables": ["positions"]})
    store.heartbeat("node-b-0", "node-b", {})
    workers = store.workers()
    assert [w.worker_id for w in workers] == ["node-a-0", "node-b-0"]
    a = workers[0]
    assert a == second and a.beat == first.beat + 1 and a.last_seen > first.last_seen
    assert a.started_at == first.started_at and a.info == {"pid": 1, "tables": ["positions"]}
    assert 0 <= a.age_s() < 30
    store.remove_worker("node-a-0")
    assert [w.worker_id for w in store.workers()] == ["node-b-0"]
