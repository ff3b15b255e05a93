"""harperbq: keep Harper tables in step with BigQuery; synthesize AIS traffic to test it."""

__version__ = "0.1.0"
