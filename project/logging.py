"""Logging: one JSON object per line in production, via structlog's stdlib bridge.

Everything goes through the root logger's one handler: Django, Channels,
structlog loggers, uvicorn (whose own handlers are replaced) and Celery
(settings: CELERY_WORKER_HIJACK_ROOT_LOGGER = False).
"""
import logging
import re

import structlog

# C0 and C1 control characters and the Unicode line/paragraph separators: any of
# them in a client-supplied value (a device's error text, a path, a header) could
# start a forged log line or rewrite the terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def printable(value, limit: int | None = 200) -> str:
    """A client-supplied value made safe to log: at most `limit` characters, control characters
    escaped (a newline becomes the two characters \\n), so it stays on its log line."""
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    return _CONTROL.sub(_escape, text)


# Messages the ASGI server logs with a traceback for what is only a client's fault.
_CLIENT_FAULTS = ("Invalid UTF-8 sequence received from client",)


class OneLinePerRecord(logging.Filter):
    """Every record's message renders on one line, whoever logged it (our code, Django, uvicorn
    logging a client's path): the one place that holds for every client value that reaches a log.

    Tracebacks of real errors are kept; a client fault that the ASGI server logs with a
    traceback (an invalid UTF-8 text frame) becomes one warning line naming the fault.
    The JSON renderer escapes control characters itself (keeping the text exact), so
    escaping here is for the console format only.
    """

    def __init__(self, escape_controls: bool = True):
        super().__init__()
        self.escape_controls = escape_controls

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.msg, str) and record.msg.startswith(_CLIENT_FAULTS):
            error = record.exc_info[1]
            record.msg = f"{record.msg.rstrip()} ({error})" if error is not None else record.msg
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if not self.escape_controls:
            return True
        if isinstance(record.msg, dict):  # a structlog event dict
            record.msg = {k: printable(v, None) if isinstance(v, str) else v for k, v in record.msg.items()}
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        clean = printable(message.rstrip("\r\n"), None)
        if clean != record.msg or record.args:
            record.msg, record.args = clean, None
        return True


_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class DropPerConnectionLines:
    """Drops uvicorn's INFO lines for every WebSocket opened and closed ("connection open",
    '"WebSocket /ws/device/" [accepted]', "connection closed"): a flood of refused
    handshakes would otherwise write three lines per attempt. Sightline logs its own
    refusals (once per address over the limit) and device connections."""

    def filter(self, record) -> bool:
        if record.levelno != 20:  # INFO
            return True
        message = record.msg if isinstance(record.msg, str) else ""
        return not (message in ("connection open", "connection closed") or message.endswith("[accepted]"))


def build_logging_config(fmt: str, level: str) -> dict:
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
                "foreign_pre_chain": _SHARED,
            }
        },
        "filters": {
            "per_connection": {"()": DropPerConnectionLines},
            "one_line": {"()": OneLinePerRecord, "escape_controls": fmt != "json"},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured", "filters": ["one_line"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.channels.server": {"level": "WARNING"},
            "daphne": {"level": "WARNING"},
            # uvicorn installs its own plain-text handlers before it imports the
            # application; these replace them so its lines are structured too.
            "uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"handlers": [], "level": "INFO", "propagate": True, "filters": ["per_connection"]},
            "uvicorn.access": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        },
    }
