"""The server's settings: `DIR/pen-server.toml`, overridden by `PEN_*` variables.

The file is checked against one typed model (`PenServerToml`, pydantic, extra="forbid"): a
section or key it does not name stops every command with one sentence naming the file, the
section, the key and the nearest known name; a wrong value with one sentence naming the key.
What the file leaves out keeps the defaults of the `Settings` dataclass."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from pen_server.clock import Clock

CONFIG_NAME = "pen-server.toml"
SECURITIES = ("starttls", "tls", "none")
LOG_FORMATS = ("text", "json")


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
class DeliverabilitySettings:
    """[deliverability]: the blocklist watch (deliverability.py)."""

    dnsbl_zones: list[str] = field(default_factory=list)  # "zone", or "domain:zone" for a domain list
    check_minutes: float = 60.0
    query_seconds: float = 5.0  # one question's whole time, retries included
    resolver: str = ""  # "address:port"; empty: the system's resolver
    sending_ips: list[str] = field(default_factory=list)  # empty: the relay host's addresses


@dataclass
class MetricsSettings:
    """[metrics]: GET /metrics (metrics.py)."""

    enabled: bool = True
    allow: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])


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
    log_format: str = "text"  # or "json": one object a line (serve.log_to)
    deliverability: DeliverabilitySettings = field(default_factory=DeliverabilitySettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

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


# -- reading values: each parser returns the value or raises ValueError with the end of a
# sentence that starts "The setting SECTION.KEY" -------------------------------------------------

def _as_whole(value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise ValueError(f"must be a whole number, not {value!r}") from None
    if value < minimum:
        raise ValueError(f"must be at least {minimum}")
    return value


def _as_number(value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, not {value!r}") from None


def _as_positive(value) -> float:
    number = _as_number(value)
    if not number > 0:
        raise ValueError("must be more than 0")
    return number


def _as_seconds(value) -> float:
    seconds = _as_number(value)
    if seconds < 1:
        raise ValueError("must be at least 1 second")
    return seconds


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("1", "true", "yes"):
        return True
    if str(value).strip().lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def _as_text(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text (in quotes), not {value!r}")
    return value


def _as_list(value) -> list:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"must be a list such as [\"a\", \"b\"], not {value!r}")
    return value


def _as_networks(value) -> list[str]:
    if not isinstance(value, str | list):
        raise ValueError("must be a list of addresses")
    for item in _as_list(value):
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise ValueError(f"holds {item!r}, which is not an IP address or network") from None
    return [str(item) for item in _as_list(value)]


def _as_addresses(value) -> list[str]:
    out = []
    for item in _as_list(value):
        try:
            out.append(str(ipaddress.ip_address(str(item).strip())))
        except ValueError:
            raise ValueError(f"holds {item!r}, which is not an IP address") from None
    return out


_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9])?)+")
DOMAIN_ZONE = "domain:"  # a blocklist zone that lists domains, not addresses


def _as_zones(value) -> list[str]:
    out = []
    for item in _as_list(value):
        text = str(item).strip().lower().rstrip(".") if isinstance(item, str) else ""
        zone = text.removeprefix(DOMAIN_ZONE)
        if not _HOST_NAME.fullmatch(zone) or len(zone) > 200:
            raise ValueError(f"holds {item!r}, which is not a DNS zone (write a zone such as \"zen.spamhaus.org\", "
                             f"or \"{DOMAIN_ZONE}dbl.spamhaus.org\" for a zone that lists domains)")
        out.append(text)
    return out


def host_port(text: str, default_port: int = 53) -> tuple[str, int]:
    """An `address:port` (`[v6]:port`, or an address alone) as (address, port); ValueError."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(text)
            port = int(rest[1:]) if rest[1:].isdigit() else -1
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = int(number) if number.isdigit() else -1
    address = ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(text)
    return str(address), port


def _as_resolver(value) -> str:
    try:
        host, port = host_port(_as_text(value))
    except ValueError:
        raise ValueError(f"must be a resolver's IP address and port such as \"127.0.0.1:53\", not {value!r}") from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _as_log_format(value) -> str:
    if value not in LOG_FORMATS:
        raise ValueError(f"must be \"text\" or \"json\", not {value!r}")
    return value


def _int(value, key: str, minimum: int = 0) -> int:
    return _sentence(_as_whole, key, value, minimum)


def _float(value, key: str) -> float:
    return _sentence(_as_number, key, value)


def _sentence(parse, key: str, *args):
    try:
        return parse(*args)
    except ValueError as exc:
        raise SettingsError(f"The setting {key} {exc}.") from None


def _whole(minimum: int):
    return BeforeValidator(lambda value: _as_whole(value, minimum))


# -- the file's model: every section and key that pen-server.toml may hold -----------------------
# Each key is None when the file leaves it out (the Settings dataclass above holds the defaults).

Whole0 = Annotated[int | None, _whole(0)]
Whole1 = Annotated[int | None, _whole(1)]
Whole10 = Annotated[int | None, _whole(10)]
Number = Annotated[float | None, BeforeValidator(_as_number)]
Positive = Annotated[float | None, BeforeValidator(_as_positive)]
Seconds = Annotated[float | None, BeforeValidator(_as_seconds)]
Flag = Annotated[bool | None, BeforeValidator(_as_bool)]
Text = Annotated[str | None, BeforeValidator(_as_text)]
Networks = Annotated[list[str] | None, BeforeValidator(_as_networks)]
Addresses = Annotated[list[str] | None, BeforeValidator(_as_addresses)]
Zones = Annotated[list[str] | None, BeforeValidator(_as_zones)]
Resolver = Annotated[str | None, BeforeValidator(_as_resolver)]
LogFormat = Annotated[str | None, BeforeValidator(_as_log_format)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class PenSection(_Section):
    name: Text = None
    """The PEN's name, in notifications and pages."""
    base_url: Text = None
    """The https:// address its links point to."""
    footer: Text = None
    """A line under every notification."""


class DatabaseSection(_Section):
    url: Text = None
    """SQLAlchemy URL; empty: SQLite, pen.db in the data folder."""


class LimitsSection(_Section):
    max_upload_bytes: Whole1 = None
    refresh_token_days: Whole1 = None
    access_token_seconds: Whole10 = None
    max_recipients: Whole1 = None
    send_messages_per_hour: Whole1 = None
    send_recipients_per_hour: Whole1 = None
    signin_free_failures: Whole1 = None
    address_free_failures: Whole1 = None
    account_free_failures: Whole1 = None
    hash_workers: Whole1 = None
    hash_queue: Whole0 = None
    signin_max_delay: Seconds = None
    address_max_delay: Seconds = None
    signin_forget_seconds: Seconds = None
    trusted_proxy: Text = None
    """The header a reverse proxy puts the client's address in; empty: none."""
    trusted_proxy_addresses: Networks = None
    max_json_bytes: Whole1 = None
    max_message_bytes: Whole1 = None
    max_connections: Whole1 = None
    max_event_streams: Whole1 = None
    head_timeout_seconds: Positive = None
    body_timeout_seconds: Positive = None
    handshake_timeout_seconds: Positive = None
    keepalive_seconds: Positive = None
    stream_check_seconds: Positive = None
    search_seconds: Positive = None
    """The time limit of one search (`PEN_SEARCH_SECONDS` overrides); docs/pen-api.md "Search"."""
    searches_per_user: Whole1 = None
    """How many of one user's searches run at once, across all of the server's processes."""


class SmtpSection(_Section):
    host: Text = None
    port: Whole1 = None
    security: Text = None
    """starttls, tls or none."""
    username: Text = None
    password: Text = None
    from_address: Text = None
    timeout: Number = None
    ca_file: Text = None


class DeliverySection(_Section):
    retry_base_seconds: Number = None
    retry_max_seconds: Number = None
    lease_seconds: Number = None
    max_attempts: Whole1 = None
    in_api: Flag = None
    """Whether `pen-server run` delivers too (false: only `pen-server worker` does)."""


class EventsSection(_Section):
    keep_hours: Positive = None


class LogSection(_Section):
    file: Text = None
    """The log file, relative to the data folder; standard error when left out."""
    format: LogFormat = None
    """text (one line each) or json (one object each)."""


class BouncesSection(_Section):
    domain: Text = None
    host: Text = None
    port: Whole0 = None


class StorageSection(_Section):
    url: Text = None
    endpoint: Text = None
    region: Text = None
    access_key_id: Text = None
    secret_access_key: Text = None
    secret_access_key_file: Text = None


class DeliverabilitySection(_Section):
    dnsbl_zones: Zones = None
    """Blocklist zones asked about each sending address; "domain:ZONE" is asked about the sending domain."""
    check_minutes: Positive = None
    query_seconds: Positive = None
    """How long one question may take, retries included, before it counts as not answered."""
    resolver: Resolver = None
    """The DNS resolver to ask, "address:port"; the system's when left out."""
    sending_ips: Addresses = None
    """The public addresses the relay sends from; the relay host's addresses when left out."""


class MetricsSection(_Section):
    enabled: Flag = None
    allow: Networks = None
    """Addresses or networks that may read GET /metrics without a token."""


class PenServerToml(_Section):
    """pen-server.toml: every section it may hold. A key or section not named here stops
    the server with one sentence (extra="forbid")."""

    pen: PenSection = PenSection()
    database: DatabaseSection = DatabaseSection()
    limits: LimitsSection = LimitsSection()
    smtp: SmtpSection = SmtpSection()
    delivery: DeliverySection = DeliverySection()
    events: EventsSection = EventsSection()
    log: LogSection = LogSection()
    bounces: BouncesSection = BouncesSection()
    storage: StorageSection = StorageSection()
    deliverability: DeliverabilitySection = DeliverabilitySection()
    metrics: MetricsSection = MetricsSection()


def _section_keys(section: str) -> list[str]:
    return list(PenServerToml.model_fields[section].annotation.model_fields)  # type: ignore[union-attr]


def _nearest(word: str, names: list[str]) -> str | None:
    found = difflib.get_close_matches(word.lower(), names, n=1, cutoff=0.6)
    return found[0] if found else None


def _unknown(loc: tuple, value) -> tuple[str, str]:
    """What is wrong about one unknown name, and the hint that goes with it."""
    sections = list(PenServerToml.model_fields)
    if len(loc) == 1:
        key = str(loc[0])
        if isinstance(value, dict):
            near = _nearest(key, sections)
            return (f"there is no section [{key}]",
                    f"did you mean [{near}]?" if near else f"the sections are {', '.join(sections)}")
        candidates = {name: section for section in sections for name in _section_keys(section)}
        near = _nearest(key, list(candidates))
        return (f"the setting '{key}' stands outside any section",
                f"did you mean '{near}' in [{candidates[near]}]?" if near else
                f"every setting belongs in a section: {', '.join(sections)}")
    section, key = str(loc[0]), ".".join(str(part) for part in loc[1:])
    names = _section_keys(section)
    near = _nearest(key, names)
    return (f"[{section}] has no setting '{key}'",
            f"did you mean '{near}'?" if near else f"its settings are {', '.join(names)}")


def check_file(raw: dict, path: Path) -> PenServerToml:
    """The file's contents against the model, or SettingsError with one sentence: every
    unknown section or key (each with the nearest known name), else the first wrong value."""
    try:
        return PenServerToml.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
    unknown = [_unknown(e["loc"], e["input"]) for e in errors if e["type"] == "extra_forbidden"]
    if len(unknown) == 1:
        what, hint = unknown[0]
        raise SettingsError(f"In {path}, {what}; {hint}" + ("" if hint.endswith("?") else "."))
    if unknown:
        parts = [f"{what} ({hint})" for what, hint in unknown]
        raise SettingsError(f"In {path}, {', '.join(parts[:-1])} and {parts[-1]}.")
    first = errors[0]
    loc = first["loc"]
    if len(loc) == 1:
        raise SettingsError(f"The [{loc[0]}] part of {path} must be a table.")
    key = ".".join(str(part) for part in loc)
    if first["type"] == "value_error":
        raise SettingsError(f"The setting {key} {first['ctx']['error']}.")
    raise SettingsError(f"The setting {key} is not valid ({first['msg'].lower()}).")  # pragma: no cover


def _copy(into, section: BaseModel, rename: Mapping[str, str] | None = None) -> None:
    """The keys a section of the file gives, onto the settings (a key left out keeps its default)."""
    for name, value in section:
        if value is not None:
            setattr(into, (rename or {}).get(name, name), value)


def load_settings(data_dir: str | os.PathLike, env: Mapping[str, str] | None = None) -> Settings:
    """Read DIR/pen-server.toml, check it against PenServerToml, and apply the PEN_* variables."""
    env = os.environ if env is None else env
    data = Path(data_dir).expanduser().resolve()
    path = data / CONFIG_NAME
    if not path.is_file():
        raise SettingsError(f"There is no {CONFIG_NAME} in {data}; run 'pen-server init --data {data}' first.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path} is not valid TOML ({exc}).") from None
    file = check_file(raw, path)
    s = Settings(data_dir=data)
    _copy(s, file.pen)
    s.base_url = s.base_url.rstrip("/")
    s.database_url = file.database.url or f"sqlite:///{data / 'pen.db'}"
    _copy(s, file.limits)
    if env.get("PEN_SEARCH_SECONDS"):
        s.search_seconds = _sentence(_as_positive, "PEN_SEARCH_SECONDS", env["PEN_SEARCH_SECONDS"])
    for key in ("max_recipients", "send_messages_per_hour", "send_recipients_per_hour"):
        if env.get("PEN_" + key.upper()):
            setattr(s, key, _int(env["PEN_" + key.upper()], f"limits.{key}", 1))
    if s.send_recipients_per_hour < s.max_recipients:
        raise SettingsError(
            "The setting limits.send_recipients_per_hour must be at least limits.max_recipients, "
            "or a message to that many people could never be sent."
        )
    s.trusted_proxy = s.trusted_proxy.strip()
    _copy(s, file.delivery, {"in_api": "delivery_in_api"})
    if env.get("PEN_DELIVERY_IN_API"):
        s.delivery_in_api = _sentence(_as_bool, "delivery.in_api", env["PEN_DELIVERY_IN_API"])
    _copy(s, file.events, {"keep_hours": "events_keep_hours"})
    if file.log.file:
        s.log_file = (data / Path(file.log.file).expanduser()).resolve()
    s.log_format = file.log.format or s.log_format
    s.smtp = smtp_from(file.smtp.model_dump(exclude_none=True), env)
    s.bounce_domain = str(env.get("PEN_BOUNCE_DOMAIN") or file.bounces.domain or "").strip().lower()
    s.bounce_host = file.bounces.host or s.bounce_host
    s.bounce_port = _int(env.get("PEN_BOUNCE_PORT") or file.bounces.port or 0, "bounces.port")
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
    s.storage = storage_from(file.storage.model_dump(exclude_none=True), env, data)
    if s.storage.url and s.max_upload_bytes > S3_COPY_LIMIT:
        raise SettingsError("With attachments in S3 the setting limits.max_upload_bytes must be at most 5 GiB "
                            f"({S3_COPY_LIMIT} bytes): an upload is put in place by one server-side copy.")
    s.deliverability = DeliverabilitySettings()
    _copy(s.deliverability, file.deliverability)
    s.metrics = MetricsSettings()
    _copy(s.metrics, file.metrics)
    return s


def clock_from_environment(env: Mapping[str, str] | None = None) -> Clock:
    """PEN_CLOCK (an RFC 3339 time) starts the server's clock there, for reproducible demos and
    snapshot tests; PEN_CLOCK_RATE (with it, 1 by default) is how fast that clock runs. The
    snapshot tests' PEN runs it at 0.001, so the minute its messages show never depends on how
    long a loaded machine took to start it, and each message still gets a later time than the
    last. Read once, when pen-server starts (pen_server.cli.main), not when a module is imported."""
    env = os.environ if env is None else env
    raw = env.get("PEN_CLOCK")
    if not raw:
        return Clock()
    try:
        start = datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise SettingsError(f"PEN_CLOCK must be an RFC 3339 time such as 2020-01-15T09:30:00Z, not {raw!r}.") from None
    return Clock(start, _sentence(_as_positive, "PEN_CLOCK_RATE", env.get("PEN_CLOCK_RATE") or 1))


def password_cost_from_environment(env: Mapping[str, str] | None = None) -> str:
    """PEN_PASSWORD_COST: unset (or "standard") for every real PEN; "test" hashes passwords
    at argon2id's smallest cost (security.COSTS), for test suites only. Read once, when
    pen-server starts (pen_server.cli.main), like PEN_CLOCK."""
    env = os.environ if env is None else env
    raw = (env.get("PEN_PASSWORD_COST") or "").strip()
    if raw in ("", "standard", "test"):
        return raw or "standard"
    raise SettingsError(f"PEN_PASSWORD_COST must be test (for test suites only) or unset, not {raw!r}.")


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
