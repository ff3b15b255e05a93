"""Sea routes between every pair of ports: `searoute` once per pair, cached on disk and in memory.

A path for the ordered pair (a, b) runs berth(a) -> a's approach -> the sea route between the two
entry points -> b's approach reversed -> berth(b), with longitudes unwrapped so interpolation never
jumps across the map at the antimeridian (callers wrap to [-180, 180) at the end).
"""

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
import numpy.typing as npt

from harperbq.synth.reference import EARTH_RADIUS_NM, PORTS

ROUTES_VERSION = 1
HARBOUR_EXTRA_NM = 3.0  # harbour speed starts this far outside the approach's entry point
HARBOUR_MAX_NM = 20.0
MIN_SEA_NM = 10.0
DENSIFY_NM = 10.0  # pairs closer than this beyond both harbour zones are not sailed
_KEY_STRIDE = 100_000.0  # > longest path in nm: keys path*stride + s sort paths apart
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def cache_dir() -> Path:
    """`$HARPERBQ_CACHE_DIR`, else the user cache dir (`$XDG_CACHE_HOME/harperbq`)."""
    explicit = os.environ.get("HARPERBQ_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harperbq"


def haversine_nm(lat1: F64, lon1: F64, lat2: F64, lon2: F64) -> F64:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_NM * np.arcsin(np.sqrt(np.clip(h, 0, 1))), dtype=np.float64)


def _despur(coords: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Drop leading vertices the route visits only to turn back (the network's port spurs)."""
    out = [coords[0]] + [p for k, p in enumerate(coords[1:], 1) if p != coords[k - 1]]
    for _ in range(3):
        if len(out) < 3:
            break
        (la, loa), (ln, lon_), (lv, lov) = out[0], out[1], out[2]
        c = math.cos(math.radians(ln))
        v1, v2 = (la - ln, (loa - lon_) * c), (lv - ln, (lov - lon_) * c)
        n1, n2 = math.hypot(*v1), math.hypot(*v2)
        if n1 == 0 or n2 == 0 or (v1[0] * v2[0] + v1[1] * v2[1]) / (n1 * n2) > 0.87:
            out.pop(1)
        else:
            break
    return out


def _sea_route(a: int, b: int) -> list[tuple[float, float]]:
    import searoute

    (la, loa), (lb, lob) = PORTS[a].entry, PORTS[b].entry
    feature = searoute.searoute([loa, la], [lob, lb], units="naut", append_orig_dest=True)
    coords = [(float(c[1]), float(c[0])) for c in feature["geometry"]["coordinates"]]
    coords = _despur(coords)
    return _despur(coords[::-1])[::-1]


def _cache_key() -> str:
    spec = {
        "v": ROUTES_VERSION,
        "searoute": version("searoute"),
        "entries": [p.entry for p in PORTS],
    }
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


def _load_or_compute_sea_routes() -> dict[tuple[int, int], list[tuple[float, float]]]:
    """Sea routes for a < b, from the disk cache or computed (about 10 s) and then cached."""
    path = cache_dir() / f"sea-routes-{_cache_key()}.npz"
    n = len(PORTS)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    if path.exists():
        try:
            data = np.load(path)
            coords, offsets = data["coords"], data["offsets"]
            return {
                pair: [tuple(map(float, c)) for c in coords[offsets[k] : offsets[k + 1]]]  # type: ignore[misc]
                for k, pair in enumerate(pairs)
            }
        except (OSError, KeyError, ValueError):
            pass  # a corrupt cache is recomputed
    routes = {pair: _sea_route(*pair) for pair in pairs}
    offsets = np.cumsum([0] + [len(routes[p]) for p in pairs])
    coords = np.array([c for p in pairs for c in routes[p]], dtype=np.float64)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
            np.savez(tmp, coords=coords, offsets=offsets)
        os.replace(tmp.name, path)  # atomic: concurrent processes never read a half file
    except OSError:
        pass  # read-only home: keep the in-process copy only
    return routes


@dataclass(frozen=True, eq=False)
class RouteNet:
    """All ordered port-to-port paths as flat vertex arrays (path p = a * n_ports + b)."""

    n_ports: int
    lat: F64
    lon: F64  # unwrapped within each path
    cum: F64  # nm from the path's start at each vertex
    key: F64  # path * stride + cum, for one vectorised searchsorted over all paths
    course: F64  # course over ground of the segment starting at each vertex, degrees
    ptr: I64  # vertices of path p are ptr[p]:ptr[p+1]
    length: F64  # nm per path
    harbour: F64  # per port: nm from the berth inside which ships move at harbour speed
    allowed: npt.NDArray[np.bool_]  # (n_ports, n_ports): pairs that are sailed

    def path_id(self, a: npt.ArrayLike, b: npt.ArrayLike) -> I64:
        return np.asarray(a, dtype=np.int64) * self.n_ports + np.asarray(b, dtype=np.int64)

    def distance(self) -> F64:
        return self.length.reshape(self.n_ports, self.n_ports)

    @cached_property
    def _steps(self) -> tuple[F64, F64, F64]:
        """Per vertex: the change of cum, lat and lon to the next vertex (computed once)."""
        nxt = np.minimum(np.arange(1, self.cum.shape[0] + 1), self.cum.shape[0] - 1)
        return self.cum[nxt] - self.cum, self.lat[nxt] - self.lat, self.lon[nxt] - self.lon

    def locate(self, path: I64, s: F64) -> tuple[F64, F64, F64]:
        """Latitude, longitude (wrapped to [-180, 180)) and segment course at distance s."""
        lat, lon, course, _ = self.locate_runs(path, s)
        return lat, lon, course

    def locate_runs(
        self, path: I64, s: F64, runs: I64 | None = None, hint: I64 | None = None
    ) -> tuple[F64, F64, F64, I64]:
        """`locate`, plus each row's vertex, for rows in runs along one path (a phase's reports).

        `runs`: first row of each run; `hint`: a vertex per run to start from (-1: none). Runs
        without a hint are searched for their first row; every row then walks from its run's
        vertex to the one a full search finds (the last with key <= query, within the path).
        """
        s = np.clip(s, 0.0, self.length[path])
        q = path * _KEY_STRIDE + s
        lo_v, hi_v = self.ptr[path], self.ptr[path + 1] - 2
        if runs is None or q.size == 0:
            j = np.clip(np.searchsorted(self.key, q, side="right") - 1, lo_v, hi_v)
        else:
            first = np.full(runs.shape, -1, dtype=np.int64) if hint is None else hint.copy()
            todo = np.flatnonzero(first < 0)
            first[todo] = np.searchsorted(self.key, q[runs[todo]], side="right") - 1
            j = np.repeat(first, np.diff(runs, append=q.shape[0]))
            j = self._walk(q, np.clip(j, lo_v, hi_v), lo_v, hi_v)
        dcum, dlat, dlon = self._steps
        seg = dcum[j]
        frac = np.clip(np.divide(s - self.cum[j], seg, out=np.zeros_like(s), where=seg > 0), 0, 1)
        lat = self.lat[j] + frac * dlat[j]
        lon = self.lon[j] + frac * dlon[j]
        return lat, wrap360(lon + 180.0) - 180.0, self.course[j], j

    def _walk(self, q: F64, j: I64, lo_v: I64, hi_v: I64) -> I64:
        """From a guess j in [lo_v, hi_v], the last vertex in that range with key <= q (or lo_v):
        what searchsorted-then-clip gives, since keys never decrease."""
        key = self.key
        up = np.flatnonzero(key[j + 1] <= q)
        up = up[j[up] < hi_v[up]]
        while up.size:
            j[up] += 1
            up = up[(j[up] < hi_v[up]) & (key[j[up] + 1] <= q[up])]
        down = np.flatnonzero(key[j] > q)
        down = down[j[down] > lo_v[down]]
        while down.size:
            j[down] -= 1
            down = down[(j[down] > lo_v[down]) & (key[j[down]] > q[down])]
        return j


def wrap360(x: F64) -> F64:
    """np.mod(x, 360.0) value for value (a zero may keep its sign), cheaper when x is in
    [-360, 720): numpy's float mod is fmod plus the divisor for a negative result, and on that
    range fmod is x or x - 360 exactly. May return x itself."""
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0.0 and hi < 360.0:
        return x
    if lo >= 0.0 and hi < 720.0:
        return np.where(x >= 360.0, x - 360.0, x)
    if lo >= -360.0 and hi < 360.0:
        return np.where(x < 0.0, x + 360.0, x)
    return np.asarray(np.mod(x, 360.0), dtype=np.float64)


def _polyline_nm(points: list[tuple[float, float]]) -> float:
    arr = np.array(points)
    return float(haversine_nm(arr[:-1, 0], arr[:-1, 1], arr[1:, 0], arr[1:, 1]).sum())


def _densify(lat: F64, lon: F64) -> tuple[F64, F64]:
    """Split segments into pieces of at most `DENSIFY_NM`, so that the haversine length of each
    piece is the length actually sailed when interpolating linearly in latitude/longitude."""
    seg = haversine_nm(lat[:-1], lon[:-1], lat[1:], lon[1:])
    pieces = np.maximum(np.ceil(seg / DENSIFY_NM).astype(np.int64), 1)
    start = np.repeat(np.arange(len(seg)), pieces)
    frac = (
        np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    ) / np.repeat(pieces, pieces)
    out_lat = np.append(lat[start] + frac * (lat[start + 1] - lat[start]), lat[-1])
    out_lon = np.append(lon[start] + frac * (lon[start + 1] - lon[start]), lon[-1])
    return out_lat, out_lon


@lru_cache(maxsize=1)
def route_net() -> RouteNet:
    """The network, built once per process (first call may compute the routes, ~10 s)."""
    sea = _load_or_compute_sea_routes()
    n = len(PORTS)
    lats: list[F64] = []
    lons: list[F64] = []
    ptr = [0]
    harbour = np.array(
        [
            min(_polyline_nm(list(p.path)) + HARBOUR_EXTRA_NM, HARBOUR_MAX_NM)
            if len(p.path) > 1
            else HARBOUR_EXTRA_NM
            for p in PORTS
        ]
    )
    for a in range(n):
        for b in range(n):
            if a == b:
                pts = [PORTS[a].berth, PORTS[a].berth]
            else:
                route = sea[(a, b)] if a < b else sea[(b, a)][::-1]
                pts = list(PORTS[a].path) + route[1:-1] + list(PORTS[b].path[::-1])
                pts = [pts[0]] + [p for k, p in enumerate(pts[1:], 1) if p != pts[k - 1]]
            arr = np.array(pts, dtype=np.float64)
            lat_p, lon_p = _densify(arr[:, 0], np.degrees(np.unwrap(np.radians(arr[:, 1]))))
            lats.append(lat_p)
            lons.append(lon_p)
            ptr.append(ptr[-1] + len(lat_p))
    lat = np.concatenate(lats)
    lon = np.concatenate(lons)
    ptr_arr = np.array(ptr, dtype=np.int64)
    path_of_vertex = np.repeat(np.arange(n * n), np.diff(ptr_arr))
    seg = np.zeros_like(lat)
    seg[:-1] = haversine_nm(lat[:-1], lon[:-1], lat[1:], lon[1:])
    seg[ptr_arr[1:] - 1] = 0.0  # no segment from a path's last vertex into the next path
    cum = np.zeros_like(lat)
    for p in range(n * n):
        lo, hi = ptr_arr[p], ptr_arr[p + 1]
        cum[lo + 1 : hi] = np.cumsum(seg[lo : hi - 1])
    length = cum[ptr_arr[1:] - 1]
    course = np.zeros_like(lat)
    dlat = np.diff(lat, append=lat[-1])
    dlon = np.diff(lon, append=lon[-1]) * np.cos(np.radians(lat))
    course[:] = np.mod(np.degrees(np.arctan2(dlon, dlat)), 360.0)
    course[ptr_arr[1:] - 1] = course[np.maximum(ptr_arr[1:] - 2, ptr_arr[:-1])]
    dist = length.reshape(n, n)
    allowed = dist >= harbour[:, None] + harbour[None, :] + MIN_SEA_NM
    np.fill_diagonal(allowed, False)
    return RouteNet(
        n_ports=n,
        lat=lat,
        lon=lon,
        cum=cum,
        key=path_of_vertex * _KEY_STRIDE + cum,
        course=course,
        ptr=ptr_arr,
        length=length,
        harbour=harbour,
        allowed=allowed,
    )
