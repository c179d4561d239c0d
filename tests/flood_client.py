"""An unauthenticated WebSocket upgrade flood, run as its own process so it does not share
the event loop (or the CPU time slice) of the sockets a test measures. Standard library only.

    python -m tests.flood_client --port 8000 --concurrent 500 --burst 200 --burst-seconds 10

Opens `concurrent` TCP connections, sends every one a token-less (or, with --guess-tokens,
a well-formed unknown token's) `GET /ws/device/` upgrade
at once, reads each status line; then for `burst-seconds` sends bursts of `burst` such
upgrades every `interval` seconds. Prints one JSON line: counts of each HTTP status,
connection errors, and timings.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import time

REQUEST = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sightline.v1\r\n{extra}\r\n"
)
TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def guessed_token_header() -> str:
    """A well-formed token nobody was issued: checking it needs the database."""
    pick = lambda n: "".join(TOKEN_ALPHABET[b % 62] for b in os.urandom(n))  # noqa: E731
    return f"Authorization: Bearer sl_{pick(8)}_{pick(43)}\r\n"


class Barrier:
    """Releases every upgrade at once, when all connections are open (or failed to open)."""

    def __init__(self, count: int):
        self.waiting = count
        self.event = asyncio.Event()

    def arrived(self) -> None:
        self.waiting -= 1
        if self.waiting <= 0:
            self.event.set()


GUESS_TOKENS = False
codes: collections.Counter = collections.Counter()  # close code of the server's first message


async def refusal_code(reader) -> str:
    """The code of the {"type":"error"} message a refused socket gets first (unmasked server frame)."""
    await reader.readuntil(b"\r\n\r\n")
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    try:
        return str(json.loads(await reader.readexactly(length)).get("code"))
    except ValueError:
        return "not_json"


async def one_upgrade(port: int, path: str, barrier: Barrier, statuses: collections.Counter) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError):
        statuses["connect_error"] += 1
        barrier.arrived()
        return
    barrier.arrived()
    try:
        await barrier.event.wait()
        key = base64.b64encode(os.urandom(16)).decode()
        extra = guessed_token_header() if GUESS_TOKENS else ""
        writer.write(REQUEST.format(path=path, port=port, key=key, extra=extra).encode())
        line = await asyncio.wait_for(reader.readline(), 20)
        parts = line.split()
        status = parts[1].decode() if len(parts) > 1 else "no_answer"
        statuses[status] += 1
        if status == "101":
            codes[await asyncio.wait_for(refusal_code(reader), 20)] += 1
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        statuses["error"] += 1
    finally:
        writer.close()


async def burst(port: int, path: str, count: int, statuses: collections.Counter) -> None:
    barrier = Barrier(count)
    await asyncio.gather(*(one_upgrade(port, path, barrier, statuses) for _ in range(count)))


async def main(args) -> dict:
    statuses: collections.Counter = collections.Counter()
    started = time.monotonic()
    await burst(args.port, args.path, args.concurrent, statuses)
    first_done = time.monotonic() - started
    bursts = 0
    burst_end = time.monotonic() + args.burst_seconds
    while time.monotonic() < burst_end:
        next_at = time.monotonic() + args.interval
        await burst(args.port, args.path, args.burst, statuses)
        bursts += 1
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return {"statuses": dict(statuses), "codes": dict(codes), "bursts": bursts, "first_seconds": round(first_done, 2),
            "total_seconds": round(time.monotonic() - started, 2), "upgrades": sum(statuses.values())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws/device/")
    parser.add_argument("--concurrent", type=int, default=500)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--burst-seconds", type=float, default=10)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--guess-tokens", action="store_true", help="well-formed unknown tokens instead of none")
    arguments = parser.parse_args()
    GUESS_TOKENS = arguments.guess_tokens
    print(json.dumps(asyncio.run(main(arguments))), flush=True)
