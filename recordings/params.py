"""Input of the playback API, parsed and checked (pure; docs/playback.md, "Errors").

Everything a client sends is checked here before it reaches arithmetic or the
database, so bad input is a BadInput (HTTP 400 with a JSON error), never an
exception from deeper down: `0001-01-01T00:00:00` minus an hour overflowed,
`{"start": 1}` reached str.strip(), a deeply nested body blew the JSON parser's
recursion limit.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

# Recordings exist only between these (segments are placed on the server's
# receive clock when a camera's clock is far off), and datetimes well inside
# them leave room for the hour of arithmetic a default range does.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(3000, 1, 1, tzinfo=timezone.utc)
DEFAULT_RANGE = timedelta(hours=1)


class BadInput(ValueError):
    """The request is malformed; the message says how (sent to the client)."""


def parse_time(raw, name: str) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime; None if absent (missing, null or empty)."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise BadInput(f"{name} must be an ISO 8601 string, e.g. 2026-11-21T06:00:00Z")
    try:
        value = datetime.fromisoformat(raw.strip().replace(" ", "+"))  # '+' arrives as ' ' if unencoded
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except ValueError:
        raise BadInput(f"{name} is not an ISO 8601 time: {raw[:64]!r}") from None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise BadInput(f"{name} is out of range") from None
    if not EARLIEST <= value < LATEST:
        raise BadInput(f"{name} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
    return value


def time_range(params, max_seconds: float, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) from a mapping with optional "start"/"end"; default: the hour before end (or now)."""
    end = parse_time(params.get("end"), "end") or now
    start = parse_time(params.get("start"), "start") or end - DEFAULT_RANGE
    if end <= start:
        raise BadInput("end must be after start")
    if (end - start).total_seconds() > max_seconds:
        raise BadInput(f"range longer than {max_seconds:.0f} s")
    return start, end


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def json_object(body: bytes) -> dict:
    """A request body that must be a JSON object (empty body: {}). Strict JSON: no NaN/Infinity."""
    if not body:
        return {}
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise BadInput("the body is nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise BadInput(f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadInput("the body must be a JSON object")
    return value
