"""The server's log as JSON lines (`--log-format json` or `[log] format = "json"`): one object a
record, `{"time", "level", "logger", ...}`. A request and a delivery carry their fields
(`"event": "request"` with client, method, path, route, status and ms; `"event":
"delivery"` with the notification id, the recipient's domain, the status and the attempt),
passed as `extra={"fields": {...}}` by the code that logs them; any other record carries its
`message`. What the text log leaves out stays out here too: no token, password, query
string, recipient address or message content."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                     .replace("+00:00", "Z"),
                     "level": record.levelname.lower(), "logger": record.name}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
