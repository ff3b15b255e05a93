"""`harperbq --help` and `config check --offline` answer in a fraction of a second because the
CLI imports BigQuery, pyarrow, gRPC, numpy and the HTTP client only inside the commands that
use them. Guarded by what a fresh interpreter has loaded after the command, not by timing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Each of these alone costs tens to hundreds of milliseconds of imports.
HEAVY = (
    "google.cloud.bigquery",
    "google.cloud.bigquery_storage_v1",
    "google.api_core",
    "google.auth",
    "pyarrow",
    "grpc",
    "numpy",
    "searoute",
    "httpx",
    "requests",
    "prometheus_client",
)
# Before the lazy imports `--help` loaded ~1 180 modules; now ~340 (typer, click, rich and
# pydantic, which typer itself imports for subcommands' help, included).
MAX_MODULES = 600

PROBE = """
import json, sys
from harperbq.cli.main import app
code = 0
try:
    app(sys.argv[2:], prog_name="harperbq")
except SystemExit as exc:
    code = exc.code or 0
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""

MINIMAL_CONFIG = """\
bigquery:
  projectId: demo-project
  tables:
    - id: positions
      dataset: maritime
      table: vessel_positions
      timestampColumn: timestamp
harper:
  url: http://127.0.0.1:9925
  username: admin
  password: not-a-real-secret
"""


def loaded_after(tmp_path: Path, *args: str) -> tuple[int, str, list[str]]:
    """(exit code, output, modules loaded) of `harperbq ARGS` in a fresh interpreter."""
    result = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARPERBQ_", "BIGQUERY_"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(result), *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(result.read_text())
    return int(report["code"]), done.stdout + done.stderr, list(report["modules"])


def heavy_in(modules: list[str]) -> list[str]:
    return sorted({h for h in HEAVY for m in modules if m == h or m.startswith(h + ".")})


@pytest.mark.parametrize(
    "args",
    [["--help"], ["sync", "--help"], ["sync", "run", "--help"], ["synth", "--help"]],
    ids=" ".join,
)
def test_help_loads_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    code, output, modules = loaded_after(tmp_path, *args)
    assert code == 0, output
    assert "Usage" in output, output
    assert heavy_in(modules) == [], heavy_in(modules)
    assert len(modules) < MAX_MODULES, len(modules)


def test_offline_config_check_loads_no_heavy_library(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL_CONFIG)
    code, output, modules = loaded_after(tmp_path, "config", "check", "--offline", "-c", str(path))
    assert code == 0, output
    assert "config ok (offline)" in output, output
    assert "harperbq.config" in modules  # the file was really parsed
    assert heavy_in(modules) == [], heavy_in(modules)
    assert len(modules) < MAX_MODULES, len(modules)


def test_the_probe_sees_heavy_imports(tmp_path: Path) -> None:
    """The guard can fail: a command that reaches BigQuery loads what `--help` must not (here
    the online `config check` against closed local ports: it builds the client, fails to
    connect and reports it)."""
    port = closed_port()
    closed = MINIMAL_CONFIG.replace("127.0.0.1:9925", f"127.0.0.1:{port}").replace(
        "  projectId: demo-project\n",
        f"  projectId: demo-project\n  endpoint: http://127.0.0.1:{port}\n",
    )
    path = tmp_path / "config.yaml"
    path.write_text(closed)
    code, output, modules = loaded_after(tmp_path, "config", "check", "--json", "-c", str(path))
    assert code == 1, output
    assert {"google.cloud.bigquery", "httpx"} <= set(heavy_in(modules)), heavy_in(modules)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
