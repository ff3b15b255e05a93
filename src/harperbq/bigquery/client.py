"""Build the google-cloud-bigquery client: credentials, endpoint, location."""

from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery


def emulator_client(project: str, endpoint: str, **kwargs: Any) -> bigquery.Client:
    """A client for a local emulator endpoint: anonymous credentials, explicit API endpoint."""
    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoint),
        **kwargs,
    )
