"""The PEN's effective settings: the TOML file, then what the administrator stored through
the API, then the PEN_SMTP_* variables (which win)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from pen_server.models import PenSetting
from pen_server.settings import Settings, SmtpSettings, smtp_from


@dataclass
class PenConf:
    name: str
    base_url: str
    footer: str
    smtp: SmtpSettings

    @property
    def host(self) -> str:
        """The host part of the base URL, used on the right of Message-IDs."""
        return urlsplit(self.base_url).hostname or "localhost"


def stored(session: Session) -> dict:
    return {row.key: row.value for row in session.query(PenSetting).all()}


def effective(session: Session, settings: Settings) -> PenConf:
    values = stored(session)
    smtp_raw = {
        "host": settings.smtp.host, "port": settings.smtp.port, "security": settings.smtp.security,
        "username": settings.smtp.username, "password": settings.smtp.password,
        "from_address": settings.smtp.from_address, "timeout": settings.smtp.timeout,
        "ca_file": settings.smtp.ca_file,
    }
    smtp_raw.update({k: v for k, v in (values.get("smtp") or {}).items() if v is not None})
    return PenConf(
        name=str(values.get("name") or settings.name),
        base_url=str(values.get("base_url") or settings.base_url).rstrip("/"),
        footer=str(values.get("footer") if values.get("footer") is not None else settings.footer),
        smtp=smtp_from(smtp_raw),
    )


def store(session: Session, key: str, value) -> None:
    row = session.get(PenSetting, key)
    if row is None:
        session.add(PenSetting(key=key, value=value))
    else:
        row.value = value
