"""End-to-end helpers: a config pointing at the test Harper and emulator, and row comparison."""

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harperbq.config import Config, load_config
from harperbq.devstack.emulator import Emulator
from harperbq.devstack.harper import HarperNode


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def write_config(
    tmp_path: Path,
    harper_node: HarperNode,
    bq_emulator: Emulator,
    unique: str,
    request: pytest.FixtureRequest,
) -> Callable[..., tuple[Path, Config]]:
    """Write a config file for the test stack; returns its path and the loaded config.

    A test module about event-time windows (reconciliation, lateness, windows of the cursor)
    sets `CHANGE_FEED = "none"` (one test: `@pytest.mark.change_feed("none")`): its tables are
    then read by event time, as views are."""
    marker = request.node.get_closest_marker("change_feed")
    change_feed = marker.args[0] if marker else getattr(request.module, "CHANGE_FEED", None)

    def write(tables: list[dict[str, Any]], **sections: Any) -> tuple[Path, Config]:
        data: dict[str, Any] = {
            "harper": {
                "url": harper_node.url,
                "username": harper_node.username,
                "password": "${TEST_HARPER_PASSWORD}",
                "database": f"e2e_{unique}",
                "stateDatabase": f"state_{unique}",
            },
            "bigquery": {
                "projectId": bq_emulator.project,
                "endpoint": bq_emulator.endpoint,
                "storageEndpoint": bq_emulator.grpc_endpoint,
                "tables": tables,
            },
            "retry": {"maxAttempts": 5, "initialDelay": 200, "maxDelay": "2s"},
        }
        if change_feed is not None:
            data["sync"] = {"changeFeed": change_feed}
        for key, value in sections.items():
            data.setdefault(key, {}).update(value)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        return path, load_config(path, {"TEST_HARPER_PASSWORD": harper_node.password})

    return write
