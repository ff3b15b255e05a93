"""GEOGRAPHY values in any form an API returns (WKB bytes, WKT or GeoJSON text) -> one WKT
spelling or a GeoJSON object, so both read paths give identical values.

The Storage Read API returns WKT (BigQuery) or WKB (the emulator); queries return WKT or, with
ST_ASGEOJSON, GeoJSON. Everything is parsed into a GeoJSON-shaped dict first. Only x and y are
kept: BigQuery geographies are two-dimensional.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from typing import Any

Geometry = dict[str, Any]

_WKB_TYPES = {
    1: "Point",
    2: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}
_WKT_NAMES = {name.upper(): name for name in _WKB_TYPES.values()}


class GeographyError(ValueError):
    """A value is not a readable geography."""


def parse(value: Any) -> Geometry:
    """A GeoJSON-shaped dict from WKB bytes, WKT text, GeoJSON text or a GeoJSON dict."""
    if isinstance(value, dict):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        geometry, end = _read_wkb(bytes(value), 0)
        if end != len(value):
            raise GeographyError(f"{len(value) - end} trailing byte(s) after the WKB geometry")
        return geometry
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise GeographyError(f"not GeoJSON: {exc}") from None
            if not isinstance(parsed, dict) or "type" not in parsed:
                raise GeographyError("GeoJSON without a type")
            return parsed
        return _WktParser(text).geometry()
    raise GeographyError(f"not a geography: {type(value).__name__}")


# --- WKB -------------------------------------------------------------------------------------


def _read_wkb(data: bytes, pos: int) -> tuple[Geometry, int]:
    if pos >= len(data):
        raise GeographyError("truncated WKB")
    order = "<" if data[pos] == 1 else ">" if data[pos] == 0 else None
    if order is None:
        raise GeographyError(f"bad WKB byte order {data[pos]}")
    (code,) = _unpack(order + "I", data, pos + 1)
    pos += 5
    has_z, has_m = bool(code & 0x80000000), bool(code & 0x40000000)
    if code & 0x20000000:  # EWKB SRID
        pos += 4
    code &= 0x0FFFFFFF
    base, iso = code % 1000, code // 1000
    has_z = has_z or iso in (1, 3)
    has_m = has_m or iso in (2, 3)
    dims = 2 + has_z + has_m
    kind = _WKB_TYPES.get(base)
    if kind is None:
        raise GeographyError(f"unsupported WKB geometry type {code}")

    def point() -> list[float]:
        nonlocal pos
        coords = _unpack(f"{order}{dims}d", data, pos)
        pos += 8 * dims
        return [coords[0], coords[1]]

    def points() -> list[list[float]]:
        nonlocal pos
        (n,) = _unpack(order + "I", data, pos)
        pos += 4
        return [point() for _ in range(n)]

    def count() -> int:
        nonlocal pos
        (n,) = _unpack(order + "I", data, pos)
        pos += 4
        return int(n)

    if kind == "Point":
        xy = point()
        coordinates: Any = [] if all(math.isnan(c) for c in xy) else xy
        return {"type": kind, "coordinates": coordinates}, pos
    if kind == "LineString":
        return {"type": kind, "coordinates": points()}, pos
    if kind == "Polygon":
        return {"type": kind, "coordinates": [points() for _ in range(count())]}, pos
    parts = []
    for _ in range(count()):
        part, pos = _read_wkb(data, pos)
        parts.append(part)
    if kind == "GeometryCollection":
        return {"type": kind, "geometries": parts}, pos
    return {"type": kind, "coordinates": [p["coordinates"] for p in parts]}, pos


def _unpack(fmt: str, data: bytes, pos: int) -> tuple[Any, ...]:
    try:
        return struct.unpack_from(fmt, data, pos)
    except struct.error:
        raise GeographyError("truncated WKB") from None


# --- WKT -------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*([A-Za-z]+|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\(|\)|,)")


class _WktParser:
    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                if text[pos:].strip() == "":
                    break
                raise GeographyError(f"unexpected text in WKT at {pos}: {text[pos : pos + 20]!r}")
            self.tokens.append(match.group(1))
            pos = match.end()
        self.i = 0

    def geometry(self) -> Geometry:
        result = self._geometry()
        if self.i != len(self.tokens):
            raise GeographyError("trailing tokens after the WKT geometry")
        return result

    def _next(self) -> str:
        if self.i >= len(self.tokens):
            raise GeographyError("truncated WKT")
        token = self.tokens[self.i]
        self.i += 1
        return token

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _expect(self, token: str) -> None:
        got = self._next()
        if got != token:
            raise GeographyError(f"expected {token!r} in WKT, got {got!r}")

    def _geometry(self) -> Geometry:
        name = self._next().upper()
        kind = _WKT_NAMES.get(name)
        if kind is None:
            raise GeographyError(f"unknown WKT geometry {name!r}")
        if (self._peek() or "").upper() in ("Z", "M", "ZM"):
            self._next()
        if (self._peek() or "").upper() == "EMPTY":
            self._next()
            if kind == "GeometryCollection":
                return {"type": kind, "geometries": []}
            return {"type": kind, "coordinates": []}
        if kind == "GeometryCollection":
            return {"type": kind, "geometries": self._list(self._geometry)}
        return {"type": kind, "coordinates": self._coordinates(kind)}

    def _coordinates(self, kind: str) -> Any:
        if kind == "Point":
            return self._list(self._coord)[0]
        if kind == "LineString":
            return self._list(self._coord)
        if kind == "MultiPoint":
            return self._list(self._multipoint_item)
        if kind in ("Polygon", "MultiLineString"):
            return self._list(self._ring)
        return self._list(lambda: self._list(self._ring))  # MultiPolygon

    def _ring(self) -> list[Any]:
        return self._list(self._coord)

    def _list(self, item: Callable[[], Any]) -> list[Any]:
        self._expect("(")
        items = [item()]
        while self._peek() == ",":
            self._next()
            items.append(item())
        self._expect(")")
        return items

    def _coord(self) -> list[float]:
        values = []
        while (token := self._peek()) not in (None, ",", ")"):
            self._next()
            try:
                values.append(float(token))
            except ValueError:
                raise GeographyError(f"not a number in WKT: {token!r}") from None
        if len(values) < 2:
            raise GeographyError("a WKT coordinate needs x and y")
        return values[:2]

    def _multipoint_item(self) -> list[float]:
        if self._peek() == "(":
            point: list[float] = self._list(self._coord)[0]
            return point
        return self._coord()


# --- output ----------------------------------------------------------------------------------


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def _coords(point: list[float]) -> str:
    return f"{_number(point[0])} {_number(point[1])}"


def _seq(points: list[list[float]]) -> str:
    return "(" + ", ".join(_coords(p) for p in points) + ")"


def to_wkt(value: Any) -> str:
    """BigQuery's WKT spelling: `POINT(1 2)`, `LINESTRING(1 2, 3 4)`, `POINT EMPTY`."""
    geometry = parse(value)
    kind = geometry.get("type")
    name = str(kind).upper()
    if kind == "GeometryCollection":
        parts = geometry.get("geometries") or []
        if not parts:
            return f"{name} EMPTY"
        return f"{name}(" + ", ".join(to_wkt(p) for p in parts) + ")"
    coordinates = geometry.get("coordinates")
    if not coordinates:
        return f"{name} EMPTY"
    if kind == "Point":
        return f"{name}({_coords(coordinates)})"
    if kind in ("LineString", "MultiPoint"):
        return name + _seq(coordinates)
    if kind in ("Polygon", "MultiLineString"):
        return name + "(" + ", ".join(_seq(r) for r in coordinates) + ")"
    if kind == "MultiPolygon":
        polygons = ("(" + ", ".join(_seq(r) for r in poly) + ")" for poly in coordinates)
        return name + "(" + ", ".join(polygons) + ")"
    raise GeographyError(f"unknown geometry type {kind!r}")


def to_geojson(value: Any) -> Geometry:
    """A GeoJSON geometry object (coordinates as floats)."""
    geometry = parse(value)
    if geometry.get("type") == "GeometryCollection":
        return {
            "type": "GeometryCollection",
            "geometries": [to_geojson(g) for g in geometry.get("geometries") or []],
        }
    return {"type": geometry["type"], "coordinates": _floats(geometry.get("coordinates", []))}


def _floats(node: Any) -> Any:
    if isinstance(node, list):
        return [_floats(n) for n in node]
    return float(node)
