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


def test_an_explicit_malloc_arena_max_wins() -> None:
    assert _probe({**os.environ, "MALLOC_ARENA_MAX": "4"}) == "False"
