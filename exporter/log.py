"""Logging setup: one logfmt (or JSON) formatter with a fixed key order for every log line."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Keys every line may carry, in this order; any other extra key follows them alphabetically.
KEY_ORDER: tuple[str, ...] = (
    "ts",
    "level",
    "msg",
    "worker",
    "endpoint",
    "breaker",
    "duration_seconds",
    "status",
    "reason",
    "error",
)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "msg": record.getMessage(),
    }
    extras = {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES}
    for key in KEY_ORDER[3:]:
        if key in extras:
            fields[key] = extras.pop(key)
    for key in sorted(extras):
        fields[key] = extras[key]
    if record.exc_info and record.exc_info[1] is not None and "error" not in fields:
        fields["error"] = repr(record.exc_info[1])
    return fields


def _logfmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.3f}" if value < 1e15 else repr(value)
    else:
        text = str(value)
    if text == "" or any(char in text for char in ' "=\\') or not text.isprintable():
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        escaped = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in escaped)
        return f'"{escaped}"'
    return text


class LogfmtFormatter(logging.Formatter):
    """Render a record as ``ts=… level=… msg="…" worker=… …`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items())


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object per line, with the same keys as logfmt."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("logfmt", "json")


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Send every log record to standard error in the chosen format and level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp logs every served request at info; the exporter's own lines are enough.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
