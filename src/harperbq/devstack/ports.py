"""Free-port selection. Harper binds with SO_REUSEPORT, so a clash is silent: check before use."""

import socket


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port or the port cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        if probe.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bind:
        try:
            bind.bind((host, port))
        except OSError:
            return True
    return False


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
