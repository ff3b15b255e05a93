"""A strict local BigQuery: bqemulator with BigQuery's billing and restrictions layered on.

The emulator bills nothing and accepts what real BigQuery refuses, so tests could pass here
and fail (or cost a fortune) on GCP. `layer.install()` hooks our rules into the emulator's own
extension points (its route helpers, its gRPC read handler, its FastAPI app) in the emulator's
process; `python -m harperbq.devstack.strict_bigquery start ...` runs it. Dev/test tooling only:
the product never imports this package.
"""
