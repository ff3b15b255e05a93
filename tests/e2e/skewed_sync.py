"""Runs the harperbq CLI under libfaketime (`devstack.faketime`): `python skewed_sync.py ARGS`.

With `FAKETIME_DONT_FAKE_MONOTONIC=1`, `time.sleep` fails with EINVAL, so it is replaced by a
timed wait of the same length (which libfaketime leaves working) before the CLI starts.
"""

import faulthandler
import signal
import sys
import threading
import time
from typing import SupportsIndex


def _sleep(seconds: float | SupportsIndex) -> None:
    threading.Event().wait(float(seconds))


if __name__ == "__main__":
    # A test that finds a skewed process silent sends SIGUSR1 for its threads' stacks.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    time.sleep = _sleep
    from harperbq.cli.main import main

    sys.argv[0] = "harperbq"
    main()
