"""Node-wide resolution: Harper's connection and its secrets, BigQuery, workers, the control
plane and the retry policy, each checked with the key path a problem is reported at."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import (
    SecretStr,
)

from harperbq.config.models import (
    AUDIT_RETENTION_S,
    LEGACY_TABLE_FIELDS,
    MIN_AUDIT_RETENTION_S,
    BigQueryConfig,
    ControlConfig,
    GlobalSync,
    HarperConfig,
    RawConfig,
    RetryConfig,
    has_legacy,
)
from harperbq.config.problems import Checker
from harperbq.config.resolved import (
    STALL_TIMEOUT_MAX_S,
    STALL_TIMEOUT_MIN_S,
)
from harperbq.config.values import DAY, HARPER_NAME, LABEL, MAX_WORKERS, PROJECT_NAME, span


def _userinfo(url: str) -> bool:
    """True when the authority part of `url` carries `user[:password]@`."""
    authority = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return "@" in authority


def redact_url(url: str) -> str:
    """`url` safe to print: any `user:password@` in it replaced by `***@`."""
    if not _userinfo(url):
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    host = authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}***@{host}{slash}{tail}"


def _resolve_path(value: str | Path | None, base_dir: Path | None) -> Path | None:
    if value is None or value == "" or value == Path():
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _secret(
    given: SecretStr | None,
    file: Path | None,
    path: str,
    what: str,
    check: Checker,
    read_files: bool,
) -> SecretStr | None:
    """The secret the file sets, else the one its file holds (`passwordFile`, `tokenFile`)."""
    if given is not None or file is None or not read_files:
        return given
    try:
        return SecretStr(file.read_text().strip())
    except OSError as exc:
        check.add(
            path,
            f"cannot read the {what} file: {exc.strerror}",
            str(file),
            "fix the path or its permissions",
        )
        return None


def _file_check(check: Checker, path: str, file: Path | None) -> None:
    if file is not None and not file.is_file():
        check.add(path, f"file not found: {file}", str(file), "fix the path or create the file")


def resolve_harper(
    raw: RawConfig, base_dir: Path | None, check: Checker, read_files: bool
) -> HarperConfig:
    """The `harper` block resolved in place (see `HarperConfig`)."""
    ops = raw.operations
    h = raw.harper or HarperConfig.model_validate({})
    given = h.model_fields_set
    url = h.url
    if "url" not in given and ops is not None:
        url = f"http://{ops.host}:{ops.port}"
    if _userinfo(url):
        check.add(
            "harper.url" if "url" in given or ops is None else "operations.host",
            "the URL contains a user name or password; credentials never go in the URL "
            "(it is printed in logs, errors and status)",
            redact_url(url),
            "remove `user:password@` from the URL; set harper.username, and the password in "
            "HARPERBQ_HARPER_PASSWORD or harper.passwordFile",
        )
    elif not re.match(r"^https?://[^/\s]+", url):
        check.add(
            "harper.url",
            "not an http(s) URL",
            redact_url(url),
            'write it like "http://localhost:9925"',
        )
    peers = _resolve_peers(h.peers, check)
    username = h.username or (ops.username if ops else None)
    password = h.password or (ops.password if ops else None)
    password_file = _resolve_path(h.password_file, base_dir)
    password = _secret(
        password, password_file, "harper.passwordFile", "password", check, read_files
    )
    for key in ("database", "state_database"):
        value = getattr(h, key)
        if not HARPER_NAME.match(value):
            alias = HarperConfig.model_fields[key].alias or key
            check.add(f"harper.{alias}", "not a valid Harper database name", value)
    cert, key_file = _resolve_path(h.cert_file, base_dir), _resolve_path(h.key_file, base_dir)
    if (cert is None) != (key_file is None):
        check.add(
            "harper.certFile" if cert is None else "harper.keyFile",
            "a client certificate needs both certFile and keyFile",
            None,
            "set both or neither",
        )
    ca = _resolve_path(h.ca_file, base_dir)
    if read_files:
        for path, file in (
            ("harper.caFile", ca),
            ("harper.certFile", cert),
            ("harper.keyFile", key_file),
        ):
            _file_check(check, path, file)
    if h.connect_timeout_s <= 0 or h.timeout_s <= 0:
        check.add("harper.timeout", "timeouts must be above 0", h.timeout_s)
    if not STALL_TIMEOUT_MIN_S <= h.stall_timeout_s <= STALL_TIMEOUT_MAX_S:
        check.add(
            "harper.stallTimeout",
            f"must be between {STALL_TIMEOUT_MIN_S:g} s and {STALL_TIMEOUT_MAX_S:g} s",
            h.stall_timeout_s,
            'use e.g. "30s" (the default)',
        )
    if not STALL_TIMEOUT_MIN_S <= h.replication_timeout_s <= STALL_TIMEOUT_MAX_S:
        check.add(
            "harper.replicationTimeout",
            f"must be between {STALL_TIMEOUT_MIN_S:g} s and {STALL_TIMEOUT_MAX_S:g} s",
            h.replication_timeout_s,
            'use e.g. "60s" (the default): how long a data write may wait for its peers',
        )
    return h.model_copy(
        update={
            "url": url.rstrip("/"),
            "username": username,
            "password": password,
            "password_file": password_file,
            "ca_file": ca,
            "cert_file": cert,
            "key_file": key_file,
            "peers": peers,
            "encoding": _resolve_encoding(h.encoding, check),
        }
    )


def _resolve_encoding(
    name: Literal["auto", "json", "orjson", "cbor", "msgpack"], check: Checker
) -> Literal["auto", "json", "orjson", "cbor", "msgpack"]:
    """`harper.encoding`: a named encoding needs its library installed."""
    from harperbq.harper.encoding import resolve

    try:
        resolve(name)
    except ValueError as exc:
        check.add("harper.encoding", str(exc), name, 'use "auto" (the default) or "json"')
        return "json"
    return name


def _resolve_peers(values: Sequence[str], check: Checker) -> tuple[str, ...]:
    """`harper.peers`: http(s) URLs without credentials, each once."""
    out: list[str] = []
    for index, value in enumerate(values):
        key = f"harper.peers[{index}]"
        if _userinfo(value):
            check.add(
                key,
                "the URL contains a user name or password; every node uses harper.username "
                "and its password",
                redact_url(value),
                "remove `user:password@` from the URL",
            )
        elif not re.match(r"^https?://[^/\s]+", value):
            check.add(
                key,
                "not an http(s) URL",
                value,
                'write the Operations API URL of the node, like "https://node2:9925"',
            )
        elif value.rstrip("/") not in out:
            out.append(value.rstrip("/"))
    return tuple(out)


def resolve_bigquery(
    bq: BigQueryConfig, base_dir: Path | None, check: Checker, read_files: bool
) -> BigQueryConfig:
    if bq.tables is not None and has_legacy(bq):
        check.add(
            "bigquery.dataset",
            "both the legacy single-table keys (dataset/table/timestampColumn/columns) and "
            "`tables` are set",
            None,
            "move the legacy table into `tables` (with an id) or drop `tables`",
        )
    if bq.project_id is not None and not PROJECT_NAME.match(bq.project_id):
        check.add("bigquery.projectId", "not a valid project id", bq.project_id)
    if bq.endpoint is not None and bq.project_id is None:
        check.add(
            "bigquery.projectId",
            "an emulator endpoint needs an explicit projectId",
            None,
            "set bigquery.projectId (the emulator's project)",
        )
    endpoint = bq.endpoint
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        endpoint = f"http://{endpoint}"
    for key, value in bq.job_labels.items():
        if not LABEL.match(key) or not key or not LABEL.match(value):
            check.add(
                f"bigquery.jobLabels.{key}",
                "not a valid BigQuery label",
                value,
                "use lowercase letters, digits, '_' or '-', at most 63 characters",
            )
    credentials = _resolve_path(bq.credentials, base_dir)
    if read_files and endpoint is None:
        _file_check(check, "bigquery.credentials", credentials)
    return bq.model_copy(
        update={
            "credentials": credentials,
            "endpoint": endpoint.rstrip("/") if endpoint else None,
            # the tables are resolved into `Config.tables`: not kept here in their file form
            **dict.fromkeys((*LEGACY_TABLE_FIELDS, "tables")),
        }
    )


def _check_workers(sync: GlobalSync, check: Checker) -> None:
    """A fixed count within bounds, or `auto` with minWorkers <= maxWorkers within bounds."""
    if sync.workers != "auto":
        if not 1 <= sync.workers <= MAX_WORKERS:
            check.add(
                "sync.workers",
                f"must be between 1 and {MAX_WORKERS}",
                sync.workers,
                f'use a whole number from 1 to {MAX_WORKERS}, or "auto"',
            )
        return
    low, high = sync.min_workers, sync.max_workers
    for key, value in (("minWorkers", low), ("maxWorkers", high)):
        if not 1 <= value <= MAX_WORKERS:
            check.add(
                f"sync.{key}",
                f"must be between 1 and {MAX_WORKERS}",
                value,
                f"use a whole number from 1 to {MAX_WORKERS} (defaults: minWorkers 1, "
                "maxWorkers 4)",
            )
    if low > high:
        check.add(
            "sync.minWorkers",
            f"minWorkers ({low}) is above maxWorkers ({high})",
            low,
            "make minWorkers at most maxWorkers",
        )


def check_node(sync: GlobalSync, check: Checker) -> None:
    """What one key of the node-wide `sync` settings cannot say alone."""
    _check_workers(sync, check)
    if sync.heartbeat_interval_s <= 0:
        check.add("sync.heartbeatInterval", "must be above 0", sync.heartbeat_interval_s)
    elif sync.lease_s < 2 * sync.heartbeat_interval_s:
        check.add(
            "sync.lease",
            f"lease ({sync.lease_s:g} s) is shorter than two heartbeats "
            f"({sync.heartbeat_interval_s:g} s each): live workers would be declared dead",
            sync.lease_s,
            "make lease at least twice heartbeatInterval (defaults 30 s and 10 s)",
        )
    for key, value, limit in (
        ("lease", sync.lease_s, DAY),
        ("heartbeatInterval", sync.heartbeat_interval_s, 3600.0),
        ("joinGrace", sync.join_grace_s, 3600.0),
    ):
        check.at_most(f"sync.{key}", value, limit)
    if sync.audit_retention_s < MIN_AUDIT_RETENTION_S:
        check.add(
            "sync.auditRetention",
            f"must be at least {span(MIN_AUDIT_RETENTION_S)} ({MIN_AUDIT_RETENTION_S:g} s): "
            "audit entries (what `sync status` reports) would be deleted almost as written",
            sync.audit_retention_s,
            f'use a duration of at least "{span(MIN_AUDIT_RETENTION_S)}", '
            f'e.g. "{span(AUDIT_RETENTION_S)}" (the default)',
        )


def resolve_control(
    control: ControlConfig, base_dir: Path | None, check: Checker, read_files: bool
) -> ControlConfig:
    token_file = _resolve_path(control.token_file, base_dir)
    token = _secret(control.token, token_file, "control.tokenFile", "token", check, read_files)
    if token is not None and len(token.get_secret_value()) < 16:
        check.add("control.token", "too short (under 16 characters)", None, "use a long token")
    if control.enabled and token is None and not is_loopback(control.host):
        check.add(
            "control.host",
            "the control API would listen beyond loopback without a token: anyone who can "
            "reach it could stop the sync",
            control.host,
            "set control.token (or control.tokenFile, or HARPERBQ_CONTROL_TOKEN), or bind "
            "127.0.0.1",
        )
    return control.model_copy(update={"token": token})


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses: the only places served without a token."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_retry(retry: RetryConfig, check: Checker) -> None:
    """What one key cannot say alone: delays above 0, maxDelay at least initialDelay."""
    if retry.initial_delay_s <= 0:
        check.add("retry.initialDelay", "must be above 0", retry.initial_delay_s)
    if retry.max_delay_s < retry.initial_delay_s:
        check.add("retry.maxDelay", "must be at least initialDelay", retry.max_delay_s)
    if retry.total_timeout_s <= 0:
        check.add("retry.totalTimeout", "must be above 0", retry.total_timeout_s)
    for key, value, limit in (
        ("initialDelay", retry.initial_delay_s, 3600.0),
        ("maxDelay", retry.max_delay_s, DAY),
        ("totalTimeout", retry.total_timeout_s, 7 * DAY),
    ):
        check.at_most(f"retry.{key}", value, limit)
