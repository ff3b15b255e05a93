"""The demo, end to end: local stack up, synthesize AIS traffic into BigQuery, sync it to Harper.

Everything runs against the local Harper and BigQuery emulator of `harperbq dev up`; the config
it writes is an ordinary harperbq config file, so the same run can be repeated by hand with
`harperbq sync run --config .harperbq/dev/demo.yaml`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harperbq import logs
from harperbq.config import Config, load_config
from harperbq.devstack import stack
from harperbq.devstack.paths import dev_dir, write_private

DEMO_DATASET = "maritime_demo"
DEMO_DATABASE = "demo"
PASSWORD_ENV = "HARPERBQ_DEMO_HARPER_PASSWORD"  # noqa: S105 - a variable name, not a secret


@dataclass(frozen=True)
class DemoTable:
    id: str
    source: str
    target: str
    cursor: str
    key: tuple[str, ...]


TABLES = (
    DemoTable(
        "vessel_positions",
        "vessel_positions",
        "VesselPositions",
        "timestamp",
        ("mmsi", "timestamp"),
    ),
    DemoTable(
        "port_events",
        "port_events",
        "PortEvents",
        "event_time",
        ("vessel_mmsi", "event_time", "event_type"),
    ),
    DemoTable("vessel_metadata", "vessel_metadata", "VesselMetadata", "last_updated", ("mmsi",)),
)


def demo_config_data(s: stack.Stack, vessels: int) -> dict[str, Any]:
    """The demo's config: the original plugin's shape plus the keys that make it exact."""
    return {
        "harper": {
            "url": s.harper.url,
            "username": s.harper.username,
            "password": "${" + PASSWORD_ENV + "}",
            "database": DEMO_DATABASE,
        },
        "bigquery": {
            "projectId": s.emulator.project,
            "endpoint": s.emulator.endpoint,
            "storageEndpoint": s.emulator.grpc_endpoint,
            "tables": [
                {
                    "id": t.id,
                    "dataset": DEMO_DATASET,
                    "table": t.source,
                    "timestampColumn": t.cursor,
                    "columns": "*",
                    "targetTable": t.target,
                    "primaryKey": list(t.key),
                }
                for t in TABLES
            ],
        },
        "sync": {"settle": "2s", "pollInterval": 1000, "partitions": 16},
        "synthesizer": {
            "dataset": DEMO_DATASET,
            "totalVessels": vessels,
            "seed": 7,
            "samplingIntervalS": 60,
            "generationIntervalMs": 5000,
        },
    }


def prepare(vessels: int = 200, base: Path | None = None) -> tuple[stack.Stack, Config, Path]:
    """Bring the local stack up and write the demo config next to its credentials."""
    s = stack.up(base)
    path = (base or dev_dir()) / "dev" / "demo.yaml"
    write_private(path, yaml.safe_dump(demo_config_data(s, vessels), sort_keys=False))
    os.environ[PASSWORD_ENV] = s.harper.password
    cfg = load_config(path)
    logs.register_secrets(cfg.secrets())
    return s, cfg, path
