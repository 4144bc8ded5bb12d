"""The server's settings: `DIR/pen-server.toml`, overridden by `PEN_*` variables."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CONFIG_NAME = "pen-server.toml"
SECURITIES = ("starttls", "tls", "none")


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one sentence for a person."""


@dataclass
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    security: str = "none"
    username: str | None = None
    password: str | None = None
    from_address: str = "pen@localhost"
    timeout: float = 30.0
    ca_file: str | None = None


@dataclass
class StorageSettings:
    """Where attachment bytes live: the data folder's blobs/ (url empty) or an S3-compatible
    bucket, url "s3://bucket/prefix". The secret is never shown (repr, logs, errors)."""

    url: str = ""
    endpoint: str = ""  # e.g. "https://s3.eu-central-1.amazonaws.com" or "http://127.0.0.1:9000"
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)

    @property
    def bucket(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def prefix(self) -> str:
        return urlsplit(self.url).path.strip("/")


@dataclass
class Settings:
    data_dir: Path
    name: str = "PEN"
    base_url: str = "https://localhost:8443"
    footer: str = ""
    database_url: str = ""
    max_upload_bytes: int = 1 << 30
    access_token_seconds: int = 900
    refresh_token_days: int = 30
    invitation_days: int = 30
    # Sending: recipients of one message (to, cc and bcc together), and per user and hour.
    max_recipients: int = 100
    send_messages_per_hour: int = 200
    send_recipients_per_hour: int = 1000
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    # Delivery worker tuning: retry delays grow from base to max seconds.
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    max_attempts: int = 12
    worker_batch: int = 100
    worker_concurrency: int = 4
    lease_seconds: float = 30.0
    # Whether `pen-server run` delivers too (false: only `pen-server worker` processes do).
    delivery_in_api: bool = True
    # How long GET /events can replay what a reconnecting client missed.
    events_keep_hours: float = 24.0
    # Bounces: the domain of the envelope senders (default: that of from_address), and the
    # SMTP port on which `pen-server run` takes them (0: none; an MTA pipes them instead).
    bounce_domain: str = ""
    bounce_host: str = "127.0.0.1"
    bounce_port: int = 0
    # Sign-in limits (see docs/pen-api.md, "Sign-in limits").
    signin_free_failures: int = 5
    signin_max_delay: float = 60.0
    address_free_failures: int = 10
    address_max_delay: float = 900.0
    account_free_failures: int = 20
    signin_forget_seconds: float = 900.0
    # The header a reverse proxy puts the client's address in (e.g. "X-Forwarded-For"),
    # trusted only on connections from these addresses or networks; off when empty.
    trusted_proxy: str = ""
    trusted_proxy_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    hash_workers: int = 2
    hash_queue: int = 8
    # Hostile load: body sizes (bytes), connection timeouts (seconds), caps. docs/pen-api.md.
    max_json_bytes: int = 128 << 10
    max_message_bytes: int = 40 << 20
    head_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    handshake_timeout_seconds: float = 10.0
    keepalive_seconds: float = 20.0
    max_connections: int = 4000
    max_event_streams: int = 8
    stream_check_seconds: float = 5.0
    # Search (docs/pen-api.md, "Search"): its time limit, and how many of one user's run at once.
    search_seconds: float = 5.0
    searches_per_user: int = 2
    log_file: Path | None = None

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_NAME


def _int(value, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise SettingsError(f"The setting {key} must be a whole number, not {value!r}.") from None
    if value < minimum:
        raise SettingsError(f"The setting {key} must be at least {minimum}.")
    return value


def _float(value, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"The setting {key} must be a number, not {value!r}.") from None


def _positive(value, key: str) -> float:
    number = _float(value, key)
    if not number > 0:
        raise SettingsError(f"The setting {key} must be more than 0.")
    return number


def _bool(value, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("1", "true", "yes"):
        return True
    if str(value).strip().lower() in ("0", "false", "no"):
        return False
    raise SettingsError(f"The setting {key} must be true or false, not {value!r}.")


def _take(s: Settings, table: dict, section: str, parse, *names: str) -> None:
    """Each named setting from a table of pen-server.toml, checked by `parse`, or its default."""
    for name in names:
        setattr(s, name, parse(table.get(name, getattr(s, name)), f"{section}.{name}"))


def _at_least(minimum: int):
    return lambda value, key: _int(value, key, minimum)


def _load_limits(s: Settings, limits: dict, env: Mapping[str, str]) -> None:
    _take(s, limits, "limits", _at_least(1), "max_json_bytes", "max_message_bytes", "max_connections",
          "max_event_streams", "searches_per_user")
    s.search_seconds = _positive(env.get("PEN_SEARCH_SECONDS") or limits.get("search_seconds", s.search_seconds),
                                 "limits.search_seconds")
    _take(s, limits, "limits", _positive, "head_timeout_seconds", "body_timeout_seconds",
          "handshake_timeout_seconds", "keepalive_seconds", "stream_check_seconds")


def load_settings(data_dir: str | os.PathLike, env: Mapping[str, str] | None = None) -> Settings:
    """Read DIR/pen-server.toml and apply the PEN_* variables."""
    env = os.environ if env is None else env
    data = Path(data_dir).expanduser().resolve()
    path = data / CONFIG_NAME
    if not path.is_file():
        raise SettingsError(f"There is no {CONFIG_NAME} in {data}; run 'pen-server init --data {data}' first.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path} is not valid TOML ({exc}).") from None
    pen = raw.get("pen", {})
    limits = raw.get("limits", {})
    smtp_raw = raw.get("smtp", {})
    delivery = raw.get("delivery", {})
    log = raw.get("log", {})
    bounces = raw.get("bounces", {})
    storage = raw.get("storage", {})
    for section, value in (
        ("pen", pen),
        ("limits", limits),
        ("smtp", smtp_raw),
        ("delivery", delivery),
        ("bounces", bounces),
        ("log", log),
        ("storage", storage),
    ):
        if not isinstance(value, dict):
            raise SettingsError(f"The [{section}] part of {path} must be a table.")
    s = Settings(data_dir=data)
    s.name = str(pen.get("name", s.name))
    s.base_url = str(pen.get("base_url", s.base_url)).rstrip("/")
    s.footer = str(pen.get("footer", s.footer))
    s.database_url = str(raw.get("database", {}).get("url", "")) or f"sqlite:///{data / 'pen.db'}"
    _take(s, limits, "limits", _at_least(1), "max_upload_bytes", "refresh_token_days")
    _take(s, limits, "limits", _at_least(10), "access_token_seconds")
    for key in ("max_recipients", "send_messages_per_hour", "send_recipients_per_hour"):
        value = env.get("PEN_" + key.upper()) or limits.get(key, getattr(s, key))
        setattr(s, key, _int(value, f"limits.{key}", 1))
    if s.send_recipients_per_hour < s.max_recipients:
        raise SettingsError(
            "The setting limits.send_recipients_per_hour must be at least limits.max_recipients, "
            "or a message to that many people could never be sent."
        )
    _take(s, delivery, "delivery", _float, "retry_base_seconds", "retry_max_seconds", "lease_seconds")
    _take(s, delivery, "delivery", _at_least(1), "max_attempts")
    s.delivery_in_api = _bool(env.get("PEN_DELIVERY_IN_API") or delivery.get("in_api", True), "delivery.in_api")
    events = raw.get("events", {})
    if not isinstance(events, dict):
        raise SettingsError(f"The [events] part of {path} must be a table.")
    s.events_keep_hours = _positive(events.get("keep_hours", s.events_keep_hours), "events.keep_hours")
    _signin_limits(s, limits)
    _load_limits(s, limits, env)
    if log.get("file"):
        s.log_file = (data / Path(str(log["file"])).expanduser()).resolve()
    s.smtp = smtp_from(smtp_raw, env)
    s.bounce_domain = str(env.get("PEN_BOUNCE_DOMAIN") or bounces.get("domain", "")).strip().lower()
    s.bounce_host = str(bounces.get("host", s.bounce_host))
    s.bounce_port = _int(env.get("PEN_BOUNCE_PORT") or bounces.get("port", 0), "bounces.port")
    if s.bounce_domain and not re.fullmatch(
        r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", s.bounce_domain
    ):
        raise SettingsError(f"The bounce domain must be a host name, not {s.bounce_domain!r}.")
    if s.bounce_port > 65535:
        raise SettingsError("The bounce port must be between 1 and 65535, or 0 for none.")
    if env.get("PEN_DATABASE_URL"):
        s.database_url = env["PEN_DATABASE_URL"]
    if env.get("PEN_RETRY_BASE_SECONDS"):
        s.retry_base_seconds = _float(env["PEN_RETRY_BASE_SECONDS"], "PEN_RETRY_BASE_SECONDS")
    s.storage = storage_from(storage, env, data)
    if s.storage.url and s.max_upload_bytes > S3_COPY_LIMIT:
        raise SettingsError("With attachments in S3 the setting limits.max_upload_bytes must be at most 5 GiB "
                            f"({S3_COPY_LIMIT} bytes): an upload is put in place by one server-side copy.")
    return s


S3_COPY_LIMIT = 5 << 30  # CopyObject's limit: an upload is copied to its content address


def storage_from(raw: dict, env: Mapping[str, str], data: Path) -> StorageSettings:
    """[storage] with PEN_STORAGE_* over it. The secret may come from a file of its own
    (secret_access_key_file / PEN_STORAGE_SECRET_ACCESS_KEY_FILE, mode 0600), and where none
    is given the S3 library reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY itself."""
    st = StorageSettings()
    for name in ("url", "endpoint", "region", "access_key_id", "secret_access_key", "secret_access_key_file"):
        value = env.get("PEN_STORAGE_" + name.upper()) or raw.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise SettingsError(f"The setting storage.{name} must be text.")
        if name == "secret_access_key_file":
            st.secret_access_key = _secret_file(data / Path(value).expanduser())
        else:
            setattr(st, name, value.strip())
    if not st.url:
        return st
    parts = urlsplit(st.url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError(f"The setting storage.url must look like s3://bucket/prefix, not {st.url!r}.")
    if st.endpoint and urlsplit(st.endpoint).scheme not in ("http", "https"):
        raise SettingsError(f"The setting storage.endpoint must be an http:// or https:// address, "
                            f"not {st.endpoint!r}.")
    if bool(st.access_key_id) != bool(st.secret_access_key):
        raise SettingsError("The storage settings need both access_key_id and secret_access_key, or neither "
                            "(then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are read).")
    return st


def _secret_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise SettingsError(f"The secret key file {path} may be read by others; make it private "
                                f"(chmod 600 {path}).")
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"The secret key file {path} cannot be read ({exc.strerror}).") from None


def _seconds(value, key: str) -> float:
    seconds = _float(value, key)
    if seconds < 1:
        raise SettingsError(f"The setting {key} must be at least 1 second.")
    return seconds


def _signin_limits(s: Settings, limits: dict) -> None:
    _take(s, limits, "limits", _at_least(1), "signin_free_failures", "address_free_failures",
          "account_free_failures", "hash_workers")
    _take(s, limits, "limits", _at_least(0), "hash_queue")
    _take(s, limits, "limits", _seconds, "signin_max_delay", "address_max_delay", "signin_forget_seconds")
    s.trusted_proxy = str(limits.get("trusted_proxy", s.trusted_proxy)).strip()
    proxies = limits.get("trusted_proxy_addresses", s.trusted_proxy_addresses)
    if isinstance(proxies, str):
        proxies = [proxies]
    if not isinstance(proxies, list):
        raise SettingsError("The setting limits.trusted_proxy_addresses must be a list of addresses.")
    for item in proxies:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise SettingsError(
                f"The setting limits.trusted_proxy_addresses holds {item!r}, which is not an IP address or network."
            ) from None
    s.trusted_proxy_addresses = [str(item) for item in proxies]


def smtp_from(raw: dict, env: Mapping[str, str] | None = None) -> SmtpSettings:
    """SMTP settings from a [smtp] table (or the admin API's stored values) and PEN_SMTP_*."""
    env = os.environ if env is None else env
    smtp = SmtpSettings()
    smtp.host = str(raw.get("host") or smtp.host)
    smtp.port = _int(raw.get("port") or smtp.port, "smtp.port", 1)
    smtp.security = str(raw.get("security") or smtp.security)
    smtp.username = raw.get("username") or None
    smtp.password = raw.get("password") or None
    smtp.from_address = str(raw.get("from_address") or smtp.from_address)
    smtp.ca_file = raw.get("ca_file") or None
    if raw.get("timeout"):
        smtp.timeout = _float(raw["timeout"], "smtp.timeout")
    if env.get("PEN_SMTP_HOST"):
        smtp.host = env["PEN_SMTP_HOST"]
    if env.get("PEN_SMTP_PORT"):
        smtp.port = _int(env["PEN_SMTP_PORT"], "PEN_SMTP_PORT", 1)
    if env.get("PEN_SMTP_SECURITY"):
        smtp.security = env["PEN_SMTP_SECURITY"]
    if smtp.security not in SECURITIES:
        raise SettingsError(f"The SMTP security must be one of starttls, tls or none, not {smtp.security!r}.")
    if smtp.port > 65535:
        raise SettingsError("The SMTP port must be between 1 and 65535.")
    return smtp
