"""Build the google-cloud-bigquery clients from config: credentials, endpoint, location, labels,
and the `maximum_bytes_billed` guard that makes a runaway query fail instead of costing money.

Credentials: an emulator endpoint gets anonymous credentials; else `bigquery.credentials` (a
service-account key or any credentials file google-auth reads); else application default
credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, the metadata server).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import google.auth
import grpc
import requests
from google.api_core.client_info import ClientInfo
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import bigquery, bigquery_storage_v1
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
    BigQueryReadGrpcTransport,
)
from google.oauth2 import credentials as oauth2_credentials
from google.oauth2 import service_account

from harperbq import __version__
from harperbq.bigquery.errors import ClientSetupError as ClientSetupError
from harperbq.config import BigQueryConfig

SCOPES = (
    "https://www.googleapis.com/auth/bigquery",
    "https://www.googleapis.com/auth/cloud-platform",
)
USER_AGENT = f"harperbq/{__version__}"
DEFAULT_LABELS = {"app": "harperbq"}


def credentials_for(cfg: BigQueryConfig) -> tuple[Credentials, str | None]:
    """(credentials, the project they name if any) for the configured way of signing in."""
    if cfg.endpoint is not None:
        return AnonymousCredentials(), cfg.project_id  # type: ignore[no-untyped-call]
    if cfg.credentials is not None:
        return _from_file(cfg.credentials)
    try:
        creds, project = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        raise ClientSetupError(
            f"no usable Google credentials in the environment: {exc}. Set "
            "bigquery.credentials to a service-account key file, set "
            "GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`."
        ) from exc
    return creds, project


def _from_file(path: Path) -> tuple[Credentials, str | None]:
    """A service-account key or an authorized-user file (other kinds go through ADC)."""
    try:
        info = json.loads(path.read_text())
        kind = info.get("type")
        if kind == "service_account":
            creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=SCOPES
            )
            return creds, info.get("project_id")
        if kind == "authorized_user":
            user = oauth2_credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
                info, scopes=SCOPES
            )
            return user, info.get("quota_project_id")
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ClientSetupError(
            f"cannot use the credentials file {path}: {exc}. Point bigquery.credentials at a "
            "service-account key (JSON) downloaded from the Cloud console."
        ) from exc
    raise ClientSetupError(
        f"the credentials file {path} is of type {kind!r}; bigquery.credentials takes a "
        "service-account key or an authorized-user file. For other kinds, unset it and point "
        "GOOGLE_APPLICATION_CREDENTIALS at the file instead."
    )


def _client_info() -> ClientInfo:
    return ClientInfo(user_agent=USER_AGENT)  # type: ignore[no-untyped-call]


def job_labels(cfg: BigQueryConfig) -> dict[str, str]:
    return {**DEFAULT_LABELS, **cfg.job_labels}


def make_client(cfg: BigQueryConfig, *, http: requests.Session | None = None) -> bigquery.Client:
    """The BigQuery API client. `http` replaces the transport (tests inject faults with it)."""
    creds, detected = credentials_for(cfg)
    project = cfg.project_id or detected
    if not project:
        raise ClientSetupError(
            "no BigQuery project: set bigquery.projectId (or HARPERBQ_BIGQUERY_PROJECT)"
        )
    labels = job_labels(cfg)
    query_config = bigquery.QueryJobConfig(labels=labels)
    if cfg.maximum_bytes_billed is not None:  # unset, the library would send the text "None"
        query_config.maximum_bytes_billed = cfg.maximum_bytes_billed
    options: dict[str, Any] = {}
    if cfg.endpoint is not None:
        options["client_options"] = ClientOptions(api_endpoint=cfg.endpoint)
    return bigquery.Client(
        project=project,
        credentials=creds,
        location=cfg.location,
        _http=http,
        client_info=_client_info(),
        default_query_job_config=query_config,
        default_load_job_config=bigquery.LoadJobConfig(labels=labels),
        **options,
    )


def make_read_client(cfg: BigQueryConfig) -> bigquery_storage_v1.BigQueryReadClient:
    """The Storage Read API client; for an emulator, an insecure gRPC channel to its endpoint."""
    info = _client_info()
    if cfg.endpoint is not None:
        if not cfg.storage_endpoint:
            raise ClientSetupError(
                "bigquery.endpoint is set (an emulator) but bigquery.storageEndpoint is not: "
                "set it to the emulator's gRPC host:port to use the Storage Read API"
            )
        channel = grpc.insecure_channel(
            cfg.storage_endpoint,
            options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)],
        )
        transport = BigQueryReadGrpcTransport(channel=channel)
        return bigquery_storage_v1.BigQueryReadClient(  # type: ignore[no-untyped-call]
            transport=transport, client_info=info
        )
    creds, _ = credentials_for(cfg)
    options = ClientOptions(api_endpoint=cfg.storage_endpoint) if cfg.storage_endpoint else None
    return bigquery_storage_v1.BigQueryReadClient(  # type: ignore[no-untyped-call]
        credentials=creds, client_info=info, client_options=options
    )


def emulator_client(project: str, endpoint: str, **kwargs: Any) -> bigquery.Client:
    """A client for a local emulator endpoint: anonymous credentials, explicit API endpoint."""
    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoint),
        **kwargs,
    )
