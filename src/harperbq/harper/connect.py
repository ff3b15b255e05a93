"""A Harper client from the `harper` block of the config (the one place that glue lives)."""

from collections.abc import Callable

from harperbq.config import HarperConfig
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import MissingCredentials as MissingCredentials
from harperbq.harper.transport import RequestEvent
from harperbq.logs import register_secret


def harper_client(
    cfg: HarperConfig,
    *,
    max_retries: int = 5,
    on_event: Callable[[RequestEvent], None] | None = None,
    timeout_s: float | None = None,
) -> HarperClient:
    """`max_retries` 0 for probes that must answer fast; `on_event` sees every request
    (metrics, --debug); `timeout_s` instead of `harper.timeout` for short reads."""
    if not cfg.username or cfg.password is None:
        raise MissingCredentials(
            "harper.username and harper.password (or operations.username/password, or the "
            "HARPER_PASSWORD environment variable) are required to reach Harper at " + cfg.url
        )
    password = cfg.password.get_secret_value()
    register_secret(password)
    verify: bool | str = str(cfg.ca_file) if cfg.ca_file else cfg.verify
    cert: tuple[str, str] | str | None = None
    if cfg.cert_file and cfg.key_file:
        cert = (str(cfg.cert_file), str(cfg.key_file))
    elif cfg.cert_file:
        cert = str(cfg.cert_file)
    return HarperClient(
        cfg.url,
        cfg.username,
        password,
        verify=verify,
        cert=cert,
        timeout_s=cfg.timeout_s if timeout_s is None else timeout_s,
        connect_timeout_s=cfg.connect_timeout_s,
        max_retries=max_retries,
        on_event=on_event,
        encoding=cfg.encoding,
    )
