"""Everything that talks to BigQuery."""
