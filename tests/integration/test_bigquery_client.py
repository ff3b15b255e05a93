"""Clients from config: service-account file, application default credentials, emulator."""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.oauth2 import service_account

from harperbq.bigquery.client import ClientSetupError, make_client, make_read_client
from harperbq.bigquery.read import run_query
from harperbq.bigquery.sql import Query
from harperbq.config import BigQueryConfig
from harperbq.devstack.emulator import Emulator
from harperbq.retry import RetryPolicy


def service_account_file(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "sa-project",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "sync@sa-project.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


def test_service_account_file(tmp_path: Path) -> None:
    client = make_client(
        BigQueryConfig.model_validate(
            {"credentials": str(service_account_file(tmp_path)), "location": "EU"}
        )
    )
    creds = client._credentials
    assert isinstance(creds, service_account.Credentials)
    assert creds.service_account_email == "sync@sa-project.iam.gserviceaccount.com"
    assert client.project == "sa-project"  # taken from the key when projectId is not set
    assert client.location == "EU"
    explicit = make_client(
        BigQueryConfig.model_validate(
            {"projectId": "other", "credentials": str(service_account_file(tmp_path))}
        )
    )
    assert explicit.project == "other"


def test_missing_credentials_explain_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(ClientSetupError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        make_client(BigQueryConfig.model_validate({"projectId": "p"}))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ClientSetupError, match=r"bad\.json"):
        make_client(BigQueryConfig.model_validate({"projectId": "p", "credentials": str(bad)}))


def test_emulator_client_is_anonymous_and_works(bq_emulator: Emulator) -> None:
    cfg = BigQueryConfig.model_validate(
        {"projectId": bq_emulator.project, "endpoint": bq_emulator.endpoint}
    )
    client = make_client(cfg)
    assert isinstance(client._credentials, AnonymousCredentials)
    result = run_query(client, Query("SELECT 1 AS one"), policy=RetryPolicy())
    assert result.rows() == [{"one": 1}]
    with pytest.raises(ClientSetupError, match="storageEndpoint"):
        make_read_client(cfg)
