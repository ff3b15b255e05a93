"""Which Harper attribute types accept the values harperbq writes, exactly (real Harper).

The mapping in harperbq.harper.schema is justified here: every value shape the BigQuery converter
produces goes into a table made by `ensure_target_table` and reads back unchanged; and the
rejected alternatives are shown failing the same values.
"""

import importlib.util
import json
import time
from typing import Any

import pytest

from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.encoding import Encoding
from harperbq.harper.errors import ValidationError
from harperbq.harper.models import Attribute, Condition
from harperbq.harper.schema import ColumnSpec, TypeOptions, ensure_target_table

# column -> (BigQuery type, mode, values as harperbq's converter writes them)
SAMPLES: dict[str, tuple[str, str, list[Any]]] = {
    "i64": (
        "INT64",
        "NULLABLE",
        [
            0,
            -1,
            2**53,
            -(2**53),
            "9007199254740993",
            "9223372036854775807",
            "-9223372036854775808",
            None,
            # where CBOR/MessagePack switch to 64-bit integers (encoding.py sends these as doubles)
            2**32 - 1,
            2**32,
            -(2**31),
            -(2**31) - 1,
            2**40 + 1,
        ],
    ),
    "f64": ("FLOAT64", "NULLABLE", [1.5, -0.25, 1e308, 5e-324, 3.0, None, -0.0, 0.1]),
    "num": (
        "NUMERIC",
        "NULLABLE",
        ["123.456", "-0.000000001", "99999999999999999999999999999.999999999", "0"],
    ),
    "bignum": (
        "BIGNUMERIC",
        "NULLABLE",
        ["578960446186580977117854925043439539266.34992332820282019728792003956564819967", "-1"],
    ),
    "flag": ("BOOL", "NULLABLE", [True, False, None]),
    "text": ("STRING", "NULLABLE", ["", "ünïcødé ✓ 🚢", "quote ' \" \\ back", "x" * 20_000]),
    "blob": ("BYTES", "NULLABLE", ["AAEC/w==", ""]),
    "day": ("DATE", "NULLABLE", ["2024-02-29", "0001-01-01", "9999-12-31"]),
    "local": ("DATETIME", "NULLABLE", ["2024-01-01T12:34:56.123456", "2024-01-01T00:00:00"]),
    "clock": ("TIME", "NULLABLE", ["23:59:59.999999", "00:00:00"]),
    "ts": ("TIMESTAMP", "NULLABLE", ["2024-01-01T00:00:00.000001Z", "1970-01-01T00:00:00.000000Z"]),
    "span": ("INTERVAL", "NULLABLE", ["0-0 1 0:0:0", "1-2 3 4:5:6.789"]),
    "geo": ("GEOGRAPHY", "NULLABLE", ["POINT(1.5 -2)", "LINESTRING(0 0, 1 1)"]),
    "doc": (
        "JSON",
        "NULLABLE",
        [
            {"a": [1, {"b": None}]},
            [1, "2"],
            "s",
            5,
            True,
            None,
            9.5,
            {
                "n": 2**40,
                "neg": -(2**35),
                "f": -0.5,
                "deep": [[{"t": "2024-01-01T00:00:00.000001Z"}]],
            },
        ],
    ),
    "rec": (
        "STRUCT",
        "NULLABLE",
        [{"x": 1, "y": "z", "nested": {"k": [1, 2]}, "big": "9223372036854775807"}],
    ),
    "tags": ("STRING", "REPEATED", [["a", "b"], []]),
    "ints": ("INT64", "REPEATED", [[1, "9223372036854775807"]]),
    "period": ("RANGE<DATE>", "NULLABLE", [{"start": "2024-01-01", "end": None}]),
}


def test_every_converted_value_is_accepted_and_reads_back_unchanged(
    client: HarperClient, db: str
) -> None:
    columns = [ColumnSpec(name, bq, mode) for name, (bq, mode, _) in SAMPLES.items()]
    report = ensure_target_table(
        client, db, "types", columns, cursor_column="ts", indexes=["i64", "day"]
    )
    assert report.created
    rows: list[dict[str, Any]] = []
    for name, (_, _, values) in SAMPLES.items():
        rows += [{"id": f"{name}-{i}", name: v} for i, v in enumerate(values)]
    assert client.upsert(db, "types", rows).distinct_ids == len(rows)
    back = {r["id"]: r for r in client.search_by_id(db, "types", [r["id"] for r in rows])}
    for row in rows:
        (name,) = [k for k in row if k != "id"]
        written, got = row[name], back[row["id"]].get(name)
        assert got == written, (name, written, got)
        assert type(got) is type(written) or isinstance(written, float), (name, written, got)
    assert client.count_range(db, "types", "ts", "1970", "2025") == 2
    # the indexed untyped INT64 is searchable by number (values within +-2^53)
    by_number = [Condition("i64", "equals", 2**53)]
    assert client.search(db, "types", by_number, attributes=["id"]) == [{"id": "i64-2"}]
    zero = [Condition("i64", "equals", 0)]
    assert client.search(db, "types", zero, attributes=["id", "i64"]) == [{"id": "i64-0", "i64": 0}]


def _sample_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, (_, _, values) in SAMPLES.items():
        rows += [{"id": f"{name}-{i}", name: v} for i, v in enumerate(values)]
    return rows


def _library_missing(encoding: Encoding) -> bool:
    module = {Encoding.ORJSON: "orjson", Encoding.CBOR: "cbor2", Encoding.MSGPACK: "msgpack"}
    return encoding in module and importlib.util.find_spec(module[encoding]) is None


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
def test_every_encoding_stores_what_the_json_body_stores(
    harper_node: HarperNode, client: HarperClient, db: str, encoding: Encoding
) -> None:
    """The same rows written as stdlib JSON and as `encoding` read back identical: same values,
    same JSON types (an integer is not a float, -0.0 stays what JSON made it), found by the same
    index searches. JSON against itself shows the comparison is not vacuous."""
    if _library_missing(encoding):
        pytest.skip(f"the library of harper.encoding {encoding.value!r} is not installed")
    columns = [ColumnSpec(name, bq, mode) for name, (bq, mode, _) in SAMPLES.items()]
    for table in ("by_json", "by_encoding"):
        ensure_target_table(client, db, table, columns, cursor_column="ts", indexes=["i64", "day"])
    rows = _sample_rows()
    with HarperClient(harper_node.url, harper_node.username, harper_node.password) as reference:
        assert reference.encoding is Encoding.JSON
        assert reference.upsert(db, "by_json", rows).distinct_ids == len(rows)
    with HarperClient(
        harper_node.url, harper_node.username, harper_node.password, encoding=encoding
    ) as writer:
        assert writer.encoding is encoding
        assert writer.upsert(db, "by_encoding", rows).distinct_ids == len(rows)
    ids = [r["id"] for r in rows]

    def stored(table: str) -> list[str]:
        by_id = {r["id"]: r for r in client.search_by_id(db, table, ids)}
        return [json.dumps(by_id[i], sort_keys=True) for i in ids]

    assert stored("by_encoding") == stored("by_json")
    by_sql = {
        table: sorted(json.dumps(r, sort_keys=True) for r in client.sql(select))
        for table in ("by_json", "by_encoding")
        for select in [f"SELECT * FROM {db}.{table}"]  # noqa: S608 - our own identifiers
    }
    assert by_sql["by_encoding"] == by_sql["by_json"]
    # exact values, not only equal ones: the 64-bit boundary values and a nested big integer
    back = {r["id"]: r for r in client.search_by_id(db, "by_encoding", ids)}
    for row in rows:
        (name,) = [k for k in row if k != "id"]
        assert back[row["id"]].get(name) == row[name], (name, row[name])
    for number in (2**53, 2**32, -(2**31) - 1, 0):
        found = {
            table: client.search(db, table, [Condition("i64", "equals", number)], attributes=["id"])
            for table in ("by_json", "by_encoding")
        }
        assert found["by_encoding"] == found["by_json"] != [], number


def test_numeric_as_float_and_geojson_options(client: HarperClient, db: str) -> None:
    columns = [ColumnSpec("n", "NUMERIC"), ColumnSpec("g", "GEOGRAPHY")]
    options = TypeOptions(numeric_as_float=True, geography_as_geojson=True)
    ensure_target_table(client, db, "opt", columns, cursor_column=None, options=options)
    row = {"id": "a", "n": 1.25, "g": {"type": "Point", "coordinates": [1.0, 2.5]}}
    client.upsert(db, "opt", [row])
    assert client.search_by_id(db, "opt", ["a"]) == [row]


def test_rejected_alternatives(client: HarperClient, db: str) -> None:
    """Why not Long/BigInt for INT64, Date for TIMESTAMP/DATE, Float for NUMERIC (schema.py)."""
    client.create_table(
        db,
        "alt",
        attributes=[
            Attribute("long", "Long"),
            Attribute("big", "BigInt"),
            Attribute("untyped", "Any", indexed=True),
            Attribute("date", "Date"),
            Attribute("float", "Float"),
        ],
    )
    with pytest.raises(ValidationError, match="must be an integer"):
        client.upsert(db, "alt", [{"id": "a", "long": "9223372036854775807"}])
    with pytest.raises(ValidationError, match="must be a number"):
        client.upsert(db, "alt", [{"id": "a", "float": "123.456"}])
    client.upsert(
        db,
        "alt",
        [
            {"id": "b", "untyped": "9223372036854775807", "date": "2024-01-01T00:00:00.123456Z"},
            {"id": "d", "date": "2024-02-29", "big": 0},
            {"id": "e", "big": "9223372036854775807"},
        ],
    )
    b, d, e = client.search_by_id(db, "alt", ["b", "d", "e"])
    assert b["date"] == "2024-01-01T00:00:00.123Z"  # microseconds lost
    assert d["date"] == "2024-02-29T00:00:00.000Z"  # a DATE became an instant
    assert d.get("big") is None  # BigInt loses 0
    assert e["big"] == 9223372036854775807 and not isinstance(e["big"], str)
    # the cost of untyped INT64: the string is kept, but Harper casts the search value
    assert b["untyped"] == "9223372036854775807"
    by_string = [Condition("untyped", "equals", "9223372036854775807")]
    assert client.search(db, "alt", by_string, attributes=["id"]) == []


def test_declared_few_indexes_write_faster_than_schemaless(client: HarperClient, db: str) -> None:
    """The point of declaring: measured in one run, as a ratio (bench/ has the full figures)."""

    def rows(prefix: str) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{prefix}{i}",
                "ts": f"2024-01-01T00:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i:06d}Z",
                "mmsi": 200_000_000 + i % 500,
                "name": f"V{i % 500}",
                "lat": (i % 180) - 90.0 + 0.5,
                "lon": (i % 360) - 180.0 + 0.25,
                "speed": i % 25 + 0.5,
                "course": float(i % 360),
                "heading": i % 360,
                "status": i % 16,
                "destination": "ROTTERDAM",
                "draft": 7.5,
            }
            for i in range(6000)
        ]

    columns = [
        ColumnSpec("ts", "TIMESTAMP"),
        ColumnSpec("mmsi", "INT64"),
        ColumnSpec("name", "STRING"),
        ColumnSpec("lat", "FLOAT64"),
        ColumnSpec("lon", "FLOAT64"),
        ColumnSpec("speed", "FLOAT64"),
        ColumnSpec("course", "FLOAT64"),
        ColumnSpec("heading", "INT64"),
        ColumnSpec("status", "INT64"),
        ColumnSpec("destination", "STRING"),
        ColumnSpec("draft", "FLOAT64"),
    ]
    ensure_target_table(client, db, "declared", columns, cursor_column="ts")
    client.create_table(db, "schemaless")
    client.upsert(db, "declared", rows("warm"), chunk_rows=2000)
    client.upsert(db, "schemaless", rows("warm"), chunk_rows=2000)
    timings = {}
    for table in ("declared", "schemaless"):
        started = time.monotonic()
        client.upsert(db, table, rows("x"), chunk_rows=2000)
        timings[table] = time.monotonic() - started
    assert timings["schemaless"] / timings["declared"] > 1.5, timings
