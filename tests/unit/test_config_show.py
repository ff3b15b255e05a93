"""`harperbq config show`: what the original's keys became, with defaults, overrides, no secrets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PASSWORD = "from-env-S3cret-value"


def show(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harperbq", "config", "show", *args],
        env=dict(os.environ, HARPER_PASSWORD=PASSWORD, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=FIXTURES,  # the file's credentials path resolves beside it
    )


def test_the_original_file_shows_as_our_resolved_keys_with_secrets_masked() -> None:
    done = show("-c", "original-single-table.yaml", "--json", HARPERBQ_HARPER_URL="https://h1:9925")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    data = json.loads(done.stdout)
    [table] = data["tables"]
    # The original's single-table shape became the table `default`; pollInterval 30000 (ms)
    # became 30 s; its `operations` block became `harper`.
    assert table["id"] == "default" and table["target_table"] == "vessel_positions"
    assert table["poll_interval_s"] == 30.0 and table["steady_batch_size"] == 500
    assert data["harper"]["username"] == "admin" and data["harper"]["password"] == "***"
    assert data["control"]["token"] is None  # not set: shown as absent, not masked
    # Defaults are filled in and the override is named with its variable.
    assert data["harper"]["database"] == "data" and data["sync"]["workers"] == 1
    assert data["harper"]["url"] == "https://h1:9925"  # over the file's operations host:port
    assert data["from_environment"]["harper.url"] == "env HARPERBQ_HARPER_URL"
    assert table["change_feed"] in ("auto", "appends", "changes", "none")
    # The single-table keys sit in `bigquery` in the file; shown once, resolved, in `tables`.
    assert not {"tables", "dataset", "table", "timestamp_column"} & set(data["bigquery"])
    assert data["bigquery"]["query_price_per_tib"] > 0


def test_yaml_by_default_and_a_bad_file_is_refused_with_its_problem() -> None:
    done = show("-c", "original-multi-table.yaml")
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(done.stdout)
    assert len(data["tables"]) >= 2 and PASSWORD not in done.stdout
    missing = show("-c", "no-such-config.yaml")
    assert missing.returncode == 1 and "no-such-config.yaml" in missing.stdout + missing.stderr
