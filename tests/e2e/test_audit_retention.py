"""`sync.auditRetention`: the service's own maintenance prunes the shared `SyncAudit` table.

Entries older than the retention go (whatever table wrote them, or none), younger ones stay; a
`--once` run prunes at its end, as a cron of such runs would otherwise never prune.
"""

import time
from collections.abc import Callable
from pathlib import Path

from google.cloud import bigquery
from tests.support import keyed_table, run_once

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.state import AUDIT_TABLE, AuditEntry, StateStore
from harperbq.times import MICROS, iso

WriteConfig = Callable[..., tuple[Path, Config]]
DAY = 86400.0


def test_a_run_prunes_audit_entries_older_than_the_retention(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    spec = keyed_table(bq, f"audit_{unique}", 200, partitions=2)
    tables = [{**spec, "id": "b", "targetTable": "B"}, {**spec, "id": "a", "targetTable": "A"}]
    _, cfg = write_config(tables, sync={"settle": "0s", "auditRetention": "1d"})
    assert cfg.sync.audit_retention_s == DAY
    state = StateStore(harper_client, cfg.harper.state_database)
    state.ensure()
    now = time.time()

    def entry(age_s: float, table_id: str | None, tag: str) -> AuditEntry:
        at = iso(int((now - age_s) * MICROS))
        return AuditEntry("skipped_row", table_id, tag, at=at, id=f"{at}-{tag}")

    old = [entry(2 * DAY, "a", "old-a"), entry(30 * DAY, "gone", "old-gone")]
    old.append(entry(DAY + 60, None, "old-none"))
    recent = [entry(DAY - 3600, "b", "recent-b"), entry(60, None, "recent-none")]
    harper_client.upsert(
        cfg.harper.state_database, AUDIT_TABLE, [e.to_record() for e in old + recent]
    )
    assert {e.id for e in state.recent_audit(limit=100)} == {e.id for e in old + recent}

    run_once(cfg, harper_client)

    left = {e.id for e in state.recent_audit(limit=1000)}
    assert not left & {e.id for e in old}
    assert {e.id for e in recent} <= left
