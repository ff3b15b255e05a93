"""The tutorials (issue 17 item 8) stay honest: each cast is a valid asciinema v2 recording
made by `docs/tutorials/record.py` from its current steps, its transcript shows those very
commands, the README links both, and no secret is in either."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
TUTORIALS = REPO / "docs" / "tutorials"


def _recorder() -> ModuleType:
    name = "harperbq_tutorials_record"
    spec = importlib.util.spec_from_file_location(name, TUTORIALS / "record.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


RECORDER = _recorder()
NAMES = list(RECORDER.TUTORIALS)


def test_there_are_the_three_tutorials_the_issue_asks_for() -> None:
    assert NAMES == ["setup", "config-change", "troubleshooting"]


@pytest.mark.parametrize("name", NAMES)
def test_cast_is_asciinema_v2_with_monotonic_time(name: str) -> None:
    lines = (TUTORIALS / f"{name}.cast").read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] > 0 and header["height"] > 0
    assert set(header["env"]) <= {"SHELL", "TERM"}
    times = []
    for line in lines[1:]:
        at, kind, data = json.loads(line)
        assert kind == "o" and isinstance(data, str)
        times.append(at)
    assert len(times) > 50 and times == sorted(times) and times[0] >= 0


@pytest.mark.parametrize("name", NAMES)
def test_cast_and_transcript_show_the_current_steps(name: str) -> None:
    _, steps = RECORDER.TUTORIALS[name]
    typed = "".join(
        json.loads(line)[2]
        for line in (TUTORIALS / f"{name}.cast").read_text(encoding="utf-8").splitlines()[1:]
    )
    transcript = (TUTORIALS / f"{name}.md").read_text(encoding="utf-8")
    shown = re.findall(r"^\$ (.+)$", transcript, re.M)
    assert shown == [step.command.split("\n")[0] for step in steps], "re-run record.py"
    for step in steps:
        assert step.command.replace("\n", "\r\n> ") in typed, "re-run record.py"
        assert step.why in transcript


@pytest.mark.parametrize("name", NAMES)
def test_no_secret_in_a_recording(name: str) -> None:
    for suffix in ("cast", "md"):
        text = (TUTORIALS / f"{name}.{suffix}").read_text(encoding="utf-8")
        for value in re.findall(r"PASSWORD\s*[=:]\s*['\"]?([^\s'\"\\]+)", text):
            assert value in (RECORDER.MASK, "wrong", "${HARPER_PASSWORD}"), value


def test_readme_links_every_tutorial() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in NAMES:
        assert f"docs/tutorials/{name}.md" in readme and f"docs/tutorials/{name}.cast" in readme


def test_live_views_leave_their_last_frame_in_a_transcript() -> None:
    frames = ["rows 1\n", "\x1b[1A\x1b[2Krows 2\n", "\x1b[1A\x1b[2Krows 3\n"]
    assert RECORDER.screen_text(frames) == "rows 3"
