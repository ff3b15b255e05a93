"""Session fixtures: a real Harper (from npm) and the real BigQuery client against the emulator.

Built on the same code as `harperbq dev up`; every service runs on loopback with fresh credentials.
"""

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import client as bq_client_module
from tests.support import FaultProxy

from harperbq.bigquery.client import emulator_client
from harperbq.devstack import emulator, harper
from harperbq.devstack.paths import harper_install_dir
from harperbq.harper.client import HarperClient

REPO = Path(__file__).resolve().parents[1]

# Emulator bug (harness only, never product code): multipart uploads with content type */* fail.
bq_client_module._GENERIC_CONTENT_TYPE = "application/octet-stream"


@pytest.fixture(scope="session")
def harper_install() -> Path:
    os.environ.setdefault("HARPERBQ_DEV_DIR", str(REPO / ".harperbq"))
    install = harper_install_dir()
    harper.ensure_installed(install)
    return install


@pytest.fixture(scope="session")
def harper_node(
    tmp_path_factory: pytest.TempPathFactory, harper_install: Path
) -> Iterator[harper.HarperNode]:
    node = harper.new_node(tmp_path_factory.mktemp("harper"), name="test-node")
    harper.start(node, harper_install)
    yield node
    harper.stop(node)


@pytest.fixture
def harper_client(harper_node: harper.HarperNode) -> Iterator[HarperClient]:
    with HarperClient(harper_node.url, harper_node.username, harper_node.password) as client:
        yield client


@pytest.fixture
def proxy(harper_node: harper.HarperNode) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the session's Harper (`tests/support.py`)."""
    p = FaultProxy(harper_node)
    yield p
    p.close()


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulator.Emulator]:
    emu = emulator.new_emulator(tmp_path_factory.mktemp("emulator"), project="harperbq-test")
    emulator.start(emu)
    yield emu
    emulator.stop(emu)


@pytest.fixture(scope="session")
def bq(bq_emulator: emulator.Emulator) -> bigquery.Client:
    return emulator_client(bq_emulator.project, bq_emulator.endpoint)


def _cluster(
    tmp_path_factory: pytest.TempPathFactory, install: Path, hosts: tuple[str, ...], prefix: str
) -> Iterator[list[harper.HarperNode]]:
    nodes: list[harper.HarperNode] = []
    password = secrets.token_urlsafe(24)
    try:
        for index, host in enumerate(hosts, start=1):
            node = harper.new_node(
                tmp_path_factory.mktemp(f"{prefix}-{index}"),
                name=host,
                host=host,
                replication=True,
                password=password,
            )
            harper.start(node, install)
            nodes.append(node)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                harper.connect_nodes(a, b)
        yield nodes
    finally:
        for node in nodes:
            harper.stop(node)


@pytest.fixture(scope="session")
def harper_cluster(
    tmp_path_factory: pytest.TempPathFactory, harper_install: Path
) -> Iterator[list[harper.HarperNode]]:
    """Three replicating Harper nodes on 127.0.0.1, 127.0.0.2 and 127.0.0.3, fully connected."""
    yield from _cluster(
        tmp_path_factory, harper_install, ("127.0.0.1", "127.0.0.2", "127.0.0.3"), "cluster"
    )


@pytest.fixture(scope="module")
def fault_cluster(
    tmp_path_factory: pytest.TempPathFactory, harper_install: Path
) -> Iterator[list[harper.HarperNode]]:
    """A cluster of its own (127.0.0.4 to .6) for tests that SIGKILL a node: a Harper killed
    mid-replication may come back slowly or not at all, and must not take the shared one along."""
    yield from _cluster(
        tmp_path_factory, harper_install, ("127.0.0.4", "127.0.0.5", "127.0.0.6"), "faults"
    )


def _clustered_modules() -> frozenset[str]:
    """Test modules (as node ids name them) that use the three-node cluster."""
    return frozenset(
        str(path.relative_to(REPO))
        for path in (REPO / "tests").rglob("test_*.py")
        if "harper_cluster" in path.read_text() or "fault_cluster" in path.read_text()
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` (`-n 2 --dist loadgroup`): a module stays on one worker, so its module-scoped
    services start once, and every module that uses the three-node cluster goes to the same
    worker, because the cluster binds fixed loopback hosts and is costly to run twice at once.

    Groups are set here, from node ids, because xdist's own `xdist_group` marks are lost with
    pytest 9 (it renames `item._nodeid`, which pytest 9 no longer reads): every module was
    spread over both workers and two clusters ran at once."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    clustered = _clustered_modules()

    class ModuleGroups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "cluster" if module in clustered else module

    return ModuleGroups(config, log)
