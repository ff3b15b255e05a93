"""`harperbq demo` as a user runs it: its own local stack, synthesized data, counts that match."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from harperbq.devstack import stack
from harperbq.devstack.emulator import strict_default
from harperbq.harper.client import HarperClient


def test_demo_runs_end_to_end_and_counts_match(tmp_path: Path, harper_install: Path) -> None:
    env = dict(
        os.environ,
        HARPERBQ_DEV_DIR=str(tmp_path),
        HARPERBQ_HARPER_INSTALL=str(harper_install),
        COLUMNS="220",  # the report table unwrapped
    )
    demo = [sys.executable, "-m", "harperbq", "demo", "--vessels", "60"]
    try:
        done = subprocess.run(
            [*demo, "--hours", "0.5"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode == 0:
            # Then `--follow` on the same stack, earlier demo data and all: live traffic only,
            # stopped by Ctrl-C once new positions reached Harper, every table still matching.
            followed = follow_until_new_rows(demo, env, tmp_path)
    finally:
        stopped = stack.down(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "BigQuery vs Harper" in done.stdout and "✗" not in done.stdout
    assert done.stdout.count("✓") == 3
    if strict_default():
        # Strict BigQuery bills every read: figures, not zeros. The tables are copied by one
        # snapshot each (Storage Read, their selected columns once), so KiB, not 10 MB a query.
        assert "est. cost" in done.stdout and "$0.0" in done.stdout
        assert re.search(r"\d[\d,.]* (KiB|MiB)", done.stdout), done.stdout[-3000:]
    assert "VesselPositions" in done.stdout and '"mmsi"' in done.stdout
    drawn = re.search(r"map of the synthesized tracks: (\S+)", done.stdout)
    assert drawn, done.stdout[-3000:]
    assert Path(drawn.group(1)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(stopped) == 2  # the demo left exactly its two services running, now stopped
    password = stack.load(tmp_path)
    assert password is not None and password.harper.password not in done.stdout + done.stderr
    assert followed.returncode == 0, followed.stdout[-3000:] + followed.stderr[-3000:]
    assert followed.stdout.count("✓") == 3 and "✗" not in followed.stdout, followed.stdout[-3000:]


def positions_in_harper(base: Path) -> int:
    s = stack.load(base)
    assert s is not None
    with HarperClient(s.harper.url, s.harper.username, s.harper.password) as client:
        return client.describe_table("demo", "VesselPositions").record_count_estimate or 0


def follow_until_new_rows(
    demo: list[str], env: dict[str, str], base: Path
) -> subprocess.CompletedProcess[str]:
    before = positions_in_harper(base)
    proc = subprocess.Popen(
        [*demo, "--hours", "0.5", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while positions_in_harper(base) <= before and proc.poll() is None:
            assert time.monotonic() < deadline, "no live positions reached Harper"
            time.sleep(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
