"""Draw synthesized vessel tracks on a land mask: what the traffic looks like, offline.

Plate carrée (equirectangular) over the tracks' bounds; land from `global_land_mask` (a 1 km
grid of the world's coastlines, bundled, no network), one colour per vessel, ports as squares.
Each report is one pixel: the tracks are the reports themselves, not lines drawn between them
(a straight line between two reports can cross a headland the route goes around).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from harperbq.synth.reference import Port

WATER = (16, 42, 70)
LAND = (92, 100, 84)
PORT = (235, 64, 52)
# Bright, distinguishable on both WATER and LAND.
PALETTE = (
    (255, 209, 102),
    (6, 214, 160),
    (239, 71, 111),
    (17, 138, 178),
    (255, 255, 255),
    (190, 120, 255),
    (255, 150, 50),
    (120, 230, 255),
    (200, 255, 120),
    (255, 120, 200),
)
MIN_SPAN_DEG = 8.0  # a few vessels in one strait still get some coastline around them


@dataclass(frozen=True)
class Bounds:
    south: float
    north: float
    west: float
    east: float

    @classmethod
    def around(cls, lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]) -> Bounds:
        """The points' box plus a margin; the whole world when they span the antimeridian."""
        if lat.size == 0:
            return cls(-70.0, 80.0, -180.0, 180.0)
        south, north = float(lat.min()), float(lat.max())
        west, east = float(lon.min()), float(lon.max())
        if east - west > 300:  # both sides of the antimeridian: a box would span the globe
            west, east = -180.0, 180.0
        margin = max(1.0, 0.08 * max(north - south, east - west))
        south, north = _widen(south - margin, north + margin, MIN_SPAN_DEG, -85.0, 85.0)
        west, east = _widen(west - margin, east + margin, MIN_SPAN_DEG, -180.0, 180.0)
        return cls(south, north, west, east)

    def shape(self, width: int) -> tuple[int, int]:
        height = round(width * (self.north - self.south) / (self.east - self.west))
        return max(1, height), width

    def pixels(
        self, lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], width: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Row and column of each point, and which fall inside the image."""
        height, _ = self.shape(width)
        row = np.floor((self.north - lat) / (self.north - self.south) * height).astype(np.int64)
        col = np.floor((lon - self.west) / (self.east - self.west) * width).astype(np.int64)
        inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
        return row, col, inside

    def centres(self, width: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Latitude and longitude of every pixel's centre, each of the image's shape."""
        height, _ = self.shape(width)
        lat = self.north - (np.arange(height) + 0.5) / height * (self.north - self.south)
        lon = self.west + (np.arange(width) + 0.5) / width * (self.east - self.west)
        return np.meshgrid(lat, lon, indexing="ij")


def _widen(lo: float, hi: float, span: float, floor: float, ceiling: float) -> tuple[float, float]:
    if hi - lo < span:
        mid = (lo + hi) / 2
        lo, hi = mid - span / 2, mid + span / 2
    return max(floor, lo), min(ceiling, hi)


def land_mask(bounds: Bounds, width: int) -> npt.NDArray[np.bool_]:
    from global_land_mask import globe

    lat, lon = bounds.centres(width)
    return np.asarray(globe.is_land(lat, lon), dtype=bool)


def select_vessels(
    positions: pa.Table, vessels: int | None = None, mmsi: Iterable[int] | None = None
) -> pa.Table:
    """The reports of the chosen vessels: the listed MMSIs, else the first `vessels` by MMSI."""
    ids = np.asarray(positions["mmsi"].to_numpy(zero_copy_only=False), dtype=np.int64)
    if mmsi is not None:
        chosen = np.asarray(sorted(set(mmsi)), dtype=np.int64)
    elif vessels is not None:
        chosen = np.unique(ids)[:vessels]
    else:
        return positions
    return positions.filter(pa.array(np.isin(ids, chosen)))


@dataclass(frozen=True)
class TrackMap:
    rgb: npt.NDArray[np.uint8]
    bounds: Bounds
    land: npt.NDArray[np.bool_]  # the mask the image was drawn on
    track: npt.NDArray[np.bool_]  # pixels holding at least one report
    vessels: int
    reports: int
    ports: tuple[str, ...]  # codes of the ports drawn


def render(
    positions: pa.Table, ports: Sequence[Port], *, width: int = 1600, bounds: Bounds | None = None
) -> TrackMap:
    lat = np.asarray(positions["latitude"].to_numpy(zero_copy_only=False), dtype=np.float64)
    lon = np.asarray(positions["longitude"].to_numpy(zero_copy_only=False), dtype=np.float64)
    ids = np.asarray(positions["mmsi"].to_numpy(zero_copy_only=False), dtype=np.int64)
    box = bounds or Bounds.around(lat, lon)
    land = land_mask(box, width)
    rgb = np.empty((*land.shape, 3), dtype=np.uint8)
    rgb[...] = WATER
    rgb[land] = LAND

    row, col, inside = box.pixels(lat, lon, width)
    unique, vessel_index = np.unique(ids, return_inverse=True)
    colours = np.asarray(PALETTE, dtype=np.uint8)[vessel_index % len(PALETTE)]
    rgb[row[inside], col[inside]] = colours[inside]
    track = np.zeros(land.shape, dtype=bool)
    track[row[inside], col[inside]] = True

    drawn = []
    for port in ports:
        plat, plon = port.berth
        (r,), (c,), (ok,) = box.pixels(np.array([plat]), np.array([plon]), width)
        if not ok:
            continue
        drawn.append(port.code)
        r0, r1 = max(0, r - 2), min(land.shape[0], r + 3)
        c0, c1 = max(0, c - 2), min(land.shape[1], c + 3)
        rgb[r0:r1, c0:c1] = PORT
    return TrackMap(rgb, box, land, track, int(unique.size), int(inside.sum()), tuple(drawn))
