"""Where the local stack keeps its installs, data, credentials and pids (all git-ignored)."""

import os
from pathlib import Path


def dev_dir() -> Path:
    """Project-local state directory: `$HARPERBQ_DEV_DIR`, else `./.harperbq`."""
    return Path(os.environ.get("HARPERBQ_DEV_DIR", Path.cwd() / ".harperbq")).resolve()


def harper_install_dir() -> Path:
    """Shared npm prefix for Harper, so tests and `dev up` install it once."""
    override = os.environ.get("HARPERBQ_HARPER_INSTALL")
    return Path(override).resolve() if override else dev_dir() / "harper-install"


def write_private(path: Path, text: str) -> None:
    """Write a file readable only by its owner (created 0600, never world-readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
