"""BigQuery setup errors in a module that imports nothing heavy: the CLI catches them by type
without loading google-cloud-bigquery, pyarrow and grpc before a command needs them."""


class ClientSetupError(RuntimeError):
    """A BigQuery client cannot be built; the message says why and what to do."""
