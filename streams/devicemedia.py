"""What a connected device sends and can play, as its hello said (docs/protocol.md, section 5:
the viewer welcome's `media`). Kept in the device's presence hash for the connection's life,
so a viewer on any process learns whether there is audio to play and whether Talk is offered."""
from __future__ import annotations

import json

from streams import groups

FIELD = "media"


def media_of_hello(hello: dict) -> dict:
    """The part of a validated hello that viewers need."""
    return {"video": list(hello.get("codecs") or []), "audio": hello.get("audio"),
            "talkback": hello.get("talkback")}


def encode(media: dict) -> str:
    return json.dumps(media, separators=(",", ":"))


async def read(client, device_id) -> dict | None:
    """The connected device's media, or None when it is offline (or predates this field)."""
    raw = await client.hget(groups.presence_key(device_id), FIELD)
    if raw is None:
        return None
    try:
        media = json.loads(raw)
    except ValueError:
        return None
    return media if isinstance(media, dict) else None
