"""The stall watchdog against a real Harper: a request that waits long while Harper still answers
the liveness probe is not a stall, however long past `stall_after_s` it waits.

The long request is made long by a slow link (the fault proxy holds it before forwarding), so the
test does not depend on this machine's speed. A Harper busy applying one huge upsert is not used:
measured here, Harper answers probes within 0.1 s for most of such an upsert but not at all for
about the last third of it, so one request longer than about twice `stall_after_s` reads as a
stall (docs/operations.md). The sync's upserts are chunked far below that.
"""

from __future__ import annotations

import threading
import time
import uuid

from tests.support import FaultProxy

from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.models import Attribute
from harperbq.harper.watchdog import StallWatchdog

STALL_S = 2.0
HOLD_S = 3 * STALL_S


def test_a_slow_request_is_not_a_stall_while_harper_answers(
    harper_node: HarperNode, proxy: FaultProxy
) -> None:
    db, table = f"wd_{uuid.uuid4().hex[:8]}", "Slow"
    user, password = harper_node.username, harper_node.password
    with HarperClient(proxy.url, user, password, timeout_s=60) as client:
        client.create_table(db, table, attributes=[Attribute("id", "String")])
        rows = [{"id": f"r{i}", "v": i} for i in range(100)]
        watchdog = StallWatchdog(client, STALL_S)
        ages: list[float] = []
        seen: list[object] = []
        done = threading.Event()
        proxy.plan.append(f"slow:{HOLD_S}")  # the next request (the upsert) waits on the link

        def upsert() -> None:
            try:
                client.upsert(db, table, rows)
            finally:
                done.set()

        writer = threading.Thread(target=upsert)
        watchdog.start()
        writer.start()
        try:
            while not done.wait(0.05):
                ages.append(watchdog.oldest_request_age_s())
                seen.append(watchdog.stall)
        finally:
            writer.join()
            watchdog.stop()
        try:
            assert max(ages) > STALL_S + 1  # the upsert waited well past the stall timeout
            assert proxy.seen.count("pass") >= 1  # the probes went through while it waited
            assert watchdog.stalls == 0 and all(s is None for s in seen), seen
            assert client.count_range(db, table, "id", "", "~") == len(rows)
        finally:
            client.drop_database(db, missing_ok=True)


def test_no_answer_to_the_request_nor_the_probe_is_a_stall(
    harper_node: HarperNode, proxy: FaultProxy
) -> None:
    """The counterpart on the same link: the probe held too, so the watchdog must see it."""
    user, password = harper_node.username, harper_node.password
    with HarperClient(proxy.url, user, password, timeout_s=60, max_retries=0) as client:
        counted = threading.Event()

        def count(_: object) -> None:
            time.sleep(0.3)  # slow consequences (metrics): the stall must not show before them
            counted.set()

        watchdog = StallWatchdog(client, STALL_S, on_stall=count)
        proxy.plan.extend([f"slow:{HOLD_S}"] * 20)  # the request and every probe meanwhile
        done = threading.Event()

        def ping() -> None:
            try:
                client.ping()
            finally:
                done.set()

        started = time.monotonic()
        watchdog.start()
        threading.Thread(target=ping, daemon=True).start()
        try:
            while watchdog.stall is None and not done.is_set():
                time.sleep(0.05)
            noticed = time.monotonic() - started
            # Whoever sees the stall sees it counted (status and the error metric agree).
            assert watchdog.stall is None or counted.is_set()
        finally:
            proxy.plan.clear()
            done.wait(2 * HOLD_S)
            watchdog.stop()
        assert watchdog.stalls == 1 and noticed < STALL_S + 1.5, noticed
