"""Smoke: the real BigQuery client against the emulator, and FARM_FINGERPRINT parity."""

import farmhash
from google.cloud import bigquery


def signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def test_bigquery_round_trip(bq: bigquery.Client) -> None:
    dataset = bq.create_dataset("smoke", exists_ok=True)
    table = bigquery.Table(
        f"{dataset.project}.smoke.keys",
        schema=[bigquery.SchemaField("id", "STRING"), bigquery.SchemaField("n", "INT64")],
    )
    bq.create_table(table, exists_ok=True)
    rows = [{"id": f"key-{i}", "n": i} for i in range(200)]
    bq.load_table_from_json(rows, table).result()
    job = bq.query(
        "SELECT id, FARM_FINGERPRINT(id) AS fp FROM `smoke.keys` WHERE n >= @lo ORDER BY n",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("lo", "INT64", 150)]
        ),
    )
    result = [(row["id"], row["fp"]) for row in job.result()]
    assert len(result) == 50
    for key, fingerprint in result:
        assert fingerprint == signed64(farmhash.fingerprint64(key)), key
