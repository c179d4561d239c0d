// Publish from this browser: the camera (getUserMedia) becomes a Sightline device.
// Speaks the device protocol on /ws/publish/<device_id>/: hello → welcome, JPEG frames
// behind the 24-byte header, pong for ping, ack for command (docs/protocol.md).
import { formatBytes, readConfig } from './lib/format.js';
import { KIND_AUDIO, KIND_JPEG, encodeFrame, nowUs } from './lib/protocol.js';
import { MIC_CONSTRAINTS, chooseMicCodec, startMicEncoder } from './lib/audio/capture.js';
import { parseResolution, validateSettings } from './lib/settings.js';
import { CLOSE } from './lib/protocol.js';
import { ReconnectingSocket } from './lib/socket.js';

const DEVICE_BUSY = 4014;  // sightline_agent.protocol.Close.DEVICE_BUSY: the device is connected, no takeover asked

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
  audio: null,           // hello.audio sent (the microphone), or null
  audioFramesSent: 0,
  persisted: 0,
  lastCommand: null,
  lastAck: null,
  settings: null,
  takeover: false,       // this session was opened with ?takeover=1 after the person confirmed
  lastClose: null,       // {code, reason} of the last close of the publish socket
  errors: [],
};

let session = null;

class PublishSession {
  constructor(deviceId, { width, height, fps }, { takeover = false, onFinal = () => {} } = {}) {
    this.deviceId = deviceId;
    this.takeover = takeover;
    this.onFinal = onFinal;
    this.settings = { brightness: 0, contrast: 0, fps, resolution: `${width}x${height}` };
    this.limits = { max_message_bytes: 1024 * 1024, max_fps: 60 };
    this.seq = 0;
    this.audioSeq = 0;
    this.audioChoice = null;   // {codec, rate} when the microphone is sent
    this.stopMic = null;
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
    const video = { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: this.settings.fps } };
    // The microphone goes with the camera when asked for; without one (or refused) the
    // picture is still published.
    const wantAudio = !$('pub-audio') || $('pub-audio').checked;
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video, audio: wantAudio ? MIC_CONSTRAINTS : false });
    } catch (error) {
      if (!wantAudio) throw error;
      this.stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    }
    if (this.stream.getAudioTracks().length) this.audioChoice = chooseMicCodec();
    this.video.srcObject = this.stream;
    await this.video.play();
    const path = `/ws/publish/${this.deviceId}/${this.takeover ? '?takeover=1' : ''}`;
    this.socket = new ReconnectingSocket(path, {
      onState: (name, detail) => showState(name, detail),
      onOpen: () => this.hello(),
      onText: (message) => this.handle(message),
      onClose: (event) => this.closed(event),
    }).start();
  }

  /** Busy (4014) and replaced (4012) are final for this session: reconnecting would take the
   * device from whoever has it now, and the two would take turns. */
  closed(event) {
    this.pause();
    state.lastClose = { code: event.code, reason: event.reason };
    if (event.code !== DEVICE_BUSY && event.code !== CLOSE.REPLACED) return;
    this.stop();
    this.onFinal(event.code);
  }

  hello() {
    this.socket.sendJson({
      type: 'hello', protocol: 1, codecs: ['jpeg'], resolution: this.settings.resolution,
      fps: this.settings.fps, audio: this.audioHello(), agent: `sightline-browser/1 (${navigator.userAgent})`,
      source: { kind: 'browser' },
    });
  }

  audioHello() {
    if (!this.audioChoice) return null;
    return { codec: this.audioChoice.codec, rate: this.audioChoice.rate, channels: 1 };
  }

  /** The microphone, from the welcome on: one kind-3 frame per payload (20 ms Opus or 21 ms PCM). */
  startAudio() {
    if (!this.audioChoice || this.stopMic) return;
    state.audio = this.audioHello();
    this.stopMic = startMicEncoder(this.stream, this.audioChoice, (payload, capturedUs) => {
      if (!this.timer) return;  // paused: not connected
      for (const m of encodeFrame(KIND_AUDIO, payload, this.audioSeq, capturedUs)) this.socket.send(m);
      this.audioSeq = (this.audioSeq + 1) >>> 0;
      state.audioFramesSent++;
    }, (error) => state.errors.push(`audio encoder: ${error.message}`));
  }

  handle(message) {
    switch (message.type) {
      case 'welcome':
        state.welcome = message;
        // The takeover was for this start only: a reconnect after a network drop must not
        // take the device from a camera that came back meanwhile (it would get 4014 and ask).
        this.socket.path = `/ws/publish/${this.deviceId}/`;
        Object.assign(this.limits, message.limits || {});
        if (message.settings) this.apply(pickKnown(message.settings));
        this.resume();
        this.startAudio();
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
    this.stopMic?.();
    this.stopMic = null;
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
  const labels = {
    connecting: 'connecting…', open: 'publishing', reconnecting: 'reconnecting…', waiting: 'disconnected',
    failed: 'refused', closed: 'not publishing', error: 'error', busy: 'not publishing', replaced: 'stopped',
  };
  el.dataset.state = name;
  el.textContent = detail ? `${labels[name] || name}: ${detail}` : (labels[name] || name);
}

const deviceCard = (id) => config.devices.find((d) => d.id === id);

function confirmTakeover(device) {
  return window.confirm(`"${device?.name || 'This device'}" is connected and streaming now.\n\n`
    + 'Publishing from this browser takes it over: the camera is disconnected, and its viewers and '
    + 'its recording get this browser\'s picture instead. Take it over?');
}

function setButtons(publishing) {
  $('pub-start').disabled = publishing;
  $('pub-stop').disabled = !publishing;
}

async function startPublishing(deviceId, takeover) {
  session?.stop();
  state.deviceId = deviceId;
  state.takeover = takeover;
  // The hello offers the device's configured settings; the server's welcome has the last word.
  const device = deviceCard(deviceId);
  const [width, height] = parseResolution(device?.settings?.resolution);
  session = new PublishSession(deviceId, { width, height, fps: device?.settings?.fps || 10 }, {
    takeover,
    onFinal: (code) => finished(deviceId, code),
  });
  setButtons(true);
  try {
    await session.start();
  } catch (error) {
    state.errors.push(String(error));
    showState('error', error.name === 'NotAllowedError' ? 'camera permission denied' : `camera unavailable (${error.message})`);
    session.stop();
    setButtons(false);
  }
}

/** The server refused (4014) or another connection took the device (4012): stop and say so. */
function finished(deviceId, code) {
  setButtons(false);
  const device = deviceCard(deviceId);
  if (code === CLOSE.REPLACED) {
    showState('replaced', 'another connection of this device took over (the camera reconnected, or someone '
      + 'else publishes to it). Not retrying; press Start publishing to take it back.');
    return;
  }
  if (device) device.online = true;
  showState('busy', `${device?.name || 'the device'} is connected and streaming now`);
  if (confirmTakeover(device)) startPublishing(deviceId, true);
}

function describeChoice() {
  const device = deviceCard(form.elements.device.value);
  $('pub-device-note').textContent = device?.online
    ? `${device.name} is online now: publishing to it asks you to confirm taking it over.` : '';
}

if (form) {
  form.elements.device.value = config.selected || '';
  describeChoice();
  form.elements.device.addEventListener('change', describeChoice);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const deviceId = form.elements.device.value;
    if (!deviceId) { showState('error', 'choose a device first'); return; }
    const device = deviceCard(deviceId);
    // Online as far as this page knows: ask first. The server checks again (4014) in any case.
    if (device?.online && !confirmTakeover(device)) return;
    startPublishing(deviceId, Boolean(device?.online));
  });
  $('pub-stop').addEventListener('click', () => {
    session?.stop();
    session = null;
    setButtons(false);
  });
  window.addEventListener('pagehide', () => session?.stop());
}
