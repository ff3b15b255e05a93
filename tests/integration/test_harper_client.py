"""Every HarperClient operation against a real Harper (the session node; own databases)."""

import gc
import itertools
import random
import threading
import tracemalloc
from typing import Any

import pytest

from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import (
    AlreadyExistsError,
    NotFound,
    ValidationError,
)
from harperbq.harper.models import Attribute, Condition, Sort

TS = "2024-05-01T00:00:{:02d}.{:06d}Z"


def sql_count(client: HarperClient, db: str, table: str) -> int:
    rows = client.sql(f"SELECT COUNT(*) AS c FROM {db}.{table}")  # noqa: S608 - names made by the test
    return int(rows[0]["c"])


def declared(client: HarperClient, db: str, table: str = "t") -> None:
    client.create_table(
        db,
        table,
        attributes=[
            Attribute("ts", "String", indexed=True),
            Attribute("n", "Float"),
            Attribute("ok", "Boolean"),
            Attribute("label", "String"),
        ],
    )


def test_node_operations(client: HarperClient, harper_node: HarperNode) -> None:
    assert 0 < client.ping() < 5
    status = client.cluster_status()
    assert status.node_name == harper_node.name and status.peers == () and status.size == 1
    info = client.system_information()
    assert info["system"]["hostname"] and "memory" in info
    assert set(client.system_information(["time"])) == {"time"}


def test_database_and_table_lifecycle(client: HarperClient, db: str) -> None:
    client.create_database(db)
    with pytest.raises(AlreadyExistsError, match="already exists"):
        client.create_database(db)
    declared(client, db)
    with pytest.raises(AlreadyExistsError):
        declared(client, db)
    info = client.describe_table(db, "t")
    assert info.primary_key == "id" and info.schema_defined
    assert {a.name: a.type for a in info.attributes} == {
        "id": "String",
        "ts": "String",
        "n": "Float",
        "ok": "Boolean",
        "label": "String",
    }
    assert info.indexed == {"id", "ts"}
    assert set(client.describe_database(db)) == {"t"}

    client.create_attribute(db, "t", "extra", indexed=True)
    with pytest.raises(AlreadyExistsError):
        client.create_attribute(db, "t", "extra")
    extra = client.describe_table(db, "t").attribute("extra")
    assert extra is not None and extra.indexed and extra.untyped
    client.drop_attribute(db, "t", "extra")
    assert client.describe_table(db, "t").attribute("extra") is None

    client.drop_table(db, "t")
    with pytest.raises(NotFound):
        client.describe_table(db, "t")
    client.drop_table(db, "t", missing_ok=True)
    with pytest.raises(NotFound):
        client.drop_table(db, "t")


def test_schemaless_table(client: HarperClient, db: str) -> None:
    client.create_table(db, "free")
    info = client.describe_table(db, "free")
    assert not info.schema_defined
    client.upsert(db, "free", [{"id": "a", "anything": {"x": 1}}])
    (row,) = client.search_by_id(db, "free", ["a"])
    assert row["anything"] == {"x": 1} and "__createdtime__" in row  # schemaless adds these
    assert info.indexed >= {"id", "__createdtime__", "__updatedtime__"}


def test_missing_things_are_not_found(client: HarperClient, db: str) -> None:
    client.create_database(db)
    calls = {
        "describe_table": lambda: client.describe_table(db, "nope"),
        "describe_database": lambda: client.describe_database(f"{db}_nope"),
        "upsert": lambda: client.upsert(db, "nope", [{"id": "a"}]),
        "delete": lambda: client.delete(db, "nope", ["a"]),
        "search": lambda: client.search(db, "nope", [Condition("id", "equals", "a")]),
        "search_by_id": lambda: client.search_by_id(db, "nope", ["a"]),
        "sql": lambda: client.sql(f"SELECT * FROM {db}.nope"),  # noqa: S608
        "upsert (no database)": lambda: client.upsert(f"{db}_nope", "t", [{"id": "a"}]),
    }
    for name, call in calls.items():
        with pytest.raises(NotFound) as info:
            call()
        assert "nope" in str(info.value), name
        assert info.value.harper_message and "nope" in info.value.harper_message, name


def test_upsert_merge_search_delete(client: HarperClient, db: str) -> None:
    declared(client, db)
    rows = [
        {"id": f"r{i:03d}", "ts": TS.format(i % 60, i), "n": i / 2, "ok": i % 2 == 0}
        for i in range(250)
    ]
    progress: list[int] = []
    result = client.upsert(db, "t", rows, chunk_rows=100, on_chunk=progress.append)
    assert (result.rows, result.distinct_ids, result.chunks) == (250, 250, 3)
    assert progress == [100, 200, 250]

    # merge semantics: attributes not sent are kept
    client.upsert(db, "t", [{"id": "r001", "label": "one"}])
    assert client.search_by_id(db, "t", ["r001", "missing"]) == [
        {"id": "r001", "ts": TS.format(1, 1), "n": 0.5, "ok": False, "label": "one"}
    ]
    # duplicates inside one call are merged client-side: no stray `skip` attribute appears
    client.upsert(db, "t", [{"id": "dup", "n": 1.0}, {"id": "dup", "label": "x"}])
    assert client.search_by_id(db, "t", ["dup"]) == [{"id": "dup", "n": 1, "label": "x"}]

    found = client.search(
        db,
        "t",
        [Condition("n", "less_than", 3), Condition("ok", "equals", True)],
        attributes=["id", "n"],
        sort=Sort("n", descending=True),
    )
    assert found == [{"id": "r004", "n": 2}, {"id": "r002", "n": 1}, {"id": "r000", "n": 0}]
    page = client.search(
        db,
        "t",
        [Condition("ts", "starts_with", "2024-05-01")],
        limit=5,
        offset=5,
        sort=Sort("ts"),
        attributes=["id"],
    )
    assert len(page) == 5
    assert sql_count(client, db, "t") == 251
    (twenty,) = client.sql(f"SELECT id FROM {db}.t WHERE n = 10")  # noqa: S608
    assert twenty == {"id": "r020"}

    assert client.delete(db, "t", [f"r{i:03d}" for i in range(100)], chunk_rows=40) == 100
    assert sql_count(client, db, "t") == 151
    assert client.search_by_id(db, "t", ["r000", "r150"]) == [
        {"id": "r150", "ts": TS.format(30, 150), "n": 75, "ok": True}
    ]
    # scans after deletes never return ghost rows
    everything = client.search(db, "t", [Condition("ts", "greater_than_equal", "")])
    assert len(everything) == 150 and all(r["id"] for r in everything)


def test_type_mismatch_is_a_validation_error_and_writes_nothing(
    client: HarperClient, db: str
) -> None:
    declared(client, db)
    good: list[dict[str, Any]] = [{"id": f"g{i}", "ok": True} for i in range(10)]
    bad: list[dict[str, Any]] = [
        {"id": "b0", "ok": True},
        {"id": "b1", "ok": "yes"},
        {"id": "b2", "ok": False},
    ]
    with pytest.raises(ValidationError) as info:
        client.upsert(db, "t", good + bad, chunk_rows=10)
    assert info.value.status == 400
    assert info.value.harper_message == 'Value "yes" in property ok must be a boolean'
    assert "must be a boolean" in str(info.value) and f"{db}" not in (info.value.harper_message)
    assert "10 rows in 1 chunks were confirmed" in "\n".join(info.value.__notes__)
    # the rejected chunk was applied atomically: nothing of it exists, the first chunk does
    assert client.search_by_id(db, "t", ["b0", "b2"]) == []
    assert len(client.search_by_id(db, "t", [r["id"] for r in good])) == 10


def test_unencodable_values_are_refused_before_sending(client: HarperClient, db: str) -> None:
    declared(client, db)
    with pytest.raises(ValidationError, match="record id 'nan'"):
        client.upsert(db, "t", [{"id": "fine", "n": 1.0}, {"id": "nan", "n": float("nan")}])
    assert client.search_by_id(db, "t", ["fine"]) == []


def test_a_prepared_upsert_is_sent_only_for_the_write_it_was_made_for(
    client: HarperClient, db: str
) -> None:
    """The bodies `prepare_upsert` encodes are what `upsert(prepared=)` sends (a value changed
    in place afterwards does not reach Harper), chunked and merged as usual; another list,
    target or confirmation count is encoded afresh; records that cannot be sent give None and
    the write then fails as it always did."""
    declared(client, db)
    rows: list[dict[str, Any]] = [{"id": f"p{i}", "n": float(i)} for i in range(5)]
    rows.append({"id": "p0", "label": "merged"})  # a duplicate id: merged client-side
    prepared = client.prepare_upsert(db, "t", rows, chunk_rows=2)
    assert prepared is not None and len(prepared.chunks) == 3
    rows[1]["n"] = 100.0  # after encoding: what was prepared is what is sent
    result = client.upsert(db, "t", rows, chunk_rows=2, prepared=prepared)
    assert (result.rows, result.distinct_ids, result.chunks) == (6, 6, 3)
    assert client.search_by_id(db, "t", ["p1"]) == [{"id": "p1", "n": 1}]
    assert client.search_by_id(db, "t", ["p0"]) == [{"id": "p0", "n": 0, "label": "merged"}]

    # another list (a guard's), another chunk size or count: the records as they are now
    fresh = client.prepare_upsert(db, "t", rows, chunk_rows=2)
    assert fresh is not None
    client.upsert(db, "t", list(rows), chunk_rows=2, prepared=fresh)
    assert client.search_by_id(db, "t", ["p1"]) == [{"id": "p1", "n": 100}]
    rows[2]["n"] = 200.0
    client.upsert(db, "t", rows, chunk_rows=3, prepared=fresh)
    assert client.search_by_id(db, "t", ["p2"]) == [{"id": "p2", "n": 200}]
    assert not fresh.fits(db, "t", rows, 2, replicated_confirmation=1)
    assert not fresh.fits(db, "other", rows, 2, replicated_confirmation=0)
    rows.append({"id": "p9", "n": 9.0})  # the same list, grown in place
    assert not fresh.fits(db, "t", rows, 2, replicated_confirmation=0)

    # what cannot be sent is refused at write time, with the usual errors
    assert client.prepare_upsert(db, "t", [{"n": 1.0}]) is None
    with pytest.raises(ValueError, match="has no string 'id'"):
        client.upsert(db, "t", [{"n": 1.0}], prepared=None)
    bad = [{"id": "nan", "n": float("nan")}]
    assert client.prepare_upsert(db, "t", bad) is None
    with pytest.raises(ValidationError, match="record id 'nan'"):
        client.upsert(db, "t", bad)
    assert client.search_by_id(db, "t", ["nan"]) == []


def test_count_range_is_exact_at_boundaries(client: HarperClient, db: str) -> None:
    declared(client, db)
    rng = random.Random(7)
    # few distinct timestamps, many rows each: ties at every window edge
    stamps = sorted({TS.format(s, u) for s in range(0, 20, 2) for u in (0, 1, 999999)})
    values = [rng.choice(stamps) for _ in range(3000)]
    client.upsert(db, "t", [{"id": f"c{i}", "ts": v} for i, v in enumerate(values)])
    client.upsert(db, "t", [{"id": "no-ts"}, {"id": "other-ts", "label": "x"}])
    candidates = [*stamps, TS.format(0, 0)[:-1], "2024-05-01T00:00:05", "0", "9"]
    for _ in range(40):
        edges = sorted(set(rng.sample(candidates, rng.randint(2, 6))))
        if len(edges) < 2:
            continue
        expected = [sum(1 for v in values if a <= v < b) for a, b in itertools.pairwise(edges)]
        assert client.count_windows(db, "t", "ts", edges) == expected, edges
    lo, hi = stamps[3], stamps[9]
    assert client.count_range(db, "t", "ts", lo, hi) == sum(1 for v in values if lo <= v < hi)
    # after deletes the count follows exactly
    client.delete(db, "t", [f"c{i}" for i in range(0, 3000, 3)])
    kept = [v for i, v in enumerate(values) if i % 3]
    assert client.count_range(db, "t", "ts", "0", "9") == len(kept)
    with pytest.raises(ValueError):
        client.count_range(db, "t", "ts", hi, lo)


def test_an_answer_body_is_freed_with_the_call_not_at_the_next_collection(
    client: HarperClient, db: str
) -> None:
    """An httpx response sits in a reference cycle, so a body it cached lived on until a full
    collection: validation's scans once held nine 3 MiB answers at once. With the cyclic
    collector off, what one call leaves behind must be far smaller than its answer."""
    declared(client, db)
    rows = [
        {"id": f"r{i:05d}", "ts": TS.format(i % 60, i), "label": "x" * 200} for i in range(3000)
    ]
    client.upsert(db, "t", rows)
    body = len(repr(rows))  # the answer's JSON is about this long
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        found = client.search(db, "t", [Condition("ts", "between", [TS.format(0, 0), "9"])])
        assert len(found) == 3000
        del found
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert left < body / 4, f"{left} bytes outlived a call whose answer was ~{body}"


def test_one_client_shared_by_threads(client: HarperClient, db: str) -> None:
    declared(client, db)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for batch in range(5):
                ids = [f"w{worker}-{batch}-{i}" for i in range(400)]
                rows = [{"id": key, "n": float(i)} for i, key in enumerate(ids)]
                assert client.upsert(db, "t", rows, chunk_rows=150).distinct_ids == 400
                assert client.search_by_id(db, "t", ids[:1]) == [{"id": ids[0], "n": 0}]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sql_count(client, db, "t") == 4 * 5 * 400


@pytest.mark.cluster
def test_cluster_topology(harper_cluster: list[HarperNode]) -> None:
    for node in harper_cluster:
        with HarperClient(node.url, node.username, node.password) as c:
            status = c.cluster_status()
        others = [n for n in harper_cluster if n is not node]
        assert status.node_name == node.name and status.size == 3
        assert {(p.name, p.url) for p in status.peers} == {
            (n.name, n.replication_url) for n in others
        }
        assert all(p.connected for p in status.peers), status
        assert status.connected_peers == status.peers
