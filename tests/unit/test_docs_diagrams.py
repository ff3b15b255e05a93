"""The Mermaid diagrams in docs/ render on GitHub only if they parse; no Mermaid parser runs
here, so this checks the rules that break them most often: a known diagram type, flowchart
labels with punctuation quoted, no statement separators inside sequence messages, and that the
four diagrams the docs promise are where they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
_BLOCK = re.compile(r"^```mermaid\n(.*?)^```$", re.M | re.S)
_KINDS = ("flowchart", "stateDiagram-v2", "sequenceDiagram")


def _blocks(doc: str) -> list[str]:
    return _BLOCK.findall((DOCS / doc).read_text())


def _all() -> list[tuple[str, str]]:
    return [(p.name, b) for p in sorted(DOCS.glob("*.md")) for b in _blocks(p.name)]


@pytest.mark.parametrize(("doc", "block"), _all(), ids=lambda v: v if v.endswith(".md") else "")
def test_mermaid_block_uses_a_known_type_and_safe_labels(doc: str, block: str) -> None:
    lines = [line for line in block.splitlines() if line.strip()]
    kind = lines[0].split()[0]
    assert kind in _KINDS, f"{doc}: {lines[0]}"
    for line in lines[1:]:
        text = line.strip()
        if kind == "flowchart":
            # Node labels: [..], [(..)], (..) shapes; text with punctuation must be quoted.
            for label in re.findall(r"\w\[\(?(.*?)\)?\]", text):
                if re.search(r"[()/:,.;<>]", label):
                    assert label.startswith('"') and label.endswith('"'), f"{doc}: {text}"
            for label in re.findall(r"\|(.*?)\|", text):
                assert label.startswith('"') or re.fullmatch(r"[\w ]+", label), f"{doc}: {text}"
            assert not re.search(r"\bend\b", text.split('"')[0]) or text == "end", text
        if kind == "sequenceDiagram" and re.match(r"\w+\s*-", text):
            assert ";" not in text and "#" not in text, f"{doc}: {text}"
    opened = sum(1 for line in lines if re.match(r"\s*(subgraph|alt|opt|loop|par|note)\b", line))
    closed = sum(1 for line in lines if line.strip() in ("end", "end note"))
    assert opened == closed, f"{doc}: {opened} blocks opened, {closed} closed"


def test_the_promised_diagrams_are_in_place() -> None:
    architecture = "\n".join(_blocks("architecture.md"))
    operations = "\n".join(_blocks("operations.md"))
    # System overview and one row's data flow, with the steps of the real write path.
    assert "flowchart" in architecture and "SyncService" in architecture
    flow = next(b for b in _blocks("architecture.md") if b.startswith("sequenceDiagram"))
    for step in ("APPENDS or CHANGES", "convert", "id =", "replicatedConfirmation", "checkpoint"):
        assert step in flow, step
    # The change-feed state machine: snapshot, following, event time, reset.
    states = next(b for b in _blocks("architecture.md") if b.startswith("stateDiagram-v2"))
    for state in ("snapshot", "following", "event_time", "reset", "time travel"):
        assert state in states, state
    # The cluster topology, in the operations guide.
    assert "SyncWorker" in operations and "SyncCheckpoint" in operations
