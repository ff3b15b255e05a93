"""Record the tutorials: run each step's command for real in a pseudo-terminal and write an
asciinema v2 cast (`<name>.cast`) and a Markdown transcript (`<name>.md`) beside this script.

    .venv/bin/python docs/tutorials/record.py

Runs against a fresh local stack of its own (`harperbq dev up` in a temporary directory; the
Harper install of `.harperbq/` is reused when present), so the recordings show what the commands
print today. Secrets never reach a file: the generated Harper password is masked in every chunk
of output before it is written, and the cast's environment names only the shell and terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WIDTH, HEIGHT = 110, 32
TYPING_S = 0.02  # per character of a typed command
IDLE_LIMIT_S = 1.5  # longer silences are shortened in the cast, as `asciinema rec -i` does
STEP_TIMEOUT_S = 300.0
MASK = "********"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")


@dataclass(frozen=True)
class Step:
    why: str
    command: str


CONFIG = """harper:
  url: ${HARPER_URL}
  username: ${HARPER_USERNAME}
  password: ${HARPER_PASSWORD}
  database: tutorial
  stateDatabase: tutorial_state

bigquery:
  projectId: ${BIGQUERY_PROJECT}
  tables:
    - id: positions
      dataset: tutorial
      table: vessel_positions
      timestampColumn: timestamp
      primaryKey: [mmsi, timestamp]
      targetTable: VesselPositions

sync:
  settle: 2s

synthesizer:
  dataset: tutorial
  totalVessels: 20
  seed: 7
"""

CHANGED = CONFIG.replace(
    "      targetTable: VesselPositions\n",
    "      columns: [mmsi, timestamp, vessel_name, latitude, longitude]\n"
    "      targetTable: VesselPositions\n"
    "    - id: events\n"
    "      dataset: tutorial\n"
    "      table: port_events\n"
    "      timestampColumn: event_time\n"
    "      targetTable: PortEvents\n",
)

TYPO = CONFIG.replace("timestampColumn:", "timestampColum:")

TUTORIALS: dict[str, tuple[str, list[Step]]] = {
    "setup": (
        "Setup walkthrough: a local stack, a config, the first sync",
        [
            Step(
                "Start a local Harper and the BigQuery emulator on free loopback ports. "
                "The Harper password is generated here (there is no default).",
                "harperbq dev up",
            ),
            Step(
                "Load the connection settings `dev up` wrote (mode 0600) into the environment; "
                "the config refers to them as `${...}`, so no secret is in the file.",
                "set -a; . .harperbq/dev/credentials.env; set +a",
            ),
            Step(
                "A config with one table: the synthesizer's vessel positions, keyed by "
                "vessel and time.",
                f"cat > config.yaml <<'EOF'\n{CONFIG}EOF",
            ),
            Step(
                "Check the file, then every table against BigQuery (the tables do not exist "
                "yet: the check says so and how to fix it).",
                "harperbq config check --config config.yaml",
            ),
            Step(
                "Synthesize an hour of AIS traffic for 20 vessels into BigQuery.",
                "harperbq synth initialize small --config config.yaml",
            ),
            Step("The check passes now.", "harperbq config check --config config.yaml"),
            Step(
                "Catch up once and exit (`--once`: for cron or a first copy); without it the "
                "sync runs continuously.",
                "harperbq sync run --config config.yaml --once",
            ),
            Step(
                "What is synced, read from Harper's state tables (from any machine).",
                "harperbq sync status --config config.yaml",
            ),
        ],
    ),
    "config-change": (
        "A configuration change: select columns, add a table",
        [
            Step(
                "The effective configuration: defaults filled in, secrets masked.",
                "harperbq config show --config config.yaml | head -40",
            ),
            Step(
                "Select five columns of the positions and add the port events table.",
                f"cat > config-v2.yaml <<'EOF'\n{CHANGED}EOF\ndiff config.yaml config-v2.yaml",
            ),
            Step(
                "Check the new file before using it.",
                "mv config-v2.yaml config.yaml && harperbq config check --config config.yaml",
            ),
            Step(
                "Run again: the new table is copied from its start, the existing one resumes "
                "from its checkpoint.",
                "harperbq sync run --config config.yaml --once",
            ),
            Step("Both tables, in step.", "harperbq sync status --config config.yaml"),
        ],
    ),
    "troubleshooting": (
        "Troubleshooting: what goes wrong, what the errors say, how to fix it",
        [
            Step(
                "A typo in a key: the error names the key, the table and the fix.",
                f"cat > typo.yaml <<'EOF'\n{TYPO}EOF\nharperbq config check --config typo.yaml",
            ),
            Step(
                "A wrong password: Harper refuses, and the check says which setting to look at.",
                "HARPER_PASSWORD=wrong harperbq config check --config config.yaml",
            ),
            Step(
                "Harper not reachable: the check says where it looked.",
                "HARPER_URL=http://127.0.0.1:9 harperbq config check --config config.yaml",
            ),
            Step(
                "Is Harper right? Validation compares every closed window, BigQuery vs Harper.",
                "harperbq sync validate --config config.yaml",
            ),
            Step("Stop the local stack (by pid: nothing else is touched).", "harperbq dev down"),
        ],
    ),
}


class Shell:
    """One interactive bash in a pseudo-terminal; each command's output up to the next prompt."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a quiet bash, no prompt
            os.chdir(cwd)
            # An interactive shell is the point: the tutorial is what a user would type.
            os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)  # noqa: S606
        os.set_blocking(self.fd, False)
        self.secrets: list[str] = []
        self._steps = 0
        self._send(f"stty -echo cols {WIDTH} rows {HEIGHT}; PS1=''; PS2=''")
        self.run_raw("true")  # everything before its end marker (the echoed set-up) is dropped

    def _send(self, text: str) -> None:
        os.write(self.fd, (text + "\n").encode())

    def run_raw(self, command: str) -> list[tuple[float, str]]:
        """Run `command`; (seconds since it started, output chunk) until the prompt returns."""
        self._steps += 1
        marker = f"\x1eend{self._steps}\x1e"
        # One marker after the whole step (heredocs included), numbered: a late byte of an
        # earlier step can never end this one.
        self._send("{ " + command + "\n}; printf '\\036end%d\\036' " + str(self._steps))
        started = time.monotonic()
        chunks: list[tuple[float, str]] = []
        buffer = ""
        while time.monotonic() - started < STEP_TIMEOUT_S:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 65536).decode(errors="replace")
            except OSError:
                break
            buffer += data
            if marker in buffer:
                before = buffer.split(marker, 1)[0]
                if before:
                    chunks.append((time.monotonic() - started, self.mask(before)))
                return chunks
            # keep a possible partial marker in the buffer; emit the rest
            cut = buffer.rfind("\x1e")
            emit, buffer = (buffer, "") if cut < 0 else (buffer[:cut], buffer[cut:])
            if emit:
                chunks.append((time.monotonic() - started, self.mask(emit)))
        raise TimeoutError(f"no prompt after {STEP_TIMEOUT_S:g} s: {command}")

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def close(self) -> None:
        self._send("exit")
        os.waitpid(self.pid, 0)


def screen_text(chunks: list[str]) -> str:
    """What a terminal shows after these chunks: a live view redrawn in place (cursor up, erase
    line) leaves its last frame, not every frame."""
    lines: list[str] = [""]
    row = col = 0
    text = "".join(chunks)
    i = 0
    while i < len(text):
        if text[i] == "\x1b":
            m = _ANSI.match(text, i)
            if m:
                code = m.group(0)
                if code.endswith("A") and code.startswith("\x1b["):
                    row = max(0, row - int(code[2:-1] or 1))
                elif code in ("\x1b[2K", "\x1b[K", "\x1b[0K"):
                    lines[row] = lines[row][:col] if code != "\x1b[2K" else ""
                elif code in ("\x1b[J", "\x1b[0J"):
                    del lines[row + 1 :]
                    lines[row] = lines[row][:col]
                i = m.end()
                continue
        ch = text[i]
        if ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        elif ch == "\r":
            col = 0
        elif ch >= " " or ch == "\t":
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
        i += 1
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def record(name: str, title: str, steps: list[Step], shell: Shell) -> None:
    events: list[tuple[float, str]] = []
    clock = 0.0
    transcript = [
        f"# {title}",
        "",
        f"Recorded by `docs/tutorials/record.py` ([cast]({name}.cast): "
        f"`asciinema play docs/tutorials/{name}.cast`).",
        "",
    ]
    for step in steps:
        events.append((clock, f"\x1b[2m# {step.why}\x1b[0m\r\n"))
        clock += 0.6
        shown = step.command.replace("\n", "\r\n> ")
        events.append((clock, "\x1b[1m$\x1b[0m "))
        for ch in shown:
            clock += TYPING_S
            events.append((clock, ch))
        events.append((clock, "\r\n"))
        last = 0.0
        chunks = shell.run_raw(step.command)
        for at, chunk in chunks:
            clock += min(at - last, IDLE_LIMIT_S)
            last = at
            events.append((clock, chunk.replace("\r\n", "\n").replace("\n", "\r\n")))
        clock += 0.8
        shell.secrets = _secrets(shell)
        transcript += [step.why, "", "```console", f"$ {step.command}"]
        out = screen_text([c for _, c in chunks])
        transcript += [out, "```", ""] if out else ["```", ""]
    header = {
        "version": 2,
        "width": WIDTH,
        "height": HEIGHT,
        "timestamp": int(time.time()),
        "title": title,
        "env": {"SHELL": "/bin/bash", "TERM": "xterm-256color"},
    }
    # Masked again at the end: `dev up` prints before the password file can be read.
    events = [(t, shell.mask(d)) for t, d in events]
    transcript = [shell.mask(line) for line in transcript]
    lines = [json.dumps(header)] + [json.dumps([round(t, 3), "o", d]) for t, d in events]
    (HERE / f"{name}.cast").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (HERE / f"{name}.md").write_text("\n".join(transcript).rstrip() + "\n", encoding="utf-8")
    print(f"wrote docs/tutorials/{name}.cast and {name}.md ({len(events)} events, {clock:.0f} s)")


_SHELL_DIR: Path | None = None


def _secrets(shell: Shell) -> list[str]:
    """The values of credentials.env that must never be shown (the password)."""
    assert _SHELL_DIR is not None
    env = _SHELL_DIR / ".harperbq" / "dev" / "credentials.env"
    found = []
    for line in env.read_text().splitlines() if env.exists() else []:
        key, _, value = line.partition("=")
        if "PASSWORD" in key and value.strip("'\""):
            found.append(value.strip("'\""))
    return found


def main() -> int:
    global _SHELL_DIR
    # Letters and digits only: Harper's installer refuses a rootPath with some punctuation
    # (seen with mkdtemp's random suffix).
    work = Path(tempfile.gettempdir()) / f"harperbqtutorial{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    _SHELL_DIR = work
    dev = Path(os.environ.get("HARPERBQ_DEV_DIR", REPO / ".harperbq"))
    install = dev / "harper-install"
    if install.exists():  # reuse the pinned Harper install instead of a second npm install
        (work / ".harperbq").mkdir()
        (work / ".harperbq" / "harper-install").symlink_to(install)
    venv_bin = REPO / ".venv" / "bin"
    env = {
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", str(work)),
        "TERM": "xterm-256color",
        "COLUMNS": str(WIDTH),
        "LINES": str(HEIGHT),
        "HARPERBQ_DEV_DIR": str(work / ".harperbq"),
        "PYTHONPATH": str(REPO / "src"),  # this checkout's code, whatever the venv points at
        "LANG": "C.UTF-8",
    }
    shell = Shell(work, env)
    try:
        for name, (title, steps) in TUTORIALS.items():
            record(name, title, steps, shell)
    finally:
        subprocess.run(
            [str(venv_bin / "harperbq"), "dev", "down"],
            cwd=work,
            env=env,
            capture_output=True,
            check=False,
        )
        shell.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
