"""Fewer glibc malloc arenas for the sync process, and freed memory handed back after each
periodic job: its resident set, not its speed.

Why: glibc gives each thread that allocates its own arena (up to 8 per core), and the sync
allocates from many threads (the reader, one per Storage Read stream, gRPC's, the HTTP pool).
Converted pages are built in one thread and freed in another, so every arena keeps its own
high-water of freed pages resident: measured, about 28 MiB of the sync's peak at 100 000 rows
(docs/performance.md). Two arenas keep that down with no measurable cost in rows/s. An explicit
`MALLOC_ARENA_MAX` in the environment wins.

The mmap threshold is fixed at 1 MiB too. glibc raises it to the size of each mmapped block
freed, so after one large answer (a 3 MiB scan body) every later block of that size came from
the heap, where fragments between long-lived objects stay resident: in the 30-minute soak the
resident floor climbed 184 -> 243 MiB with the table while Python's own objects stayed level.
With the fixed threshold such blocks are mapped and unmapped whole (a 14-minute soak: the
floor fell from 198 to 188-191 MiB, docs/performance.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys

_M_ARENA_MAX = -8  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
ARENAS = 2
MMAP_THRESHOLD = 1 << 20


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas and fix its mmap threshold (call before the threads start); False
    where that is not glibc's malloc or the environment already decides."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return bool(mallopt(_M_ARENA_MAX, arenas))


def release_unused() -> None:
    """Hand freed memory back to the system after a burst (a validation, a reconciliation):
    glibc keeps a freed heap top and Arrow's pool keeps freed buffers, so without this each
    periodic job leaves the resident set at its own high-water mark. Costs milliseconds."""
    arrow = sys.modules.get("pyarrow")  # only if already in use: never imported for this
    if arrow is not None:
        with contextlib.suppress(Exception):
            arrow.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            _libc().malloc_trim(0)
