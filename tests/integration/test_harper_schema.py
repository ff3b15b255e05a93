"""ensure_target_table against a real Harper: creation, new columns, type changes, races."""

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import SchemaConflictError
from harperbq.harper.schema import ColumnSpec, TableReport, ensure_target_table

T = TypeVar("T")

COLUMNS = [
    ColumnSpec("timestamp", "TIMESTAMP"),
    ColumnSpec("mmsi", "INT64"),
    ColumnSpec("speed", "FLOAT64"),
    ColumnSpec("name", "STRING"),
]


def race(n: int, make: Callable[[int], T]) -> list[T]:
    """Run make(i) in n threads released together; re-raise the first failure."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = make(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_create_then_idempotent(client: HarperClient, db: str) -> None:
    first = ensure_target_table(
        client, db, "pos", COLUMNS, cursor_column="timestamp", indexes=["name"]
    )
    assert first.created and first.schema_defined and first.added == ()
    info = client.describe_table(db, "pos")
    assert info.indexed == {"id", "timestamp", "name"}
    assert {a.name: a.type for a in info.attributes} == {
        "id": "String",
        "timestamp": "String",
        "mmsi": "Any",
        "speed": "Float",
        "name": "String",
    }
    again = ensure_target_table(
        client, db, "pos", COLUMNS, cursor_column="timestamp", indexes=["name"]
    )
    assert again == TableReport(db, "pos", created=False, schema_defined=True)


def test_new_source_columns_fail_by_default(client: HarperClient, db: str) -> None:
    """docs/configuration.md: with `onSchemaChange: fail` a new source column stops the table."""
    ensure_target_table(client, db, "pos", COLUMNS, cursor_column="timestamp")
    wider = [*COLUMNS, ColumnSpec("draft", "FLOAT64")]
    with pytest.raises(SchemaConflictError) as info:
        ensure_target_table(client, db, "pos", wider, cursor_column="timestamp")
    for part in (f"{db}.pos", "new column 'draft'", "FLOAT64", "onSchemaChange: evolve"):
        assert part in str(info.value)
    assert client.describe_table(db, "pos").attribute("draft") is None


def test_new_source_columns_become_attributes(client: HarperClient, db: str) -> None:
    ensure_target_table(client, db, "pos", COLUMNS, cursor_column="timestamp")
    wider = [*COLUMNS, ColumnSpec("draft", "FLOAT64"), ColumnSpec("port_id", "STRING")]
    report = ensure_target_table(
        client,
        db,
        "pos",
        wider,
        cursor_column="timestamp",
        indexes=["port_id"],
        on_schema_change="evolve",
    )
    assert report.added == ("draft", "port_id") and not report.created
    info = client.describe_table(db, "pos")
    draft, port = info.attribute("draft"), info.attribute("port_id")
    assert draft is not None and not draft.indexed and draft.untyped  # Harper: added = untyped
    assert port is not None and port.indexed
    client.upsert(db, "pos", [{"id": "a", "draft": 7.5, "port_id": "SGSIN"}])
    assert client.search_by_id(db, "pos", ["a"]) == [{"id": "a", "draft": 7.5, "port_id": "SGSIN"}]


def test_index_missing_on_existing_table_is_reported(client: HarperClient, db: str) -> None:
    ensure_target_table(client, db, "pos", COLUMNS, cursor_column="timestamp")
    report = ensure_target_table(
        client, db, "pos", COLUMNS, cursor_column="timestamp", indexes=["speed"]
    )
    assert report.missing_indexes == ("speed",) and "speed" in report.warnings[0]


def test_type_change_fails_by_default_with_a_clear_message(client: HarperClient, db: str) -> None:
    ensure_target_table(client, db, "pos", COLUMNS, cursor_column="timestamp")
    client.upsert(db, "pos", [{"id": "old", "speed": 12.5}])
    changed = [c if c.name != "speed" else ColumnSpec("speed", "NUMERIC") for c in COLUMNS]
    with pytest.raises(SchemaConflictError) as info:
        ensure_target_table(client, db, "pos", changed, cursor_column="timestamp")
    message = str(info.value)
    for part in (f"{db}.pos", "'speed'", "Float", "NUMERIC", "onSchemaChange: evolve"):
        assert part in message
    # nothing was changed by the failed attempt
    speed = client.describe_table(db, "pos").attribute("speed")
    assert speed is not None and speed.type == "Float"


def test_type_change_evolves_keeping_values(client: HarperClient, db: str) -> None:
    ensure_target_table(client, db, "pos", COLUMNS, cursor_column="timestamp")
    client.upsert(
        db, "pos", [{"id": "old", "speed": 12.5, "timestamp": "2024-01-01T00:00:00.000000Z"}]
    )
    changed = [
        ColumnSpec("timestamp", "TIMESTAMP"),
        ColumnSpec("mmsi", "STRING"),  # Any accepts strings: not a conflict
        ColumnSpec("speed", "NUMERIC"),
        ColumnSpec("name", "STRING", "REPEATED"),
    ]
    report = ensure_target_table(
        client, db, "pos", changed, cursor_column="timestamp", on_schema_change="evolve"
    )
    assert report.evolved == ("speed", "name")
    info = client.describe_table(db, "pos")
    assert all(info.attribute(n).untyped for n in ("speed", "name"))  # type: ignore[union-attr]
    client.upsert(db, "pos", [{"id": "new", "speed": "12.75", "name": ["a", "b"], "mmsi": "x"}])
    rows = {r["id"]: r for r in client.search_by_id(db, "pos", ["old", "new"])}
    assert rows["old"]["speed"] == 12.5 and rows["new"]["speed"] == "12.75"
    assert client.count_range(db, "pos", "timestamp", "2024", "2025") == 1  # index intact


def test_existing_schemaless_table_is_accepted_with_a_warning(
    client: HarperClient, db: str
) -> None:
    client.create_table(db, "free")
    report = ensure_target_table(client, db, "free", COLUMNS, cursor_column="timestamp")
    assert not report.schema_defined and "schemaless" in report.warnings[0]


def test_wrong_primary_key_is_a_conflict(client: HarperClient, db: str) -> None:
    client.create_table(db, "keyed", primary_key="mmsi")
    with pytest.raises(SchemaConflictError, match="primary key 'mmsi'"):
        ensure_target_table(client, db, "keyed", COLUMNS, cursor_column="timestamp")


def test_workers_racing_to_create_the_same_table(
    client: HarperClient, db: str, harper_node: HarperNode
) -> None:
    clients = [
        HarperClient(harper_node.url, harper_node.username, harper_node.password) for _ in range(6)
    ]
    try:
        reports = race(
            6,
            lambda i: ensure_target_table(
                clients[i], db, "raced", COLUMNS, cursor_column="timestamp", indexes=["name"]
            ),
        )
        assert sum(r.created for r in reports) >= 1
        info = client.describe_table(db, "raced")
        assert info.indexed == {"id", "timestamp", "name"}
        assert [a.name for a in info.attributes].count("speed") == 1
        # and racing to add the same new columns (new columns need evolve)
        wider = [*COLUMNS, ColumnSpec("draft", "FLOAT64"), ColumnSpec("eta", "TIMESTAMP")]
        race(
            6,
            lambda i: ensure_target_table(
                clients[i], db, "raced", wider, cursor_column="timestamp", on_schema_change="evolve"
            ),
        )
        names = [a.name for a in client.describe_table(db, "raced").attributes]
        assert names.count("draft") == 1 and names.count("eta") == 1
        # and racing to evolve the same column
        evolved = [c if c.name != "speed" else ColumnSpec("speed", "NUMERIC") for c in wider]
        race(
            6,
            lambda i: ensure_target_table(
                clients[i],
                db,
                "raced",
                evolved,
                cursor_column="timestamp",
                on_schema_change="evolve",
            ),
        )
        speed = client.describe_table(db, "raced").attribute("speed")
        assert speed is not None and speed.untyped
        client.upsert(db, "raced", [{"id": "x", "speed": "1.5", "draft": 2.0}])
    finally:
        for c in clients:
            c.close()
