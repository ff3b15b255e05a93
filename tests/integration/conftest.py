"""Fixtures of the integration tests: a Harper client and a database of the test's own."""

import uuid
from collections.abc import Iterator

import pytest

from harperbq.harper.client import HarperClient


@pytest.fixture
def client(harper_client: HarperClient) -> HarperClient:
    return harper_client


@pytest.fixture
def db(client: HarperClient) -> Iterator[str]:
    """A fresh database name, dropped after the test."""
    name = f"it_{uuid.uuid4().hex[:10]}"
    yield name
    client.drop_database(name, missing_ok=True)
