"""The local BigQuery API surface: bqemulator (pinned), with DuckDB's spatial extension offline."""

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from harperbq.devstack import DevStackError, processes
from harperbq.devstack.ports import free_port, port_in_use

DEFAULT_PROJECT = "harperbq-local"
STRICT_ENV = "HARPERBQ_BQ_STRICT"
"""`1` (the default) runs the strict local BigQuery (docs/strict-bigquery.md); `0` the plain
emulator, which bills nothing and accepts what real BigQuery refuses."""


def strict_default() -> bool:
    raw = os.environ.get(STRICT_ENV, "1").strip().lower()
    if raw in ("1", "true", "yes", "on", ""):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise DevStackError(
        f"{STRICT_ENV}={raw!r} is neither 1 nor 0: set it to 1 (strict) or 0 (plain)"
    )


@dataclass
class Emulator:
    host: str
    rest_port: int
    grpc_port: int
    base: Path
    project: str = DEFAULT_PROJECT
    pid: int | None = None
    strict: bool = field(default_factory=strict_default)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.base / "emulator.log"

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["base"] = str(self.base)
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "Emulator":
        fields = dict(data)
        fields["base"] = Path(str(fields["base"]))
        return cls(**fields)  # type: ignore[arg-type]


def new_emulator(base: Path, host: str = "127.0.0.1", project: str = DEFAULT_PROJECT) -> Emulator:
    taken: set[int] = set()
    return Emulator(host, free_port(host, taken), free_port(host, taken), base, project)


def ensure_spatial_extension() -> None:
    """The emulator loads DuckDB's spatial extension at start and cannot download it offline:
    install it from the pinned wheel's bundled file (idempotent)."""
    try:
        import duckdb
        import duckdb_extension_spatial
    except ImportError as exc:
        raise DevStackError(
            f"the BigQuery emulator stack is not installed ({exc.name} missing): "
            "run `make test` or `pip install -e '.[dev]'`"
        ) from exc
    version = duckdb.__version__
    package_dir = Path(duckdb_extension_spatial.__file__).parent
    path = package_dir / "extensions" / f"v{version}" / "spatial.duckdb_extension"
    if not path.exists():
        raise DevStackError(
            f"spatial extension for duckdb {version} not found at {path}; the emulator stack "
            "must be installed with the exact pins of the dev extra (pip install -e '.[dev]')"
        )
    con = duckdb.connect()
    try:
        con.execute(f"INSTALL '{path}'")
    finally:
        con.close()


def is_ready(emulator: Emulator) -> bool:
    try:
        return httpx.get(f"{emulator.endpoint}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start(emulator: Emulator, timeout_s: float = 60.0, persistent: bool = False) -> int:
    """Start the emulator and wait for /healthz; on failure nothing is left running."""
    ensure_spatial_extension()
    for port in (emulator.rest_port, emulator.grpc_port):
        if port_in_use(emulator.host, port):
            raise DevStackError(
                f"port {emulator.host}:{port} is already in use, so the BigQuery emulator cannot "
                "start there. Stop whatever holds it (ss -ltnp) or run `harperbq dev down`."
            )
    emulator.base.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "harperbq.devstack.strict_bigquery" if emulator.strict else "bqemulator",
        "start",
        "--rest-host",
        emulator.host,
        "--rest-port",
        str(emulator.rest_port),
        "--grpc-host",
        emulator.host,
        "--grpc-port",
        str(emulator.grpc_port),
        "--project",
        emulator.project,
        "--log-level",
        "warning",
    ]
    if persistent:
        argv += ["--persistent", "--data-dir", str(emulator.base / "data")]
    env = dict(os.environ)
    pid = processes.spawn(argv, env, emulator.log_path, emulator.base)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_ready(emulator):
            emulator.pid = pid
            return pid
        if not processes.alive(pid):
            break
        time.sleep(0.2)
    processes.kill(pid)
    tail = processes.log_tail(emulator.log_path)
    raise DevStackError(
        f"BigQuery emulator did not answer on {emulator.endpoint} within {timeout_s:.0f} s; it "
        f"was stopped. Last log lines ({emulator.log_path}):\n{tail}"
    )


def stop(emulator: Emulator) -> None:
    if emulator.pid:
        processes.stop(emulator.pid)
