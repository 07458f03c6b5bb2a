"""Logging: one configuration for every process, JSON or console, through structlog.

``logging_config`` is the settings' ``LOGGING``: every stdlib logger (Django, Celery, the
apps, granian's and uvicorn's access logs) goes through structlog's ``ProcessorFormatter``,
which renders one JSON object a line (``LOG_FORMAT=json``) or an aligned console line
(``console``). The apps log with the standard library and pass fields as ``extra``
(``logger.info("order won", extra={"order_id": ...})``); each becomes a key of the line.

A web request's lines carry its ``request_id`` (``core.client_address.EdgeHeaders`` sets
it, and the answer's ``X-Request-ID`` header says the same). An access-log line is the
server's own record, made into fields: granian writes it on the thread that answered, right
after the answer, so it carries that request's id too.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import structlog

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
"""The id of the request this thread or task is answering ("" outside one)."""

FORMATS = ("json", "console")
GRANIAN_ACCESS = "granian.access"
UVICORN_ACCESS = "uvicorn.access"
_UVICORN_FIELDS = ("client", "method", "path", "http_version", "status")


def _request_id(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    request_id = REQUEST_ID.get()
    if request_id:
        event.setdefault("request_id", request_id)
    return event


def _access_fields(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """An access-log record's arguments as fields of the line, not only inside its text
    (the formatter passes every record's arguments as ``positional_args``; only these keep them)."""
    args = event.pop("positional_args", None)
    record = event.get("_record")
    if record is None:
        return event
    if record.name == GRANIAN_ACCESS and isinstance(args, dict):
        event.update(args)
        event["event"] = "access"
    elif record.name == UVICORN_ACCESS and isinstance(args, tuple) and len(args) == len(_UVICORN_FIELDS):
        event.update(zip(_UVICORN_FIELDS, args, strict=True))
        event["event"] = "access"
    return event


def logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    """``LOGGING`` for ``level`` (``INFO``, ``WARNING`` ...) and ``fmt`` (one of ``FORMATS``).
    Raises ValueError for another format."""
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT={fmt!r} is not one of {', '.join(FORMATS)}.")
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        finish = [structlog.processors.format_exc_info, renderer]
    else:
        finish = [structlog.dev.ConsoleRenderer(colors=False)]
    pre_chain = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _access_fields,
        _request_id,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
        "foreign_pre_chain": pre_chain,
        "pass_foreign_args": True,
    }
    # The servers' access loggers: a line per request, kept apart from the root so that
    # their level is the server's switch (ACCESS_LOG), not LOG_LEVEL's.
    access = {"handlers": ["console"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # Django logs every 4xx answer as a warning; in a stampede that is a log line per
            # "sold out". Server errors are still logged.
            "django.request": {"level": "ERROR"},
            # A line per task received and succeeded, every beat tick: the services log what
            # matters (orders moved, repairs, invariant breaks) themselves.
            "celery.app.trace": {"level": "WARNING"},
            "celery.worker.strategy": {"level": "WARNING"},
            # A line per request of a rehearsal's crowd (operations.crowd) says nothing its report does not.
            "httpx": {"level": "WARNING"},
            GRANIAN_ACCESS: access,
            UVICORN_ACCESS: access,
            # The servers' own lines, through the same formatter instead of their own.
            "_granian": {"handlers": ["console"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["console"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["console"], "level": level, "propagate": False},
        },
    }


def log_level_valid(level: str) -> str:
    """``level`` upper-cased when the standard library knows it. Raises ValueError."""
    name = level.strip().upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(f"LOG_LEVEL={level!r} is not a level such as DEBUG, INFO, WARNING or ERROR.")
    return name
