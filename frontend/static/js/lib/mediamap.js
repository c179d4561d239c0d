// Wall-clock time <-> position in an HLS stream whose fragments carry EXT-X-PROGRAM-DATE-TIME.
// Gaps between recordings exist on the wall clock but not in the media timeline.
export class MediaMap {
  /** @param {Array<{mediaStart:number, duration:number, wallStart:number}>} fragments  seconds, seconds, ms */
  constructor(fragments = []) {
    this.fragments = fragments.slice().sort((a, b) => a.mediaStart - b.mediaStart);
  }

  get length() { return this.fragments.length; }

  /** Wall-clock ms up to which the stream has media (0 when empty). */
  get coveredUntil() {
    const last = this.fragments.at(-1);
    return last ? last.wallStart + last.duration * 1000 : 0;
  }

  /** Media seconds for a wall-clock time; in a gap, the start of what follows; null past the end. */
  wallToMedia(ms) {
    for (const f of this.fragments) {
      if (ms < f.wallStart) return f.mediaStart;
      if (ms < f.wallStart + f.duration * 1000) return f.mediaStart + (ms - f.wallStart) / 1000;
    }
    return null;
  }

  /** Wall-clock ms for a media position, or null past the end. */
  mediaToWall(t) {
    for (const f of this.fragments) {
      if (t < f.mediaStart + f.duration + 0.001) return f.wallStart + Math.max(0, t - f.mediaStart) * 1000;
    }
    return null;
  }
}

/** Fragments from playable segments in order, for browsers playing HLS natively (no fragment list). */
export function mapFromSegments(segments) {
  const fragments = [];
  let at = 0;
  for (const s of segments) {
    fragments.push({ mediaStart: at, duration: s.duration, wallStart: Date.parse(s.start) });
    at += s.duration;
  }
  return new MediaMap(fragments);
}
