// Publish from this browser: the camera (getUserMedia) becomes a Sightline device.
// Speaks the device protocol on /ws/publish/<device_id>/: hello → welcome, JPEG frames
// behind the 24-byte header, pong for ping, ack for command (docs/protocol.md).
import { formatBytes, readConfig } from './lib/format.js';
import { KIND_JPEG, encodeFrame, nowUs } from './lib/protocol.js';
import { parseResolution, validateSettings } from './lib/settings.js';
import { ReconnectingSocket } from './lib/socket.js';

const config = readConfig();
const $ = (id) => document.getElementById(id);
const form = $('publish');

const state = window.sightline = {
  page: 'publish',
  connection: 'idle',
  connected: false,
  publishing: false,
  deviceId: null,
  welcome: null,
  framesSent: 0,
  bytesSent: 0,
  framesSkipped: 0,      // not sent because the socket was still busy with earlier frames
  persisted: 0,
  lastCommand: null,
  lastAck: null,
  settings: null,
  errors: [],
};

let session = null;

class PublishSession {
  constructor(deviceId, { width, height, fps }) {
    this.deviceId = deviceId;
    this.settings = { brightness: 0, contrast: 0, fps, resolution: `${width}x${height}` };
    this.limits = { max_message_bytes: 1024 * 1024, max_fps: 60 };
    this.seq = 0;
    this.timer = null;
    this.busy = false;
    this.video = document.createElement('video');
    this.video.muted = true;
    this.video.playsInline = true;
    this.canvas = $('pub-canvas');
    this.ctx = this.canvas.getContext('2d', { alpha: false });
  }

  async start() {
    const [width, height] = parseResolution(this.settings.resolution);
    this.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: this.settings.fps } },
      audio: false,
    });
    this.video.srcObject = this.stream;
    await this.video.play();
    this.socket = new ReconnectingSocket(`/ws/publish/${this.deviceId}/`, {
      onState: (name, detail) => showState(name, detail),
      onOpen: () => this.hello(),
      onText: (message) => this.handle(message),
      onClose: () => this.pause(),
    }).start();
  }

  hello() {
    this.socket.sendJson({
      type: 'hello', protocol: 1, codecs: ['jpeg'], resolution: this.settings.resolution,
      fps: this.settings.fps, audio: null, agent: `sightline-browser/1 (${navigator.userAgent})`,
    });
  }

  handle(message) {
    switch (message.type) {
      case 'welcome':
        state.welcome = message;
        Object.assign(this.limits, message.limits || {});
        if (message.settings) this.apply(pickKnown(message.settings));
        this.resume();
        break;
      case 'ping':
        this.socket.sendJson({ type: 'pong', id: message.id, ts: message.ts });
        break;
      case 'command': {
        state.lastCommand = message;
        const ack = this.command(message);
        state.lastAck = ack;
        this.socket.sendJson(ack);
        $('pub-command').textContent = ack.ok ? `applied ${JSON.stringify(ack.applied)}` : `refused: ${ack.error}`;
        break;
      }
      case 'persisted':
        state.persisted++;
        $('pub-persisted').textContent = String(state.persisted);
        break;
      case 'error':
        state.errors.push(message);
        showState('error', message.message || `error ${message.code}`);
        break;
      default:
        break;
    }
  }

  /** Validate a command's settings; apply all of them or none. */
  command(message) {
    const settings = message.settings || {};
    const problem = validateSettings(settings, { maxFps: this.limits.max_fps || 60 });
    if (problem) return { type: 'ack', id: message.id, ok: false, error: problem };
    this.apply(settings);
    return { type: 'ack', id: message.id, ok: true, applied: settings };
  }

  apply(settings) {
    Object.assign(this.settings, settings);
    state.settings = { ...this.settings };
    if ('fps' in settings && this.timer) { this.pause(); this.resume(); }
  }

  resume() {
    if (this.timer) return;
    const fps = Math.min(this.settings.fps, this.limits.max_fps || 60);
    this.timer = setInterval(() => this.capture(), 1000 / fps);
    state.publishing = true;
  }

  pause() {
    clearInterval(this.timer);
    this.timer = null;
    state.publishing = false;
  }

  async capture() {
    // Never queue behind a slow link: skip this tick if the last frame is still going out.
    if (this.busy || this.socket.bufferedAmount > 2 * this.limits.max_message_bytes) {
      state.framesSkipped++;
      return;
    }
    this.busy = true;
    try {
      const [width, height] = parseResolution(this.settings.resolution);
      if (this.canvas.width !== width || this.canvas.height !== height) {
        this.canvas.width = width;
        this.canvas.height = height;
      }
      const capturedUs = nowUs();
      const { brightness, contrast } = this.settings;
      this.ctx.filter = `brightness(${1 + brightness / 100}) contrast(${1 + contrast / 100})`;
      this.ctx.drawImage(this.video, 0, 0, width, height);
      const blob = await new Promise((resolve) => this.canvas.toBlob(resolve, 'image/jpeg', 0.8));
      if (!blob || !this.timer) return;
      const payload = new Uint8Array(await blob.arrayBuffer());
      const messages = encodeFrame(KIND_JPEG, payload, this.seq, capturedUs, {
        keyframe: true, maxMessageBytes: this.limits.max_message_bytes,
      });
      this.seq = (this.seq + 1) >>> 0;
      for (const m of messages) this.socket.send(m);
      state.framesSent++;
      state.bytesSent += payload.length;
      $('pub-frames').textContent = String(state.framesSent);
      $('pub-bytes').textContent = formatBytes(state.bytesSent);
    } finally {
      this.busy = false;
    }
  }

  stop() {
    this.pause();
    this.socket?.stop();
    for (const track of this.stream?.getTracks() || []) track.stop();
  }
}

function pickKnown(settings) {
  const out = {};
  for (const key of ['brightness', 'contrast', 'fps', 'resolution']) if (key in settings) out[key] = settings[key];
  return out;
}

function showState(name, detail = '') {
  state.connection = name;
  state.connected = name === 'open';
  const el = $('pub-state');
  const labels = { connecting: 'connecting…', open: 'publishing', reconnecting: 'reconnecting…', waiting: 'disconnected', failed: 'refused', closed: 'not publishing', error: 'error' };
  el.dataset.state = name;
  el.textContent = detail ? `${labels[name] || name}: ${detail}` : (labels[name] || name);
}

if (form) {
  if (config.selected) form.elements.device.value = config.selected;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    session?.stop();
    state.deviceId = form.elements.device.value;
    // The hello offers the device's configured settings; the server's welcome has the last word.
    const device = config.devices.find((d) => d.id === state.deviceId);
    const [width, height] = parseResolution(device?.settings?.resolution);
    session = new PublishSession(state.deviceId, { width, height, fps: device?.settings?.fps || 10 });
    $('pub-start').disabled = true;
    $('pub-stop').disabled = false;
    try {
      await session.start();
    } catch (error) {
      state.errors.push(String(error));
      showState('error', error.name === 'NotAllowedError' ? 'camera permission denied' : `camera unavailable (${error.message})`);
      session.stop();
      $('pub-start').disabled = false;
      $('pub-stop').disabled = true;
    }
  });
  $('pub-stop').addEventListener('click', () => {
    session?.stop();
    session = null;
    $('pub-start').disabled = false;
    $('pub-stop').disabled = true;
  });
  window.addEventListener('pagehide', () => session?.stop());
}
