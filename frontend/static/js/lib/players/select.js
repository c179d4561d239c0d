// Player selection for the device page and the wall: WebRTC → WebCodecs → MSE → JPEG/canvas by
// what the browser can do, automatic fallback on failure (error, ICE failure, decoder error, no
// WebRTC process, no picture in time), and a mode the user may force.
import { LivePlayer } from '../player.js';
import { MsePlayer } from './mse.js';
import { WebrtcPlayer } from './webrtc.js';

export const MODES = ['webrtc', 'webcodecs', 'mse', 'jpeg'];
export const MODE_LABELS = { webrtc: 'WebRTC', webcodecs: 'WebCodecs', mse: 'MSE', jpeg: 'JPEG/canvas' };
const NO_PICTURE_MS = 2000;  // an online device that shows nothing this long in a mode: next mode (cameras send ≥ 1 fps)

/** The mode index to play after a failure in modes[index]: the next mode (a JPEG device: the
 * canvas), the same one for 'reoffer' (a fresh WebRTC session at once), the last one at most. */
export function nextModeIndex(modes, index, code) {
  if (code === 'reoffer') return index;
  const next = code === 'not_h264' ? modes.indexOf('jpeg') : index + 1;
  return next <= index || next >= modes.length ? modes.length - 1 : next;
}

/** What this browser can play. */
export function capabilities(g = globalThis) {
  return {
    webrtc: typeof g.RTCPeerConnection !== 'undefined',
    webcodecs: typeof g.VideoDecoder !== 'undefined',
    mse: MsePlayer.supported(),
    jpeg: true,
  };
}

/** The modes to try in order (pure): forced first if given, then the capable ones by preference.
 * A JPEG device plays on the canvas (WebRTC and MSE carry H.264 only). */
export function chooseModes(caps, codec, forced = null) {
  const preferred = codec === 'jpeg' ? ['jpeg'] : MODES.filter((m) => caps[m]);
  if (!preferred.includes('jpeg')) preferred.push('jpeg');
  if (forced && MODES.includes(forced)) return [forced, ...preferred.filter((m) => m !== forced)];
  return preferred;
}

/** The forced mode from ?player= or localStorage (the URL wins), or null. */
export function forcedMode(search = location.search, storage = globalThis.localStorage) {
  const fromUrl = new URLSearchParams(search).get('player');
  if (MODES.includes(fromUrl)) return fromUrl;
  try { const stored = storage?.getItem('sightline.player'); return MODES.includes(stored) ? stored : null; } catch { return null; }
}

export function rememberForcedMode(mode) {
  try { if (mode) localStorage.setItem('sightline.player', mode); else localStorage.removeItem('sightline.player'); } catch { /* private mode */ }
  const url = new URL(location.href);
  if (mode) url.searchParams.set('player', mode); else url.searchParams.delete('player');
  history.replaceState(null, '', url);
}

export class PlayerSelector {
  /**
   * canvas: the page's canvas (JPEG and WebCodecs draw there); a <video> beside it is created
   * for WebRTC and MSE. send(obj): a JSON message on the viewer socket. codec: the device's
   * expected media. onDraw({framesDrawn, latencyMs}) per picture; onMode(state) on changes.
   */
  constructor(canvas, { send, codec = 'h264', forced = null, online = () => true, onDraw = () => {}, onMode = () => {}, onUnsupported = () => {}, extraKinds = () => [] }) {
    this.canvas = canvas;
    // Every subscription a mode sends also asks for extraKinds() (the device page's audio while
    // unmuted); resubscribe() sends the current mode's subscription again when those change.
    this.extraKinds = extraKinds;
    this.lastSubscribe = null;
    this.send = (message) => {
      if (message && message.type === 'subscribe') {
        this.lastSubscribe = message;
        const extra = this.extraKinds().filter((kind) => !(message.kinds || []).includes(kind));
        return send(extra.length ? { ...message, kinds: [...(message.kinds || []), ...extra] } : message);
      }
      return send(message);
    };
    this.codec = codec;
    this.online = online;
    this.onDraw = onDraw;
    this.onMode = onMode;
    this.onUnsupported = onUnsupported;
    this.video = document.createElement('video');
    this.video.className = `${canvas.className} live-video`.trim();
    this.video.muted = true;
    this.video.playsInline = true;
    this.video.autoplay = true;
    this.video.hidden = true;
    this.video.style.width = '100%';
    this.video.style.display = 'block';
    canvas.after(this.video);
    this.iceServers = [];
    this.framesDrawn = 0;
    this.latencyMs = null;
    this.modes = chooseModes(capabilities(), codec, forced);
    this.state = { mode: null, forced, order: [...this.modes], fallbacks: [], framesInMode: 0, reason: null };
    this.index = 0;
    this.current = null;   // the active player object
    this.canvasPlayer = null;
    this.started = false;
    this.watchdog = null;
  }

  get mode() { return this.modes[this.index]; }

  /** Send the current mode's subscription again (its extra kinds changed). */
  resubscribe() {
    if (this.lastSubscribe) this.send(this.lastSubscribe);
  }

  /** Server clock minus ours, as the canvas player measures it (0 in the video modes). */
  get clockOffsetMs() { return this.canvasPlayer ? this.canvasPlayer.clockOffsetMs : 0; }

  /** The viewer socket's welcome (after every (re)connection): start or restart the current mode.
   * Not at open: the welcome carries the ICE servers, and the latest keyframe follows it. */
  onWelcome(welcome) {
    const servers = welcome && welcome.webrtc && welcome.webrtc.ice_servers;
    this.iceServers = Array.isArray(servers) ? servers : [];
    this.started = true;
    this.startMode();
  }

  force(mode) {
    this.state.forced = mode;
    this.modes = chooseModes(capabilities(), this.codec, mode);
    this.state.order = [...this.modes];
    this.index = 0;
    if (this.started) this.startMode();
  }

  startMode() {
    this.stopCurrent();
    const mode = this.mode;
    this.state.mode = mode;
    this.state.framesInMode = 0;
    this.state.startedAt = performance.now();
    const video = mode === 'webrtc' || mode === 'mse';
    this.video.hidden = !video;
    this.canvas.hidden = video;
    if (mode === 'webrtc') {
      const player = this.current = new WebrtcPlayer(this.video, {
        send: this.send, iceServers: this.iceServers,
        onFail: (reason, code) => this.failed(player, reason, code),
      });
      this.state.webrtcTimings = player.timings;
      player.start().catch((e) => this.failed(player, `offer: ${e}`));
      this.watchVideoFrames(player);
    } else if (mode === 'mse') {
      const player = this.current = new MsePlayer(this.video, {
        send: this.send, onFail: (reason) => this.failed(player, reason), onJpeg: () => this.failed(player, 'the device sends JPEG', 'not_h264'),
      });
      player.start();
      this.watchVideoFrames(player);
    } else {
      const player = this.current = this.canvasPlayer = new LivePlayer(this.canvas, {
        onDraw: ({ latencyMs }) => this.drawn(player, latencyMs),
        onUnsupported: (message) => (mode === 'jpeg' ? this.onUnsupported(message) : this.failed(player, message)),
      });
      this.send({ type: 'subscribe', kinds: ['jpeg', 'h264'] });
    }
    this.armWatchdog();
    this.onMode(this.state);
  }

  /** Frames of a <video>: requestVideoFrameCallback where there is one, else timeupdate. */
  watchVideoFrames(player) {
    const v = this.video;
    const onFrame = (now, meta) => {
      if (this.current !== player) return;
      let latency = null;
      if (player instanceof WebrtcPlayer) latency = player.latencyMs;
      else if (meta && player.captureUsAt) {
        const us = player.captureUsAt(meta.mediaTime);
        if (us !== null) latency = Date.now() - us / 1000;
      }
      this.drawn(player, latency);
      if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(onFrame);
    };
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(onFrame);
    else v.ontimeupdate = () => onFrame(performance.now(), null);
  }

  drawn(player, latencyMs) {
    if (this.current !== player) return;
    this.framesDrawn++;
    this.state.framesInMode++;
    if (this.state.firstFrameInModeMs === undefined || this.state.framesInMode === 1) {
      this.state.firstFrameInModeMs = performance.now() - this.state.startedAt;
    }
    this.latencyMs = Number.isFinite(latencyMs) ? latencyMs : this.latencyMs;
    this.armWatchdog();
    this.onDraw({ framesDrawn: this.framesDrawn, latencyMs: this.latencyMs, mode: this.mode });
  }

  /** No picture for a while from an online device: this mode is not working here. */
  armWatchdog() {
    clearTimeout(this.watchdog);
    const player = this.current;
    this.watchdog = setTimeout(() => {
      if (this.current === player && this.online() && this.index < this.modes.length - 1) {
        this.failed(player, `no picture within ${NO_PICTURE_MS / 1000} s`);
      } else if (this.current === player) this.armWatchdog();
    }, NO_PICTURE_MS);
  }

  failed(player, reason, code = 'failed') {
    if (this.current !== player) return;
    const from = this.mode;
    const next = nextModeIndex(this.modes, this.index, code);
    if (code === 'reoffer') {  // same mode, new session: not a fallback
      this.state.reoffers = (this.state.reoffers || 0) + 1;
      this.state.reason = reason;
      this.startMode();
      return;
    }
    if (next === this.index) { this.state.reason = reason; this.onMode(this.state); return; }
    this.index = next;
    this.state.fallbacks.push({ from, to: this.mode, reason, atMs: Math.round(performance.now()) });
    this.state.reason = reason;
    this.startMode();
  }

  handleText(message) {
    return Boolean(this.current && this.current.handleText && this.current.handleText(message));
  }

  handleBinary(buffer) {
    if (this.current && this.current.handleBinary) this.current.handleBinary(buffer);
  }

  noteServerTime(ts) { this.canvasPlayer?.noteServerTime(ts); }

  get localDrops() { return this.canvasPlayer?.localDrops || 0; }
  get meter() { return this.canvasPlayer && this.current === this.canvasPlayer ? this.canvasPlayer.meter : this.videoMeter(); }
  get decoder() { return this.canvasPlayer && this.current === this.canvasPlayer ? this.canvasPlayer.decoder : this.mode; }

  videoMeter() {
    const now = performance.now();
    const m = this._vm || (this._vm = { t: now, n: this.framesDrawn, fps: 0, bitrateBps: 0 });
    if (now - m.t >= 1000) { m.fps = ((this.framesDrawn - m.n) * 1000) / (now - m.t); m.t = now; m.n = this.framesDrawn; }
    return m;
  }

  /** Mean luma (0..255) of what is shown now, sampled on a small grid (tests, snapshot checks). */
  meanBrightness() {
    const source = this.video.hidden ? this.canvas : this.video;
    const w = source.videoWidth || source.width, h = source.videoHeight || source.height;
    if (!w || !h) return 0;
    const c = document.createElement('canvas');
    c.width = 64; c.height = 36;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(source, 0, 0, 64, 36);
    const d = ctx.getImageData(0, 0, 64, 36).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    return sum / (d.length / 4);
  }

  /** A short signature of the picture shown now: two reads differ when the picture moves. */
  pixelSignature() {
    const source = this.video.hidden ? this.canvas : this.video;
    const c = document.createElement('canvas');
    c.width = 16; c.height = 9;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(source, 0, 0, 16, 9);
    return Array.from(ctx.getImageData(0, 0, 16, 9).data).join(',');
  }

  /** framesDecoded of the WebRTC inbound video (getStats), or null outside WebRTC mode. */
  async rtcFramesDecoded() {
    const pc = this.current instanceof WebrtcPlayer ? this.current.pc : null;
    if (!pc) return null;
    let decoded = null;
    (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded; });
    return decoded;
  }

  /** The picture as a drawable (snapshot button). */
  get source() { return this.video.hidden ? this.canvas : this.video; }

  stopCurrent() {
    clearTimeout(this.watchdog);
    const player = this.current;
    this.current = null;
    if (!player) return;
    if (player === this.canvasPlayer) { player.close(); this.canvasPlayer = null; } else player.stop();
  }

  close() { this.stopCurrent(); }
}
