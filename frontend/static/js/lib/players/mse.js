// MSE player: fragmented MP4 over the viewer socket (docs/protocol.md "MSE mode") into a
// <video> through MediaSource, or ManagedMediaSource where MediaSource is absent (Safari on iOS).
import { HEADER_SIZE } from '../protocol.js';

export const KIND_FMP4 = 5;
const MediaSourceClass = () => globalThis.ManagedMediaSource || globalThis.MediaSource;

export class MsePlayer {
  static supported() {
    const M = MediaSourceClass();
    return Boolean(M && M.isTypeSupported && M.isTypeSupported('video/mp4; codecs="avc1.42E01E"'));
  }

  constructor(video, { send, onFail = () => {}, onJpeg = () => {} }) {
    this.video = video;
    this.send = send;
    this.onFail = onFail;
    this.onJpeg = onJpeg;
    this.mediaSource = null;
    this.buffer = null;
    this.queue = [];
    this.codec = null;
    this.originUs = null;  // capture time of media time 0 (the fragment after the init segment)
    this.expectInit = false;
    this.failed = false;
    this.url = null;
  }

  start() {
    // JPEG too: a device that turns out to send JPEG is noticed at its first frame.
    this.send({ type: 'subscribe', mode: 'mse', kinds: ['jpeg'] });
  }

  handleText(message) {
    if (message.type !== 'mse') return false;
    if (message.codec !== this.codec) this.open(message.codec);
    this.expectInit = true;
    return true;
  }

  open(codec) {
    const M = MediaSourceClass();
    const type = `video/mp4; codecs="${codec}"`;
    if (!M.isTypeSupported(type)) { this.fail(`this browser cannot play ${type}`); return; }
    this.close();
    this.codec = codec;
    this.mediaSource = new M();
    this.queue = [];
    this.video.disableRemotePlayback = true;  // ManagedMediaSource requires it without an AirPlay source
    this.url = URL.createObjectURL(this.mediaSource);
    this.video.src = this.url;
    this.mediaSource.addEventListener('sourceopen', () => {
      try {
        this.buffer = this.mediaSource.addSourceBuffer(type);
        this.buffer.mode = 'segments';
        this.buffer.addEventListener('updateend', () => this.pump());
        this.buffer.addEventListener('error', () => this.fail('source buffer error'));
        this.pump();
      } catch (error) { this.fail(`addSourceBuffer: ${error}`); }
    }, { once: true });
    this.video.addEventListener('error', () => this.fail(`video error ${this.video.error?.code}`), { once: true });
  }

  handleBinary(buffer) {
    const view = new DataView(buffer);
    const kind = view.getUint8(2);
    if (kind === 1) { this.onJpeg(); return; }
    if (kind !== KIND_FMP4) return;
    const payload = new Uint8Array(buffer, HEADER_SIZE);
    const timestampUs = Number(view.getBigUint64(8));
    if (this.expectInit) {
      this.expectInit = false;
      this.originUs = null;
    } else if (this.originUs === null) {
      this.originUs = timestampUs;  // decode times count from the first keyframe after the init segment
    }
    if (this.queue.length > 60) { this.queue = []; return; }  // far behind: wait for what comes next
    this.queue.push(payload);
    this.pump();
  }

  pump() {
    const b = this.buffer;
    if (!b || b.updating || !this.queue.length) return;
    try {
      b.appendBuffer(this.queue.shift());
    } catch (error) {
      if (error.name === 'QuotaExceededError' && b.buffered.length) {
        b.remove(0, Math.max(0, this.video.currentTime - 2));
        return;
      }
      this.fail(`appendBuffer: ${error}`);
      return;
    }
    this.keepLive();
  }

  /** Live: play from the newest buffered range's end, and trim what was watched long ago. */
  keepLive() {
    const v = this.video, ranges = this.buffer.buffered;
    if (!ranges.length) return;
    const end = ranges.end(ranges.length - 1);
    const start = ranges.start(ranges.length - 1);
    if (v.currentTime < start || end - v.currentTime > 0.5) v.currentTime = Math.max(start, end - 0.1);
    if (v.paused) v.play().catch(() => {});
    if (!this.buffer.updating && v.currentTime > 30 && ranges.start(0) < v.currentTime - 20) {
      queueMicrotask(() => { try { if (!this.buffer.updating) this.buffer.remove(0, v.currentTime - 10); } catch { /* next time */ } });
    }
  }

  /** Capture time (µs) of the picture at media time t (seconds). */
  captureUsAt(mediaTime) { return this.originUs === null ? null : this.originUs + mediaTime * 1e6; }

  fail(reason) {
    if (this.failed) return;
    this.failed = true;
    this.onFail(reason, 'failed');
  }

  close() {
    this.buffer = null;
    if (this.url) { URL.revokeObjectURL(this.url); this.url = null; }
    if (this.mediaSource && this.mediaSource.readyState === 'open') { try { this.mediaSource.endOfStream(); } catch { /* closing anyway */ } }
    this.mediaSource = null;
    this.codec = null;
  }

  stop() {
    this.close();
    this.video.removeAttribute('src');
    this.video.load();
  }
}
