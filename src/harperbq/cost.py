"""What the sync's reads cost at BigQuery's on-demand prices: one place for the arithmetic.

Why estimated here: BigQuery reports bytes (`total_bytes_billed` per query job,
`estimated_total_bytes_scanned` per Storage Read session), not dollars; the prices are the
public list prices (https://cloud.google.com/bigquery/pricing#on_demand_pricing and
#data_extraction_pricing) and can be set per configuration for negotiated rates or another
currency. Capacity (editions) pricing bills slot time instead: there the figure is only the
on-demand equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass

TIB = 1024**4
QUERY_USD_PER_TIB = 6.25
STORAGE_READ_USD_PER_TIB = 1.10


@dataclass(frozen=True)
class Prices:
    query_per_tib: float = QUERY_USD_PER_TIB
    storage_read_per_tib: float = STORAGE_READ_USD_PER_TIB

    def dollars(self, query_bytes: int, storage_bytes: int = 0) -> float:
        """Estimated cost of `query_bytes` billed by queries and `storage_bytes` scanned by the
        Storage Read API."""
        return (query_bytes * self.query_per_tib + storage_bytes * self.storage_read_per_tib) / TIB


def spent(query_bytes: int, storage_bytes: int, prices: Prices) -> dict[str, float | int]:
    """The figures shown by `sync status`, `/status` and the demo, in one shape."""
    return {
        "bytes_billed": query_bytes,
        "storage_bytes_scanned": storage_bytes,
        "estimated_cost_usd": prices.dollars(query_bytes, storage_bytes),
    }


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"  # pragma: no cover (loop always returns)
