"""`harperbq dev up|down|status`: one local Harper and one emulator, recorded in a state file."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from harperbq.devstack import DevStackError, emulator, harper, processes
from harperbq.devstack.paths import dev_dir, harper_install_dir, write_private

log = logging.getLogger("harperbq.devstack")

# How long `up` waits for a recorded Harper whose process lives but missed one readiness probe.
REUSE_WAIT_S = 30.0


@dataclass
class Stack:
    harper: harper.HarperNode
    emulator: emulator.Emulator

    def running(self) -> dict[str, bool]:
        return {
            "harper": processes.alive(self.harper.pid()) and harper.is_ready(self.harper),
            "emulator": processes.alive(self.emulator.pid) and emulator.is_ready(self.emulator),
        }


def state_path(base: Path | None = None) -> Path:
    return (base or dev_dir()) / "dev" / "stack.json"


def env_path(base: Path | None = None) -> Path:
    return (base or dev_dir()) / "dev" / "credentials.env"


def load(base: Path | None = None) -> Stack | None:
    try:
        data = json.loads(state_path(base).read_text())
    except (OSError, ValueError):
        return None
    return Stack(
        harper.HarperNode.from_json(data["harper"]), emulator.Emulator.from_json(data["emulator"])
    )


def _save(stack: Stack, base: Path) -> None:
    data = {"harper": stack.harper.to_json(), "emulator": stack.emulator.to_json()}
    # The state holds the generated password: owner-only, like the credentials file.
    write_private(state_path(base), json.dumps(data, indent=2))
    write_private(env_path(base), connection_env(stack))


def connection_env(stack: Stack) -> str:
    lines = {
        "HARPER_URL": stack.harper.url,
        "HARPER_USERNAME": stack.harper.username,
        "HARPER_PASSWORD": stack.harper.password,
        "BIGQUERY_EMULATOR_HOST": stack.emulator.endpoint,
        "BIGQUERY_EMULATOR_GRPC_HOST": stack.emulator.grpc_endpoint,
        "BIGQUERY_PROJECT": stack.emulator.project,
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def up(base: Path | None = None) -> Stack:
    """Start what is not running, reuse what is; on failure stop what this call started."""
    base = base or dev_dir()
    stack = load(base)
    recorded = stack is not None
    if stack is None:
        stack = Stack(
            harper.new_node(base / "dev" / "harper"),
            emulator.new_emulator(base / "dev" / "emulator"),
        )
    state = stack.running()
    if not state["harper"] and processes.alive(stack.harper.pid()):
        # Alive but slow to answer (a loaded machine): reuse it rather than refuse to start.
        state["harper"] = harper.wait_ready(stack.harper, REUSE_WAIT_S)
    elif not state["harper"] and recorded:
        # Harper removes hdb.pid when it exits on its own; a SIGKILL leaves a dead pid in it.
        log.warning(
            "the Harper recorded on %s (hdb.pid: %s) is not running; starting a new one. %s",
            stack.harper.root,
            stack.harper.pid() or "none",
            harper.log_excerpt(stack.harper),
        )
    started: list[str] = []
    try:
        if not state["harper"]:
            harper.start(stack.harper, harper_install_dir())
            started.append("harper")
        if not state["emulator"]:
            emulator.start(stack.emulator, persistent=True)
            started.append("emulator")
    except DevStackError:
        if "harper" in started:
            harper.stop(stack.harper)
        raise
    _save(stack, base)
    return stack


def down(base: Path | None = None) -> list[str]:
    """Stop exactly the processes recorded by `up` (by pid). Returns what was stopped."""
    stack = load(base)
    if stack is None:
        return []
    stopped = []
    harper_pid = stack.harper.pid()
    if processes.alive(harper_pid):
        harper.stop(stack.harper)
        stopped.append(f"harper (pid {harper_pid})")
    if stack.emulator.pid and processes.alive(stack.emulator.pid):
        emulator.stop(stack.emulator)
        stopped.append(f"emulator (pid {stack.emulator.pid})")
    return stopped
