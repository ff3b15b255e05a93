"""libfaketime for tests of clock skew: where the library is, and the environment of a process
whose wall clock runs off by a given offset (`make faketime` installs it).

Why these settings: by default libfaketime also fakes the monotonic clock, and Python's timed
waits (`threading.Event.wait`, lock timeouts) then hang; with `FAKETIME_DONT_FAKE_MONOTONIC=1`
they work, but `time.sleep` fails with EINVAL, which `tests/e2e/skewed_sync.py` works around.
Only the wall clock is skewed, which is what differs between real machines.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path

INSTALL_HINT = "libfaketime is not installed: run `make faketime` (apt-get install faketime)"


def library() -> Path | None:
    """libfaketime.so.1 for this machine's architecture, or None when not installed."""
    arch = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(
        platform.machine(), f"{platform.machine()}-linux-gnu"
    )
    for folder in (Path("/usr/lib") / arch / "faketime", Path("/usr/lib/faketime")):
        found = folder / "libfaketime.so.1"
        if found.is_file():
            return found
    return None


def skewed_env(offset: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process whose wall clock is `offset` off (libfaketime syntax,
    e.g. `+10m`, `-10m`); raises FileNotFoundError naming the fix when not installed."""
    lib = library()
    if lib is None:
        raise FileNotFoundError(INSTALL_HINT)
    env = dict(os.environ if base is None else base)
    preload = env.get("LD_PRELOAD")
    env["LD_PRELOAD"] = f"{lib}:{preload}" if preload else str(lib)
    env["FAKETIME"] = offset
    env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    env["FAKETIME_NO_CACHE"] = "1"
    return env
