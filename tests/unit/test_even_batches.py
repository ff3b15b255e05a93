"""`even_batches`: Storage Read batches of any sizes become pages of exactly one chunk."""

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from harperbq.bigquery.read import even_batches


def _batches(sizes: list[int]) -> list[pa.RecordBatch]:
    out, start = [], 0
    for size in sizes:
        out.append(pa.record_batch({"n": pa.array(range(start, start + size), pa.int64())}))
        start += size
    return out


@given(st.lists(st.integers(0, 40), max_size=12), st.integers(1, 17))
def test_same_rows_in_order_in_pages_of_exactly_rows(sizes: list[int], rows: int) -> None:
    pages = list(even_batches(_batches(sizes), rows))
    values = [v for page in pages for v in page.column("n").to_pylist()]
    assert values == list(range(sum(sizes)))
    assert all(page.num_rows == rows for page in pages[:-1])
    assert all(0 < page.num_rows <= rows for page in pages)
    assert len(pages) == -(-sum(sizes) // rows)


def test_a_long_batch_is_sliced_without_copying() -> None:
    [batch] = _batches([10])
    first, second = list(even_batches([batch], 5))
    address = batch.column(0).buffers()[1].address
    # a slice shares the batch's buffer at an offset
    assert first.column(0).buffers()[1].address == address
    assert second.column(0).buffers()[1].address == address and second.column(0).offset == 5
