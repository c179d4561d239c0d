// Sightline wire protocol v1, browser side (docs/protocol.md; agent/sightline_agent/protocol.py is the reference).
// Binary messages: a 24-byte big-endian header, then the payload.
//   0 magic 0x53 | 1 version 1 | 2 kind | 3 flags | 4 uint32 seq | 8 uint64 capture µs
//   16 uint16 chunk index | 18 uint16 chunk count | 20 uint32 frame length | 24 payload
export const MAGIC = 0x53;
export const VERSION = 1;
export const HEADER_SIZE = 24;

export const KIND_JPEG = 1;
export const KIND_H264 = 2;
export const KIND_AUDIO = 3;
export const KIND_METADATA = 4;

export const FLAG_KEYFRAME = 0x01;
export const FLAG_CHUNK_START = 0x02;
export const FLAG_CHUNK_END = 0x04;

// Close codes the browser acts on (sightline_agent.protocol.Close).
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  REPLACED: 4012,
  ACCESS_REVOKED: 4013,  // not fatal: the reconnect's welcome (or refusal) says what is left
  NOT_AUTHENTICATED: 4401,
  FORBIDDEN: 4403,
  NOT_FOUND: 4404,
  AUTH_RATE_LIMITED: 4429,
});

// Closes after which reconnecting cannot help: the user must log in again or has no access.
export const FATAL_CLOSES = new Set([CLOSE.NOT_AUTHENTICATED, CLOSE.FORBIDDEN, CLOSE.NOT_FOUND]);

export class ProtocolError extends Error {}

/** Parse one binary message (ArrayBuffer). The payload is a view, not a copy. */
export function parseFrame(buffer) {
  if (buffer.byteLength < HEADER_SIZE) throw new ProtocolError(`binary message of ${buffer.byteLength} bytes is shorter than the header`);
  const v = new DataView(buffer);
  if (v.getUint8(0) !== MAGIC) throw new ProtocolError(`bad magic byte 0x${v.getUint8(0).toString(16)}`);
  if (v.getUint8(1) !== VERSION) throw new ProtocolError(`header version ${v.getUint8(1)} is not supported`);
  const frame = {
    kind: v.getUint8(2),
    flags: v.getUint8(3),
    seq: v.getUint32(4),
    timestampUs: Number(v.getBigUint64(8)),
    chunkIndex: v.getUint16(16),
    chunkCount: v.getUint16(18),
    frameLength: v.getUint32(20),
    payload: new Uint8Array(buffer, HEADER_SIZE),
  };
  if (frame.chunkCount === 0 || frame.chunkIndex >= frame.chunkCount) throw new ProtocolError('impossible chunk index');
  frame.keyframe = (frame.flags & FLAG_KEYFRAME) !== 0;
  return frame;
}

/** Serialise one frame into messages of at most maxMessageBytes (chunked when larger). */
export function encodeFrame(kind, payload, seq, timestampUs, { keyframe = false, maxMessageBytes = 1024 * 1024 } = {}) {
  const bytes = payload instanceof Uint8Array ? payload : new Uint8Array(payload);
  const room = maxMessageBytes - HEADER_SIZE;
  if (room <= 0) throw new RangeError('maxMessageBytes must exceed the header size');
  const count = Math.max(1, Math.ceil(bytes.length / room));
  if (count > 0xffff) throw new RangeError('frame needs more than 65535 chunks');
  const messages = [];
  for (let index = 0; index < count; index++) {
    const part = bytes.subarray(index * room, (index + 1) * room);
    const out = new Uint8Array(HEADER_SIZE + part.length);
    const v = new DataView(out.buffer);
    let flags = keyframe ? FLAG_KEYFRAME : 0;
    if (index === 0) flags |= FLAG_CHUNK_START;
    if (index === count - 1) flags |= FLAG_CHUNK_END;
    v.setUint8(0, MAGIC);
    v.setUint8(1, VERSION);
    v.setUint8(2, kind);
    v.setUint8(3, flags);
    v.setUint32(4, seq >>> 0);
    v.setBigUint64(8, BigInt(Math.round(timestampUs)));
    v.setUint16(16, index);
    v.setUint16(18, count);
    v.setUint32(20, bytes.length);
    out.set(part, HEADER_SIZE);
    messages.push(out.buffer);
  }
  return messages;
}

/** Joins chunked frames (the server sends viewers whole frames, but be liberal). */
export class Reassembler {
  constructor() { this.reset(); }
  reset() { this.first = null; this.parts = []; this.size = 0; }
  feed(frame) {
    if (frame.chunkCount === 1) { this.reset(); return frame; }
    if (frame.chunkIndex === 0) { this.reset(); this.first = frame; }
    else if (!this.first || frame.seq !== this.first.seq || frame.chunkIndex !== this.parts.length) { this.reset(); return null; }
    this.parts.push(frame.payload);
    this.size += frame.payload.length;
    if (frame.chunkIndex < frame.chunkCount - 1) return null;
    const body = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) { body.set(p, at); at += p.length; }
    const whole = { ...this.first, chunkIndex: 0, chunkCount: 1, payload: body };
    this.reset();
    return whole;
  }
}

/** Capture time in µs since the Unix epoch, from the browser clock. */
export function nowUs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
