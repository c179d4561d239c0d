"""HLS VOD playlist over a time range, pure (the view passes segment facts and URLs).

Each archived segment is one fragmented MP4: its first init_bytes are the
init section (#EXT-X-MAP with BYTERANGE) and the rest is one media segment
(#EXT-X-BYTERANGE). Every segment is a separate encode, so each gets its own
EXT-X-MAP and an #EXT-X-DISCONTINUITY before it; #EXT-X-PROGRAM-DATE-TIME
puts it on the wall clock so the portal's timeline shows real times and gaps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True, slots=True)
class PlaylistEntry:
    url: str
    start: datetime
    duration: float
    size: int
    init_bytes: int


def _pdt(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_playlist(entries: list[PlaylistEntry]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"]
    target = max((math.ceil(e.duration) for e in entries), default=1)
    lines += [f"#EXT-X-TARGETDURATION:{max(1, target)}", "#EXT-X-MEDIA-SEQUENCE:0"]
    for index, e in enumerate(entries):
        if index:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f'#EXT-X-MAP:URI="{e.url}",BYTERANGE="{e.init_bytes}@0"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(e.start)}")
        lines.append(f"#EXTINF:{e.duration:.3f},")
        lines.append(f"#EXT-X-BYTERANGE:{e.size - e.init_bytes}@{e.init_bytes}")
        lines.append(e.url)
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
