"""The BigQuery -> Harper type mapping and index choice (pure; the real-Harper proof is in
tests/integration/test_harper_types.py)."""

import pytest

from harperbq.harper.models import Attribute
from harperbq.harper.schema import ColumnSpec, TypeOptions, harper_type, target_attributes


@pytest.mark.parametrize(
    ("bq_type", "mode", "expected"),
    [
        ("STRING", "NULLABLE", "String"),
        ("BYTES", "NULLABLE", "String"),
        ("INT64", "NULLABLE", "Any"),
        ("INTEGER", "REQUIRED", "Any"),
        ("INT64", "REPEATED", "Any"),
        ("FLOAT64", "NULLABLE", "Float"),
        ("FLOAT", "NULLABLE", "Float"),
        ("NUMERIC", "NULLABLE", "String"),
        ("NUMERIC(10, 2)", "NULLABLE", "String"),
        ("BIGNUMERIC", "NULLABLE", "String"),
        ("BOOL", "NULLABLE", "Boolean"),
        ("BOOLEAN", "NULLABLE", "Boolean"),
        ("TIMESTAMP", "NULLABLE", "String"),
        ("DATE", "NULLABLE", "String"),
        ("DATETIME", "NULLABLE", "String"),
        ("TIME", "NULLABLE", "String"),
        ("INTERVAL", "NULLABLE", "String"),
        ("GEOGRAPHY", "NULLABLE", "String"),
        ("JSON", "NULLABLE", "Any"),
        ("STRUCT", "NULLABLE", "Any"),
        ("RECORD", "NULLABLE", "Any"),
        ("RANGE<DATE>", "NULLABLE", "Any"),
        ("STRING", "REPEATED", "Any"),
        ("FLOAT64", "REPEATED", "Any"),
        ("SOMETHING_NEW", "NULLABLE", "Any"),
        ("string", "nullable", "String"),
    ],
)
def test_harper_type(bq_type: str, mode: str, expected: str) -> None:
    assert harper_type(ColumnSpec("c", bq_type, mode)) == expected


def test_type_options() -> None:
    options = TypeOptions(numeric_as_float=True, geography_as_geojson=True)
    assert harper_type(ColumnSpec("n", "BIGNUMERIC"), options) == "Float"
    assert harper_type(ColumnSpec("g", "GEOGRAPHY"), options) == "Any"


COLUMNS = [
    ColumnSpec("timestamp", "TIMESTAMP"),
    ColumnSpec("mmsi", "INT64"),
    ColumnSpec("speed", "FLOAT64"),
    ColumnSpec("vessel_id", "STRING"),
]


def test_indexes_only_on_key_cursor_and_configured() -> None:
    attributes = target_attributes(COLUMNS, cursor_column="timestamp", indexes=["vessel_id"])
    assert attributes[0] == Attribute("id", "String", is_primary_key=True)
    indexed = {a.name for a in attributes if a.indexed or a.is_primary_key}
    assert indexed == {"id", "timestamp", "vessel_id"}  # not "*_id" columns by name, not mmsi
    assert {a.name: a.type for a in attributes} == {
        "id": "String",
        "timestamp": "String",
        "mmsi": "Any",
        "speed": "Float",
        "vessel_id": "String",
    }


def test_source_column_named_id_is_the_primary_key() -> None:
    attributes = target_attributes([ColumnSpec("id", "INT64"), *COLUMNS], cursor_column=None)
    assert [a.name for a in attributes].count("id") == 1


def test_bad_index_or_cursor_names_are_reported() -> None:
    with pytest.raises(ValueError, match="nope"):
        target_attributes(COLUMNS, cursor_column="nope")
    with pytest.raises(ValueError, match="missing"):
        target_attributes(COLUMNS, cursor_column="timestamp", indexes=["missing"])
    with pytest.raises(ValueError, match="duplicate"):
        target_attributes([*COLUMNS, ColumnSpec("mmsi", "STRING")], cursor_column=None)
