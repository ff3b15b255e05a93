"""The stall watchdog against a real Harper: a long upsert that Harper is busy applying is not a
stall (Harper still answers the probe), however long it takes past `stall_after_s`."""

from __future__ import annotations

import threading
import time
import uuid

from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.models import Attribute
from harperbq.harper.watchdog import StallWatchdog

STALL_S = 6.0


def test_long_but_progressing_upsert_is_not_a_stall(harper_node: HarperNode) -> None:
    db, table = f"wd_{uuid.uuid4().hex[:8]}", "Big"
    user, password = harper_node.username, harper_node.password
    with HarperClient(harper_node.url, user, password, timeout_s=120) as client:
        client.create_table(db, table, attributes=[Attribute("id", "String")])
        rows = [
            {"id": f"r{i:07d}", "v": "x" * 100, **{f"f{j}": i + j for j in range(8)}}
            for i in range(240_000)
        ]
        watchdog = StallWatchdog(client, STALL_S)
        ages: list[float] = []
        seen: list[object] = []
        done = threading.Event()

        def upsert() -> None:
            try:  # one request: Harper answers only once it applied every row
                client.upsert(db, table, rows, chunk_rows=len(rows))
            finally:
                done.set()

        writer = threading.Thread(target=upsert)
        watchdog.start()
        started = time.monotonic()
        writer.start()
        try:
            while not done.wait(0.1):
                ages.append(watchdog.oldest_request_age_s())
                seen.append(watchdog.stall)
        finally:
            writer.join()
            watchdog.stop()
        took = time.monotonic() - started
        try:
            assert max(ages) > STALL_S, f"the upsert took only {took:.1f} s: nothing was tested"
            assert watchdog.stalls == 0 and all(s is None for s in seen), seen
            assert client.count_range(db, table, "id", "", "~") == len(rows)
        finally:
            client.drop_database(db, missing_ok=True)
