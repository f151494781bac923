"""Structured logs: text for people, or one JSON object per line for machines.

A JSON line always has ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``; a line about a chain, a block or a transaction adds ``chain``, ``height`` and ``tx``
(a transaction hash, hex), and any other field the caller passed with ``extra=`` (``round``,
``block``, ``code``, ``peer``, ...). Fields come from three places, the most specific winning:

- ``extra={"height": h, "tx": tx_hash}`` on the call itself;
- ``log_context(chain=...)``: for the code (and the asyncio tasks it starts) inside the block;
- ``bind(chain=..., node=...)``: for the whole process (a node process serves one chain).

This module is an edge utility: it imports nothing from the rest of consortia, so any layer may
log with ``extra=`` without depending on it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import IO, Any, TextIO

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_HANDLER_NAME = "consortia"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` or a context.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_FIRST = ("ts", "level", "logger", "message", "chain", "node", "height", "tx")

_process_fields: dict[str, object] = {}
_context: ContextVar[Mapping[str, object]] = ContextVar(
    "consortia_log_context", default=MappingProxyType({})
)


def bind(**fields: object) -> None:
    """Attach ``fields`` to every later log line of this process (``None`` removes one)."""
    for key, value in fields.items():
        if value is None:
            _process_fields.pop(key, None)
        else:
            _process_fields[key] = value


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Attach ``fields`` to the log lines of the code inside the block, including asyncio tasks
    it creates (they copy the context); restored on exit."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound and context fields onto each record that does not set them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (*_context.get().items(), *_process_fields.items()):
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


def _plain(value: object) -> object:
    """A JSON value for ``value``: bytes as hex, anything unknown as its ``str``."""
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured fields of ``record``: the fixed four, then chain/node/height/tx, then the
    rest of its extras in name order."""
    out: dict[str, object] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    for key in _FIRST[4:]:
        if key in extras:
            out[key] = _plain(extras.pop(key))
    for key in sorted(extras):
        out[key] = _plain(extras[key])
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``record_fields``; a logged exception adds ``exc``)."""

    def format(self, record: logging.LogRecord) -> str:
        out = record_fields(record)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time (test runners and tools swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(
    *, log_format: str = "text", level: str = "INFO", stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr) as text or
    JSON lines, replacing the handler an earlier call installed; returns the new handler.
    Raises ``ValueError`` naming the choices for an unknown format or level."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    if level.upper() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    formatter: logging.Formatter = (
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:  # ours from an earlier call; others' stay
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def fields_of(line: str) -> dict[str, Any]:
    """Parse one JSON log line (for tools and tests); ``ValueError`` if it is not one."""
    value = json.loads(line)
    if not isinstance(value, dict) or not {"ts", "level", "logger", "message"} <= value.keys():
        raise ValueError(f"not a consortia JSON log line: {line[:80]!r}")
    return value
