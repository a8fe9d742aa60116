"""Structured logs: one JSON object per line, and one access line per request.

The access line carries the request id (also returned to the client as `x-request-id`), the client
address, the token *name* (never its key), model, channel, status and latency. It is the one access
line: once this module owns logging, uvicorn's own access line (the same request, less what we
know) is switched off -- writing it cost about a tenth of a relayed request's CPU. Prompt text
never reaches a log: when a token has `log_content` on, the text goes to its usage row only.

`REQUEST_FIELDS` is a ContextVar holding the dict the access line is built from: the middleware
puts a fresh dict there per request and the relay adds model/channel to it. (A ContextVar is the
one module-level object here, and it is per-task state by construction, not shared.)
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

REQUEST_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("modelport_request", default=None)
ACCESS_LOGGER = "modelport.access"
_HANDLER_MARK = "_modelport_handler"
_STD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...extra fields}`; exceptions as one `exc` string."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(fmt: str, level: str = "INFO") -> None:
    """Attach one stderr handler to the "modelport" logger (once per process, whatever the
    number of apps). fmt: "json", "text", or "" to leave logging to the host application."""
    if not fmt:
        return
    root = logging.getLogger("modelport")
    if any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(name)s %(message)s")
    )
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    # uvicorn set its access logger's level before the app factory ran; above INFO it builds no
    # record at all (the protocol calls .info() on it per request)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def note(**fields: Any) -> None:
    """Add fields to the current request's access line (no-op outside a request)."""
    current = REQUEST_FIELDS.get()
    if current is not None:
        current.update(fields)


def access_line(
    logger: logging.Logger,
    fields: dict[str, Any],
    *,
    method: str,
    path: str,
    status: int,
    started: float,
    client: str = "",
) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    fields["client"] = client
    fields["method"] = method
    fields["path"] = path
    fields["status"] = status
    fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    logger.info("%s %s %d", method, path, status, extra=fields)
