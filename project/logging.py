"""Logging: one JSON object per line in production, via structlog's stdlib bridge.

Everything goes through the root logger's one handler: Django, Channels,
structlog loggers, uvicorn (whose own handlers are replaced) and Celery
(settings: CELERY_WORKER_HIJACK_ROOT_LOGGER = False).
"""
import structlog

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
        "filters": {"per_connection": {"()": DropPerConnectionLines}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
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
