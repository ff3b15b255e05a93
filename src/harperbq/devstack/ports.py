"""Free-port selection. Harper binds with SO_REUSEPORT, so a clash is silent: check before use."""

import socket
import time


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port or the port cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        if probe.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bind:
        # As servers bind (SO_REUSEADDR): sockets in TIME_WAIT after a kill do not count.
        bind.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            bind.bind((host, port))
        except OSError:
            return True
    return False


def wait_free(host: str, ports: list[int], timeout_s: float) -> list[int]:
    """Wait until the ports are free (a killed server's listeners can outlive its pid briefly);
    returns those still in use at the deadline."""
    deadline = time.monotonic() + timeout_s
    busy = [p for p in ports if port_in_use(host, p)]
    while busy and time.monotonic() < deadline:
        time.sleep(0.1)
        busy = [p for p in busy if port_in_use(host, p)]
    return busy


def free_port(host: str = "127.0.0.1", avoid: set[int] | None = None) -> int:
    """A port the OS considers free on host, not in `avoid` (ports already promised this run)."""
    avoid = avoid or set()
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid and not port_in_use(host, port):
            avoid.add(port)
            return port
    raise RuntimeError(f"no free port found on {host}")
