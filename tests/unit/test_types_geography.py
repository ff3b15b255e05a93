"""GEOGRAPHY: every WKB/WKT/GeoJSON form an API returns becomes BigQuery's WKT spelling."""

import struct

import pytest

from harperbq.bigquery import geography
from harperbq.bigquery.geography import GeographyError


def point(x: float, y: float, order: str = "<") -> bytes:
    return struct.pack(f"{order}BIdd", 1 if order == "<" else 0, 1, x, y)


def ring(points: list[tuple[float, float]]) -> bytes:
    return struct.pack("<I", len(points)) + b"".join(struct.pack("<dd", *p) for p in points)


SQUARE = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]


def test_wkb_shapes() -> None:
    assert geography.to_wkt(point(1.5, -2, ">")) == "POINT(1.5 -2)"
    polygon = struct.pack("<BII", 1, 3, 1) + ring(SQUARE)
    assert geography.to_wkt(polygon) == "POLYGON((0 0, 1 0, 1 1, 0 0))"
    multipoint = struct.pack("<BII", 1, 4, 2) + point(1, 2) + point(3, 4)
    assert geography.to_wkt(multipoint) == "MULTIPOINT(1 2, 3 4)"
    multipolygon = struct.pack("<BII", 1, 6, 1) + polygon
    assert geography.to_wkt(multipolygon) == "MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)))"
    collection = struct.pack("<BII", 1, 7, 2) + point(1, 2) + polygon
    assert geography.to_wkt(collection) == (
        "GEOMETRYCOLLECTION(POINT(1 2), POLYGON((0 0, 1 0, 1 1, 0 0)))"
    )
    empty = struct.pack("<BIdd", 1, 1, float("nan"), float("nan"))
    assert geography.to_wkt(empty) == "POINT EMPTY"


def test_wkb_with_z_and_srid_keeps_x_and_y() -> None:
    iso_z = struct.pack("<BIddd", 1, 1001, 1, 2, 3)
    assert geography.to_wkt(iso_z) == "POINT(1 2)"
    ewkb_srid = struct.pack("<BIIdd", 1, 0x20000001, 4326, 5, 6)
    assert geography.to_wkt(ewkb_srid) == "POINT(5 6)"


def test_wkt_spellings_normalize() -> None:
    assert geography.to_wkt("point (1 2)") == "POINT(1 2)"
    assert geography.to_wkt("MULTIPOINT((1 2), (3 4))") == "MULTIPOINT(1 2, 3 4)"
    assert geography.to_wkt("LINESTRING Z (1 2 3, 4 5 6)") == "LINESTRING(1 2, 4 5)"
    assert geography.to_wkt("GEOMETRYCOLLECTION EMPTY") == "GEOMETRYCOLLECTION EMPTY"
    assert geography.to_wkt("POINT(1e-7 2.25)") == "POINT(1e-07 2.25)"


def test_geojson_output() -> None:
    assert geography.to_geojson("POLYGON((0 0, 1 0, 1 1, 0 0))") == {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]],
    }
    assert geography.to_geojson("GEOMETRYCOLLECTION(POINT(1 2))") == {
        "type": "GeometryCollection",
        "geometries": [{"type": "Point", "coordinates": [1.0, 2.0]}],
    }


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x02\x01\x00\x00\x00",
        point(1, 2)[:-3],
        point(1, 2) + b"\x00",
        struct.pack("<BI", 1, 99),
        "POINT(1)",
        "POINT(1 2",
        "CIRCLE(1 2)",
        "POINT(1 2) extra",
        "POINT(a b)",
        "{not json",
        '{"coordinates": []}',
        12,
    ],
)
def test_unreadable_values_raise_geography_error(bad: object) -> None:
    with pytest.raises(GeographyError):
        geography.to_wkt(bad)
