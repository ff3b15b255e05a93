"""docs/architecture.md describes the code as built (issue 16 item 7): its module map names every
module of `src/harperbq` with its one job, names no module that is gone, and the docs point at
nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "harperbq"
DOC = REPO / "docs" / "architecture.md"


def _map_rows() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Module map") :]
    return dict(re.findall(r"^\| `([\w/]+\.py)` \| (.+) \|$", section, re.M))


def _modules() -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}


def test_module_map_lists_every_module_and_no_other() -> None:
    rows = _map_rows()
    assert sorted(_modules() - set(rows)) == [], "modules missing from the map"
    assert sorted(set(rows) - _modules()) == [], "the map names modules that do not exist"


def test_every_module_says_its_job() -> None:
    assert [m for m, job in _map_rows().items() if len(job.strip()) < 12] == []


def test_docs_point_at_nothing_outside_the_repository() -> None:
    docs = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        assert "../shared" not in text and "design notes" not in text, doc
        for target in re.findall(r"\]\((?!https?://|#|mailto:)([^)#\s]+)", text):
            assert (doc.parent / target).exists(), f"{doc.name}: link to {target}"
