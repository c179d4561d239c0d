"""HTTP Range (RFC 9110 §14) for one byte range: a pure parser, unit-tested.

Django has no Range support. We serve single ranges, which is what <video>,
hls.js and download managers send; a multi-range request gets the whole file
(200), which the RFC allows.
"""
from __future__ import annotations

import re

# RFC 9110 DIGIT is ASCII 0-9 only. str.isdigit() and int() also take '²', '١' or
# full-width digits: int('²') raised (a 500) and int('１２') served a range the
# client never wrote.
_DIGITS = re.compile(r"[0-9]+")


class Unsatisfiable(Exception):
    """416: the range is syntactically fine but outside the file."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive byte positions, or None to send the whole file.

    None for: no header, a unit other than bytes, several ranges, or a
    malformed header (the RFC says to ignore those). Raises Unsatisfiable
    when no byte of the range is in the file.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    first_s, last_s = first_s.strip(), last_s.strip()
    if not dash or (first_s and not _DIGITS.fullmatch(first_s)) or (last_s and not _DIGITS.fullmatch(last_s)):
        return None
    if not first_s:  # suffix: the last N bytes
        if not last_s:
            return None
        length = int(last_s)
        if length == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - length), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # invalid: ignored, whole file
    if first >= size:
        raise Unsatisfiable()
    last = int(last_s) if last_s else size - 1
    return first, min(last, size - 1)


def content_range(first: int, last: int, size: int) -> str:
    return f"bytes {first}-{last}/{size}"
