"""Log lines for operators: ISO-8601 UTC text (default) or JSON lines, and never a token.

`configure` installs one handler on the root logger; uvicorn's loggers (its access
log included) propagate to it, so every line of the process has the same shape:

    2026-01-31T09:12:03.120Z INFO approvals.lifecycle request 3f2a... created: ...
    {"ts": "2026-01-31T09:12:03.120Z", "level": "INFO", "logger": "approvals.lifecycle",
     "message": "...", "request_id": "3f2a...", "tool": "...", "caller": "..."}

Whatever a line says, anything shaped like one of our tokens, and the value of a
`token=` query parameter (browsers' websockets pass the token that way), is
masked after the line is formatted, so neither a message nor an argument nor a
traceback can carry a secret into the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

# Ours are "so_" and 43 URL-safe characters; a shorter tail still looks like one.
_TOKEN = re.compile(r"so_[A-Za-z0-9_-]{8,}")
# A bearer header or a token query parameter, whatever the token looks like.
_TOKEN_PARAM = re.compile(r"((?:[?&;]|\b)(?:access_)?token=)[^&\s\"']+", re.IGNORECASE)
_BEARER = re.compile(r"(\bBearer\s+)[^\s\"',]+", re.IGNORECASE)
MASK = "[redacted]"

# Facts the lifecycle's lines carry (approvals/activity.py), as JSON keys.
FIELDS = ("request_id", "tool", "caller", "actor", "decision", "channel")


def scrub(text: str) -> str:
    """`text` with every token-like value masked."""
    text = _TOKEN_PARAM.sub(rf"\1{MASK}", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    return _TOKEN.sub(MASK, text)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """`<ISO-8601 UTC> <LEVEL> <logger> <message>`, masked."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and the lifecycle's facts."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, ensure_ascii=False, default=str))


def configure(level: str = "info", log_format: LogFormat = "text") -> None:
    """Send every logger's lines to stderr in `log_format` from `level` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers would otherwise keep handlers of their own and print twice.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
