"""The track map: a real PNG, tracks drawn where the vessels sail, on water, ports marked."""

import struct
import subprocess
import sys
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from global_land_mask import globe

from harperbq.synth.params import SynthParams
from harperbq.synth.png import encode_png
from harperbq.synth.reference import PORTS
from harperbq.synth.tables import Generator
from harperbq.synth.track_map import PALETTE, PORT, TrackMap, render, select_vessels

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CLI = (sys.executable, "-m", "harperbq", "synth", "map")
WINDOW = ("--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T02:00:00Z")


def read_png(path: Path) -> npt.NDArray[np.uint8]:
    """Decode an 8-bit RGB, filter-0 PNG (what `encode_png` writes), checking every chunk's CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, dict[bytes, bytes]()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8)
    rows = rows.reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()  # filter "none" on every row
    return rows[:, 1:].reshape(height, width, 3)


@lru_cache(maxsize=1)
def six_hours() -> TrackMap:
    positions = Generator(SynthParams(total_vessels=300, seed=7)).positions(T0, T0 + 6 * 3600)
    return render(positions, PORTS, width=1200)


def coloured(rgb: npt.NDArray[np.uint8], colours: object) -> npt.NDArray[np.bool_]:
    wanted = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    found: npt.NDArray[np.bool_] = (rgb[:, :, None, :] == wanted[None, None, :, :]).all(axis=3)
    return np.asarray(found.any(axis=2), dtype=bool)


def test_tracks_are_drawn_on_water_in_the_written_image(tmp_path: Path) -> None:
    picture = six_hours()
    path = tmp_path / "tracks.png"
    path.write_bytes(encode_png(picture.rgb))
    rgb = read_png(path)
    assert rgb.shape == picture.rgb.shape and (rgb == picture.rgb).all()

    track = coloured(rgb, PALETTE)
    assert track.sum() > 1_000, "tracks drawn"
    assert 0.05 < picture.land.mean() < 0.6, "a coastline, not a blank sea or a blank continent"
    # Land and water judged afresh at each track pixel's centre, not from the image's own mask.
    rows, cols = np.nonzero(track)
    b, (height, width) = picture.bounds, rgb.shape[:2]
    lat = b.north - (rows + 0.5) / height * (b.north - b.south)
    lon = b.west + (cols + 0.5) / width * (b.east - b.west)
    on_land = np.asarray(globe.is_land(lat, lon), dtype=bool)
    # Routes hug coasts and end at berths up rivers: a few pixels of ~25 km fall on the land
    # side of a coastline, never inland.
    assert on_land.mean() < 0.05, on_land.mean()
    water = ~picture.land
    for r, c in zip(rows[on_land], cols[on_land], strict=True):
        assert water[max(0, r - 4) : r + 5, max(0, c - 4) : c + 5].any(), (lat, lon)


def test_ports_are_marked_and_vessels_coloured() -> None:
    picture = six_hours()
    assert len(picture.ports) >= 20 and picture.vessels == 300
    port = coloured(picture.rgb, PORT)
    for code in picture.ports:
        berth = next(p for p in PORTS if p.code == code).berth
        (r,), (c,), _ = picture.bounds.pixels(np.array([berth[0]]), np.array([berth[1]]), 1200)
        assert port[r, c], code
    assert len({tuple(p) for p in picture.rgb[coloured(picture.rgb, PALETTE)]}) == len(PALETTE)


def test_a_vessel_set_draws_only_those_vessels() -> None:
    positions = Generator(SynthParams(total_vessels=300, seed=7)).positions(T0, T0 + 3600)
    first = select_vessels(positions, vessels=5)
    assert len(set(first["mmsi"].to_pylist())) == 5
    some = sorted(set(positions["mmsi"].to_pylist()))[10:13]
    chosen = select_vessels(positions, mmsi=some)
    assert sorted(set(chosen["mmsi"].to_pylist())) == some
    picture = render(chosen, PORTS, width=400)
    assert picture.vessels == 3 and picture.reports == chosen.num_rows
    # Fitted to those tracks, not the world.
    assert picture.bounds.east - picture.bounds.west < 360


def test_the_cli_writes_the_map(tmp_path: Path) -> None:
    path = tmp_path / "map.png"
    done = subprocess.run(
        [*CLI, "--out", str(path), "--width", "300", "--vessels", "300", "--tracks", "10", *WINDOW],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "10 vessels" in done.stdout
    rgb = read_png(path)
    assert rgb.shape[1] == 300 and coloured(rgb, PALETTE).any()
