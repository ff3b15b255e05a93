"""The sync caps glibc's malloc arenas at start (its peak RSS, docs/performance.md), unless the
environment already decides. Checked in fresh interpreters: the cap is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "from harperbq.memory import limit_arenas; print(limit_arenas())"


def _probe(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_arenas_are_capped_on_glibc() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert _probe(env) == "True"


RSS_KIB = """
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
"""

LARGE_BLOCKS = (
    RSS_KIB
    + """
from harperbq.memory import limit_arenas

limit_arenas()
first = bytearray(16 << 20)  # mapped, then freed: glibc would raise its threshold to 16 MiB
del first
before = rss_kib()
blocks = [bytearray(2 << 20) for _ in range(40)]  # then these would come from the heap
del blocks
print(rss_kib() - before)
"""
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_blocks_are_unmapped_when_freed_even_after_a_larger_one() -> None:
    """Without the fixed threshold 16 MiB of freed heap stay resident here."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", LARGE_BLOCKS], env=env, capture_output=True, text=True, check=True
    )
    assert int(done.stdout) < 4 << 10, f"{done.stdout.strip()} KiB stayed resident"


def test_an_explicit_malloc_arena_max_wins() -> None:
    assert _probe({**os.environ, "MALLOC_ARENA_MAX": "4"}) == "False"


RELEASE = (
    RSS_KIB
    + """
import sys
from harperbq.memory import release_unused

release_unused()
print("pyarrow" in sys.modules)
import pyarrow as pa
buffers = [pa.allocate_buffer(1 << 20) for _ in range(200)]
for b in buffers:
    b.to_pybytes()[:1]  # touched: resident
blocks = [bytearray(64 << 10) for _ in range(3000)]  # glibc heap, not mmap
del buffers, blocks[:-1]
before = rss_kib()
release_unused()
print(before - rss_kib())
"""
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_hands_freed_memory_back_without_importing_arrow() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RELEASE], capture_output=True, text=True, check=True
    )
    imported, released_kib = done.stdout.split()
    assert imported == "False"  # never imports pyarrow to release its pool
    assert int(released_kib) > 50_000, released_kib  # of ~390 MiB freed, most goes back
