// Live player: draws the frames of /ws/view/ on a canvas. JPEG is decoded with
// createImageBitmap (off the main thread in Chromium and Firefox); H.264 access units
// (Annex B) go through WebCodecs' VideoDecoder where the browser has it.
import { KIND_H264, KIND_JPEG, Reassembler, parseFrame } from './protocol.js';

export class LivePlayer {
  constructor(canvas, { onDraw = () => {}, onUnsupported = () => {} } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.onDraw = onDraw;
    this.onUnsupported = onUnsupported;
    this.reassembler = new Reassembler();
    this.framesDrawn = 0;
    this.localDrops = 0;       // frames skipped here because decoding lagged behind
    this.decodeErrors = 0;
    this.decoding = false;
    this.pending = null;
    this.h264 = null;
    this.lastSeq = null;
    this.meter = new RateMeter();
    this.decoder = null;       // 'createImageBitmap' | 'webcodecs' | 'unsupported', once a frame arrived
    this.clockOffsetMs = 0;    // server clock minus ours, when they disagree noticeably
  }

  /** Correct latency for a browser clock that is off: server_ts arrives with each stats message. */
  noteServerTime(serverTs) {
    if (!Number.isFinite(serverTs)) return;
    const offset = serverTs * 1000 - Date.now();
    this.clockOffsetMs = Math.abs(offset) > 250 ? offset : 0;  // below that it is transit time, not skew
  }

  /** Feed one binary WebSocket message. */
  handleBinary(buffer) {
    let frame;
    try { frame = this.reassembler.feed(parseFrame(buffer)); } catch { this.decodeErrors++; return; }
    if (!frame) return;
    this.meter.received(frame.payload.length);
    if (frame.kind === KIND_JPEG) { this.decoder = 'createImageBitmap'; this.queueJpeg(frame); }
    else if (frame.kind === KIND_H264) this.decodeH264(frame);
    // audio and metadata are not played live
  }

  queueJpeg(frame) {
    if (this.decoding) {
      if (this.pending) this.localDrops++;  // keep only the newest: live beats complete
      this.pending = frame;
      return;
    }
    this.decodeJpeg(frame);
  }

  async decodeJpeg(frame) {
    this.decoding = true;
    try {
      const bitmap = await createImageBitmap(new Blob([frame.payload], { type: 'image/jpeg' }));
      this.draw(bitmap, bitmap.width, bitmap.height, frame.timestampUs);
      bitmap.close();
    } catch {
      this.decodeErrors++;
    } finally {
      this.decoding = false;
    }
    const next = this.pending;
    this.pending = null;
    if (next) this.decodeJpeg(next);
  }

  decodeH264(frame) {
    if (!this.h264) {
      if (!H264Decoder.supported()) {
        this.decoder = 'unsupported';
        this.onUnsupported('This browser cannot decode live H.264 (no WebCodecs). Recordings still play.');
        this.h264 = { decode() {} };
        return;
      }
      this.h264 = new H264Decoder((videoFrame) => {
        this.draw(videoFrame, videoFrame.displayWidth, videoFrame.displayHeight, videoFrame.timestamp);
        videoFrame.close();
      }, () => { this.decodeErrors++; });
      this.decoder = 'webcodecs';
    }
    this.h264.decode(frame);
  }

  draw(source, width, height, timestampUs) {
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.ctx.drawImage(source, 0, 0, width, height);
    this.framesDrawn++;
    const latencyMs = Date.now() + this.clockOffsetMs - timestampUs / 1000;
    this.meter.drawn(latencyMs);
    this.onDraw({ framesDrawn: this.framesDrawn, latencyMs, width, height });
  }

  /** Mean luma (0..255) of the drawn frame, sampled on a small grid; used by tests and the UI. */
  meanBrightness() {
    const { width, height } = this.canvas;
    if (!width || !height) return 0;
    const data = this.ctx.getImageData(0, 0, width, height).data;
    let sum = 0, n = 0;
    const step = 4 * Math.max(1, Math.floor((width * height) / 4096));
    for (let i = 0; i < data.length; i += step) {
      sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      n++;
    }
    return n ? sum / n : 0;
  }

  close() { this.h264?.close?.(); }
}

/** fps, bitrate and latency over a sliding window, measured in this browser. */
export class RateMeter {
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    this.draws = [];
    this.bytes = [];
    this.lastLatencyMs = null;
  }
  received(n) { this.bytes.push([performance.now(), n]); this.trim(); }
  drawn(latencyMs) { this.draws.push(performance.now()); this.lastLatencyMs = latencyMs; this.trim(); }
  trim() {
    const cutoff = performance.now() - this.windowMs;
    while (this.draws.length && this.draws[0] < cutoff) this.draws.shift();
    while (this.bytes.length && this.bytes[0][0] < cutoff) this.bytes.shift();
  }
  get fps() { this.trim(); return this.draws.length / (this.windowMs / 1000); }
  get bitrateBps() { this.trim(); return this.bytes.reduce((s, [, n]) => s + n, 0) * 8 / (this.windowMs / 1000); }
}

export class H264Decoder {
  static supported() { return typeof VideoDecoder !== 'undefined'; }

  constructor(onFrame, onError) {
    this.onFrame = onFrame;
    this.onError = onError;
    this.decoder = null;
    this.waitingForKeyframe = true;
  }

  decode(frame) {
    if (this.waitingForKeyframe) {
      if (!frame.keyframe) return;  // a delta frame cannot start a decode
      const codec = avcCodecString(frame.payload);
      if (!codec) return;
      this.reset();
      // No "description": the decoder then expects Annex B with in-band SPS/PPS, as devices send it.
      this.decoder.configure({ codec, optimizeForLatency: true });
      this.waitingForKeyframe = false;
    }
    if (this.decoder.decodeQueueSize > 10) {  // behind: skip to the next keyframe
      this.waitingForKeyframe = true;
      return;
    }
    this.decoder.decode(new EncodedVideoChunk({
      type: frame.keyframe ? 'key' : 'delta', timestamp: frame.timestampUs, data: frame.payload,
    }));
  }

  reset() {
    this.close();
    this.decoder = new VideoDecoder({
      output: this.onFrame,
      error: (e) => { this.onError(e); this.waitingForKeyframe = true; },
    });
  }

  close() {
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
    this.decoder = null;
  }
}

/** "avc1.PPCCLL" from the first SPS NAL unit of an Annex B access unit, or null. */
export function avcCodecString(bytes) {
  for (let i = 0; i + 4 < bytes.length; i++) {
    if (bytes[i] === 0 && bytes[i + 1] === 0 && (bytes[i + 2] === 1 || (bytes[i + 2] === 0 && bytes[i + 3] === 1))) {
      const start = bytes[i + 2] === 1 ? i + 3 : i + 4;
      if ((bytes[start] & 0x1f) === 7 && start + 3 < bytes.length) {
        const hex = (b) => b.toString(16).padStart(2, '0');
        return `avc1.${hex(bytes[start + 1])}${hex(bytes[start + 2])}${hex(bytes[start + 3])}`;
      }
    }
  }
  return null;
}
