"""A seeded generator of malformed Sightline messages (pure: no sockets).

Each connection is a Script: messages that should leave the socket open (odd but survivable:
wrong types in fields the server only logs or ignores, invalid command settings), then usually
one that must close it (bad JSON, NaN, wrong header fields, bad chunks, invalid UTF-8, oversized,
a flood). Sizes are relative to the limits the test server runs with.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from sightline_agent.protocol import FLAG_CHUNK_END, FLAG_CHUNK_START, FLAG_KEYFRAME, HEADER, MAGIC

MAX_MESSAGE_BYTES = 64 * 1024
MAX_FRAME_BYTES = 256 * 1024
WS_MAX_SIZE = 2 * MAX_MESSAGE_BYTES  # the server's default for these limits
TEXT_BURST = 35  # below the 40-message text burst, so survivable messages are not cut short by 4009
HELLO = json.dumps({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "agent": "fuzz"})


@dataclass
class Message:
    data: str | bytes
    text: bool  # a text frame (bytes here are sent raw as text: invalid UTF-8)
    malformed: bool = True


@dataclass
class Script:
    endpoint: str  # "device" or "viewer"
    messages: list[Message] = field(default_factory=list)
    expects_close: bool = True  # else the client closes with 1000 after the last message


def text(value, malformed=True) -> Message:
    return Message(value if isinstance(value, str) else json.dumps(value), True, malformed)


def header(rng, magic=MAGIC, version=1, kind=1, flags=FLAG_CHUNK_START | FLAG_CHUNK_END, index=0, count=1,
           length=None, payload=b"") -> bytes:
    length = len(payload) if length is None else length
    return HEADER.pack(magic, version, kind, flags, rng.getrandbits(32), rng.getrandbits(63), index, count, length) + payload


def weird_value(rng):
    return rng.choice([
        None, True, -1, 2**70, -(2**64), 1e308, -1e-320, "", "x" * rng.randint(1, 3000), "line\nbreak\r\x1b[31m\u2028",
        [], [1, [2, [3, {}]]], {"a": {"b": [None]}}, {"": ""}, "\u0000\ufffd", [0] * 200,
    ])


def deeply_nested(rng) -> str:
    depth = rng.randint(2_000, 30_000)
    return '{"type":"stats","x":' + "[" * depth + "]" * depth + "}"


def non_finite(rng, message_type) -> str:
    number = rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1E309"])
    where = rng.choice(['{"type":"%s","id":%s}', '{"type":"%s","x":[1,{"y":%s}]}', '{"type":"%s","settings":{"brightness":%s}}'])
    return where % (message_type, number)


def common_fatal_text(rng, message_type) -> Message:
    choice = rng.randrange(9)
    if choice == 0:
        return text(rng.choice(["nope", "{", '{"type":', "{'type':'ping'}", "\u0000", "}{", '{"type":"ping"}x']))
    if choice == 1:
        return text(rng.choice(["[]", "5", '"ping"', "null", "true", '[{"type":"ping"}]']))
    if choice == 2:
        return text({"type": weird_value(rng) if rng.random() < 0.5 else rng.choice(["launch", "PING", "hello "]), "id": 1})
    if choice == 3:
        return text(non_finite(rng, message_type))
    if choice == 4:
        return text(deeply_nested(rng))
    if choice == 5:  # above the 64 KiB text limit, read and refused (4006)
        return text({"type": message_type, "pad": "x" * rng.randint(MAX_MESSAGE_BYTES + 1, WS_MAX_SIZE - 100)})
    if choice == 6:  # above the WebSocket layer's limit (1009)
        return text({"type": message_type, "pad": "x" * rng.randint(WS_MAX_SIZE + 1, WS_MAX_SIZE + 50_000)})
    if choice == 7:  # invalid UTF-8 in a text frame (1007)
        return Message(b'{"type":"ping","id":"' + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88"]) + b'"}', True)
    return text(json.dumps({"type": message_type, "id": 1}).encode("utf-16").decode("latin-1"))


def device_fatal_binary(rng) -> list[Message]:
    payload = rng.randbytes(rng.randint(0, 300))
    choice = rng.randrange(14)
    bad = [
        lambda: rng.randbytes(rng.randint(0, 23)),
        lambda: header(rng, magic=rng.choice([0, 0x52, 0xFF]), payload=payload),
        lambda: header(rng, version=rng.choice([0, 2, 255]), payload=payload),
        lambda: header(rng, kind=rng.choice([0, 5, 255]), payload=payload),
        lambda: header(rng, flags=FLAG_CHUNK_START | FLAG_CHUNK_END | rng.choice([0x08, 0x80]), payload=payload),
        lambda: header(rng, index=rng.choice([0, 3]), count=rng.choice([0, 2]), flags=0, payload=payload),
        lambda: header(rng, flags=FLAG_KEYFRAME, payload=payload),
        lambda: header(rng, length=MAX_FRAME_BYTES + rng.randint(1, 10**6), payload=payload),
        lambda: header(rng, length=len(payload) + rng.randint(1, 99), payload=payload),
        lambda: header(rng, index=1, count=3, flags=0, length=900, payload=payload),
        lambda: rng.randbytes(rng.randint(24, 2000)),
        lambda: header(rng, payload=rng.randbytes(rng.randint(MAX_MESSAGE_BYTES, WS_MAX_SIZE - 100))),
        lambda: header(rng, payload=rng.randbytes(rng.randint(WS_MAX_SIZE + 1, WS_MAX_SIZE + 50_000))),
    ]
    if choice < len(bad):
        return [Message(bad[choice](), False)]
    # bad chunks: a valid start, then an out-of-order chunk, a second start, too many bytes, or text
    start = header(rng, flags=FLAG_CHUNK_START, index=0, count=3, length=300, payload=b"a" * 100)
    follow = rng.choice([
        Message(header(rng, flags=0, index=2, count=3, length=300, payload=b"b" * 100), False),
        Message(start, False),
        Message(header(rng, flags=0, index=1, count=3, length=300, payload=b"c" * 250), False),
        text({"type": "ping", "id": 1}),
    ])
    return [Message(start, False, malformed=False), follow]


def device_survivable(rng) -> Message:
    kind = rng.randrange(5)
    if kind == 0:
        return text({"type": "error", "message": weird_value(rng)})
    if kind == 1:
        return text({"type": "stats", **{f"k{n}": weird_value(rng) for n in range(rng.randint(0, 8))}})
    if kind == 2:
        return text({"type": "ack", "id": weird_value(rng), "ok": weird_value(rng), "applied": weird_value(rng)})
    if kind == 3:
        return text({"type": "pong", "id": weird_value(rng), "ts": weird_value(rng)})
    return text({"type": "ping", "id": weird_value(rng), "ts": weird_value(rng), "extra": weird_value(rng)})


def garbage_frame(rng) -> Message:
    """A frame whose header is right and whose payload is not what its kind says: the server relays
    payloads without decoding them, so this must change nothing but the viewers' bytes."""
    kind = rng.choice([1, 2, 3, 4])
    payload = rng.choice([b"", rng.randbytes(rng.randint(1, 2000)), b"{not json", b"\x00" * 999, "\u2028\n".encode()])
    flags = FLAG_CHUNK_START | FLAG_CHUNK_END | (FLAG_KEYFRAME if rng.random() < 0.5 else 0)
    return Message(header(rng, kind=kind, flags=flags, payload=payload), False)


def device_script(rng) -> Script:
    script = Script("device")
    if rng.random() < 0.15:  # wrong from the first message
        script.messages.append(rng.choice([
            Message(header(rng, payload=b"\xff\xd8"), False),
            text({"type": "ping", "id": 1}),
            text({"type": "hello", "protocol": rng.choice([0, 2, "1", None, 1.5]), "codecs": ["jpeg"]}),
            text({"type": "hello", "protocol": 1, "codecs": weird_value(rng)}),
            text({"type": "hello", "protocol": 1, "codecs": [{}]}),
            text({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "audio": {"codec": [], "rate": "x"}}),
            text({"type": "hello", "protocol": 1, "codecs": ["jpeg"], "fps": rng.choice([0, -1, 1e6, "10", True])}),
            common_fatal_text(rng, "hello"),
        ]))
        return script
    script.messages.append(text(HELLO, malformed=False))
    survivable = [device_survivable(rng) for _ in range(rng.randint(10, TEXT_BURST))]
    survivable += [garbage_frame(rng) for _ in range(rng.randint(0, 40))]
    rng.shuffle(survivable)
    script.messages += survivable
    roll = rng.random()
    if roll < 0.45:
        script.messages += device_fatal_binary(rng)
    elif roll < 0.80:
        script.messages.append(rng.choice([common_fatal_text(rng, "ping"), text(HELLO)]))
    elif roll < 0.88:  # a text flood (4009)
        script.messages += [text({"type": "ping", "id": n}, malformed=False) for n in range(60)]
    else:
        script.expects_close = False
    return script


INVALID_SETTINGS = [
    None, [], "x", 5, {}, {"brightness": "x"}, {"brightness": 1.5}, {"brightness": 500}, {"brightness": True},
    {"fps": 0}, {"fps": 10**30}, {"resolution": 5}, {"resolution": "big"}, {"resolution": "99999x1"},
    {"x_a": {"b": 1}}, {"x_a": [1]}, {"x_a": "y" * 300}, {"x_a": 2**60}, {"unknown": 1}, {"x_" + "a" * 40: 1},
    {f"x_k{n}": n for n in range(17)}, {"contrast": -1e300}, {"brightness": None},
]


def viewer_survivable(rng) -> Message:
    if rng.random() < 0.8:
        client_id = rng.choice(["c", 7, "id-" + "z" * 60, -3])
        return text({"type": "command", "id": client_id, "settings": rng.choice(INVALID_SETTINGS)})
    return text({"type": "pong", "id": weird_value(rng), "ts": weird_value(rng)})


def viewer_script(rng) -> Script:
    script = Script("viewer")
    script.messages += [viewer_survivable(rng) for _ in range(rng.randint(10, TEXT_BURST))]
    roll = rng.random()
    if roll < 0.15:
        size = rng.choice([rng.randint(1, 500), rng.randint(WS_MAX_SIZE + 1, WS_MAX_SIZE + 20_000)])
        script.messages.append(Message(rng.randbytes(size), False))
    elif roll < 0.35:
        script.messages.append(text({"type": "subscribe", "kinds": rng.choice([[{}], [[]], [1], [None], "jpeg", {"a": 1}, ["jpeg", 2]])}))
    elif roll < 0.50:
        script.messages.append(text({"type": "command", "id": rng.choice([{}, [], True, None, "x" * 65, 10**70, 1.5e300]),
                                     "settings": {"brightness": 1}}))
    elif roll < 0.85:
        script.messages.append(common_fatal_text(rng, rng.choice(["command", "subscribe", "ping", "hello"])))
    elif roll < 0.92:
        script.messages += [text({"type": "ping", "id": n}, malformed=False) for n in range(60)]
    else:
        script.expects_close = False
    return script
