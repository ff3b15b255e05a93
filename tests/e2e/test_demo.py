"""`harperbq demo` as a user runs it: its own local stack, synthesized data, counts that match."""

import os
import subprocess
import sys
from pathlib import Path

from harperbq.devstack import stack
from harperbq.devstack.emulator import strict_default


def test_demo_runs_end_to_end_and_counts_match(tmp_path: Path, harper_install: Path) -> None:
    env = dict(
        os.environ,
        HARPERBQ_DEV_DIR=str(tmp_path),
        HARPERBQ_HARPER_INSTALL=str(harper_install),
        COLUMNS="220",  # the report table unwrapped
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harperbq", "demo", "--hours", "0.5", "--vessels", "60"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        stopped = stack.down(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "BigQuery vs Harper" in done.stdout and "✗" not in done.stdout
    assert done.stdout.count("✓") == 3
    if strict_default():
        # Strict BigQuery bills every read (10 MB at least per query): figures, not zeros.
        assert "est. cost" in done.stdout and "MiB" in done.stdout and "$0.0" in done.stdout
    assert "VesselPositions" in done.stdout and '"mmsi"' in done.stdout
    assert len(stopped) == 2  # the demo left exactly its two services running, now stopped
    password = stack.load(tmp_path)
    assert password is not None and password.harper.password not in done.stdout + done.stderr
