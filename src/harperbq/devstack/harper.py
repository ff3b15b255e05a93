"""A local Harper node from npm: install (pinned), start on loopback, wait for it, stop."""

import fcntl
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from harperbq.devstack import DevStackError, processes
from harperbq.devstack.ports import free_port, port_in_use, wait_free

HARPER_VERSION = "4.7.29"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class HarperNode:
    """One Harper instance: where it listens, where its data lives, how to log in."""

    name: str
    host: str
    ops_port: int
    http_port: int
    base: Path
    username: str
    password: str
    replication_port: int | None = None
    secure: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.ops_port}"

    @property
    def root(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "harper.log"

    @property
    def replication_url(self) -> str | None:
        return f"ws://{self.host}:{self.replication_port}" if self.replication_port else None

    def pid(self) -> int | None:
        """Harper's own pid file is authoritative (a `restart` operation changes the pid)."""
        try:
            return int((self.root / "hdb.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["base"] = str(self.base)
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "HarperNode":
        fields = dict(data)
        fields["base"] = Path(str(fields["base"]))
        return cls(**fields)  # type: ignore[arg-type]


def new_node(
    base: Path,
    *,
    name: str = "local",
    host: str = "127.0.0.1",
    replication: bool = False,
    secure: bool = False,
    username: str = "harperbq_admin",
    password: str | None = None,
) -> HarperNode:
    """Describe a new node on free ports with a freshly generated password (never a default).

    Nodes of one cluster must share credentials: Harper replicates its user table.
    """
    taken: set[int] = set()
    return HarperNode(
        name=name,
        host=host,
        ops_port=free_port(host, taken),
        http_port=free_port(host, taken),
        replication_port=free_port(host, taken) if replication else None,
        base=base,
        username=username,
        password=password or secrets.token_urlsafe(24),
        secure=secure,
    )


def harper_binary(install_dir: Path) -> Path:
    return install_dir / "node_modules" / ".bin" / "harperdb"


def installed_version(install_dir: Path) -> str | None:
    try:
        pkg = install_dir / "node_modules" / "harperdb" / "package.json"
        return str(json.loads(pkg.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(install_dir: Path) -> Path:
    """Install the pinned Harper from npm into install_dir unless it is already there.

    A file lock makes concurrent callers (parallel test runs, `dev up`) install it once.
    """
    install_dir.mkdir(parents=True, exist_ok=True)
    with open(install_dir / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(install_dir) == HARPER_VERSION and harper_binary(install_dir).exists():
            return harper_binary(install_dir)
        for tool in ("node", "npm"):
            if shutil.which(tool) is None:
                raise DevStackError(
                    f"'{tool}' was not found on PATH; Harper is installed from npm and runs on "
                    "Node.js. Install Node.js 20+ with npm (Debian: apt-get install nodejs npm) "
                    "and run the command again."
                )
        cmd = [
            "npm",
            "install",
            "--prefix",
            str(install_dir),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"harperdb@{HARPER_VERSION}",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or installed_version(install_dir) != HARPER_VERSION:
            raise DevStackError(
                f"npm install of harperdb@{HARPER_VERSION} into {install_dir} failed "
                f"(exit {done.returncode}): {done.stderr.strip()[-800:]}\n"
                "Check that the npm registry is reachable (npm ping) and retry."
            )
    return harper_binary(install_dir)


def _environment(node: HarperNode) -> dict[str, str]:
    home = node.base / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if key in {"PATH", "LANG", "LC_ALL", "TZ", "NODE_OPTIONS"}
    }
    env.update(
        {
            # Harper keeps a boot file under $HOME: one HOME per instance or the second one fails.
            "HOME": str(home),
            "TC_AGREEMENT": "yes",
            "ROOTPATH": str(node.root),
            "HDB_ADMIN_USERNAME": node.username,
            "HDB_ADMIN_PASSWORD": node.password,
            "HTTP_PORT": f"{node.host}:{node.http_port}",
            "THREADS_COUNT": "1",
            "LOGGING_LEVEL": "warn",
            "LOGGING_STDSTREAMS": "false",
            "MQTT_NETWORK_PORT": "null",
            "MQTT_NETWORK_SECUREPORT": "null",
            "LOCALSTUDIO_ENABLED": "false",
        }
    )
    ops = f"{node.host}:{node.ops_port}"
    if node.secure:
        env["OPERATIONSAPI_NETWORK_SECUREPORT"] = ops
        env["OPERATIONSAPI_NETWORK_PORT"] = "null"
    else:
        env["OPERATIONSAPI_NETWORK_PORT"] = ops
    if node.replication_port:
        env["REPLICATION_HOSTNAME"] = node.host
        env["REPLICATION_URL"] = str(node.replication_url)
        env["REPLICATION_PORT"] = f"{node.host}:{node.replication_port}"
        env["REPLICATION_SECUREPORT"] = "null"
    else:
        env["REPLICATION_SECUREPORT"] = "null"
        env["REPLICATION_HOSTNAME"] = node.name
    return env


def _ping(node: HarperNode, timeout_s: float = 2.0) -> httpx.Response:
    return httpx.post(
        node.url,
        json={"operation": "describe_all"},
        auth=(node.username, node.password),
        timeout=timeout_s,
        verify=False,  # readiness probe only; the product client verifies TLS  # noqa: S501
    )


def is_ready(node: HarperNode) -> bool:
    """Ready means it answers with OUR credentials: a stranger on the same port would say 401."""
    try:
        return _ping(node).status_code == 200
    except httpx.HTTPError:
        return False


def start(node: HarperNode, install_dir: Path, timeout_s: float = 180.0) -> int:
    """Start node and wait until it answers; on failure nothing is left running."""
    binary = ensure_installed(install_dir)
    old = node.pid()
    if old and processes.alive(old):
        raise DevStackError(f"Harper '{node.name}' already runs (pid {old}) on {node.root}")
    ports = [node.ops_port, node.http_port] + (
        [node.replication_port] if node.replication_port else []
    )
    for port in wait_free(node.host, ports, 10.0):
        if port_in_use(node.host, port):
            raise DevStackError(
                f"port {node.host}:{port} is already in use, so Harper '{node.name}' cannot start "
                "there. Stop whatever holds it (ss -ltnp) or run `harperbq dev down` and retry."
            )
    node.base.mkdir(parents=True, exist_ok=True)
    launcher = processes.spawn([str(binary)], _environment(node), node.log_path, node.base)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        serving = _serving_pid(node, launcher) if is_ready(node) else None
        if serving:
            return serving
        if not processes.alive(launcher) and not processes.alive(node.pid()):
            break
        time.sleep(0.25)
    for pid in {launcher, node.pid() or launcher}:
        processes.kill(pid)
    tail = _ANSI.sub("", processes.log_tail(node.log_path))
    raise DevStackError(
        f"Harper '{node.name}' did not answer on {node.url} within {timeout_s:.0f} s; it was "
        f"stopped. Last log lines ({node.log_path}):\n{tail}"
    )


def _serving_pid(node: HarperNode, launcher: int) -> int | None:
    """The pid `pid()` will keep reporting once Harper answers, else None (poll again).

    Harper 4.7 run without a command writes its own pid to hdb.pid before it opens its ports,
    so at readiness hdb.pid names the process we spawned. Should a Harper ever hand over to a
    child, that child counts only once the launcher has exited: never return a pid that is
    about to be replaced.
    """
    pid = node.pid()
    if pid and processes.alive(pid) and (pid == launcher or not processes.alive(launcher)):
        return pid
    return None


def wait_ready(node: HarperNode, timeout_s: float) -> bool:
    """Poll is_ready for up to timeout_s: a loaded machine can take longer than one probe."""
    deadline = time.monotonic() + timeout_s
    while True:
        if is_ready(node):
            return True
        if time.monotonic() >= deadline or not processes.alive(node.pid()):
            return False
        time.sleep(0.25)


def log_excerpt(node: HarperNode, lines: int = 15) -> str:
    """The last lines of Harper's own log and of its stdout, to say why a node went away."""
    parts = []
    for path in (node.root / "log" / "hdb.log", node.log_path):
        tail = _ANSI.sub("", processes.log_tail(path, lines)).strip()
        parts.append(f"{path}:\n{tail or '(empty or missing)'}")
    return "\n".join(parts)


def stop(node: HarperNode) -> None:
    pid = node.pid()
    if pid:
        processes.stop(pid)


def kill(node: HarperNode) -> None:
    """SIGKILL, for crash tests; waits until the pid is gone so a restart can follow."""
    pid = node.pid()
    if pid:
        processes.kill(pid)
        # Harper leaves its pid file behind; if the pid is reused it would refuse to start.
        (node.root / "hdb.pid").unlink(missing_ok=True)


def connect_nodes(a: HarperNode, b: HarperNode, timeout_s: float = 60.0) -> None:
    """Join b to a's cluster (add_node on a) and wait until a reports the connection."""
    if not b.replication_url:
        raise DevStackError(f"node '{b.name}' was started without replication")
    body = {
        "operation": "add_node",
        "url": b.replication_url,
        "authorization": {"username": b.username, "password": b.password},
    }
    response = httpx.post(a.url, json=body, auth=(a.username, a.password), timeout=30)
    if response.status_code != 200:
        raise DevStackError(f"add_node {b.replication_url} on {a.url} failed: {response.text}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = httpx.post(
            a.url, json={"operation": "cluster_status"}, auth=(a.username, a.password), timeout=10
        ).json()
        for conn in status.get("connections", []):
            sockets = conn.get("database_sockets") or []
            if conn.get("url") == b.replication_url and any(s.get("connected") for s in sockets):
                return
        time.sleep(0.5)
    raise DevStackError(f"{a.name} did not connect to {b.name} within {timeout_s:.0f} s")
