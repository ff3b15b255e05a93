"""`harperbq dev up|down|status`: reuse, stop by pid, and clear errors that leave nothing behind."""

import os
import socket
from pathlib import Path

import pytest

from harperbq.devstack import DevStackError, harper, processes, stack


def test_port_in_use_is_named_with_a_fix_and_nothing_runs(
    tmp_path: Path, harper_install: Path
) -> None:
    node = harper.new_node(tmp_path / "h")
    with socket.socket() as squatter:
        squatter.bind((node.host, node.ops_port))
        squatter.listen()
        with pytest.raises(DevStackError) as caught:
            harper.start(node, harper_install)
    message = str(caught.value)
    assert f"{node.host}:{node.ops_port} is already in use" in message
    assert "harperbq dev down" in message
    assert node.pid() is None


def test_missing_npm_is_named_with_a_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no node, no npm on PATH
    with pytest.raises(DevStackError, match=r"'node' was not found on PATH.*Install Node\.js"):
        harper.ensure_installed(tmp_path / "install")


def listens_on(pid: int, host: str, port: int) -> bool:
    """True if pid holds the listening TCP socket on host:port (from /proc, IPv4 loopback)."""
    packed = "".join(f"{int(b):02X}" for b in reversed(host.split("."))) + f":{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == packed and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    fds = Path(f"/proc/{pid}/fd")
    return any(os.readlink(fd) in inodes for fd in fds.iterdir())


def test_up_reuses_running_services_and_down_stops_exactly_them(
    tmp_path: Path, harper_install: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARPERBQ_HARPER_INSTALL", str(harper_install))
    first = stack.up(tmp_path)
    try:
        pids = (first.harper.pid(), first.emulator.pid)
        # The pid recorded is the serving process, not a launcher about to hand over.
        assert pids[0] and listens_on(pids[0], first.harper.host, first.harper.ops_port)
        again = stack.up(tmp_path)
        assert (again.harper.pid(), again.emulator.pid) == pids, harper.log_excerpt(first.harper)
        assert again.running() == {"harper": True, "emulator": True}
        assert again.harper.password == first.harper.password and len(first.harper.password) >= 24
        for path in (stack.state_path(tmp_path), stack.env_path(tmp_path)):
            assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        stopped = stack.down(tmp_path)
    assert len(stopped) == 2
    assert not any(processes.alive(pid) for pid in pids)
    assert stack.down(tmp_path) == []
