// Device page: live player with overlay stats, chart, snapshot, reconnect, and (operators) controls.
import { LiveChart } from './lib/chart.js';
import { formatAgo, formatBitrate, readConfig, sourceLabel } from './lib/format.js';
import { MODE_LABELS, MODES, PlayerSelector, forcedMode, rememberForcedMode } from './lib/players/select.js';
import { KIND_AUDIO, parseFrame } from './lib/protocol.js';
import { setupAudioPanel } from './lib/audio/panel.js';
import { setupTalk } from './lib/audio/talk.js';
import { ReconnectingSocket } from './lib/socket.js';

const moduleStart = performance.now();
const config = readConfig();
const device = config.device;
const $ = (id) => document.getElementById(id);

// State for people debugging and for the browser tests, which wait on it.
const state = window.sightline = {
  page: 'device',
  deviceId: device.id,
  connection: 'connecting',
  connected: false,
  online: device.online,
  lastSeen: device.last_seen,
  source: null,             // what the connected device streams from, in words ('RTSP bridge', …)
  liveLabel: null,          // what the overlay says: 'live' only while the device is online
  controlsEnabled: false,
  framesDrawn: 0,
  firstFrameMs: null,       // ms since navigation start when the first live frame was drawn
  timings: { moduleStart: null, socketOpen: null, welcome: null, firstBinary: null },  // ms since navigation start
  latencyMs: null,
  fps: 0,
  bitrateBps: 0,
  drops: 0,
  serverStats: null,
  canControl: false,
  lastCommandResult: null,
  commandsSent: 0,
  reconnects: 0,
  errors: [],
  meanBrightness: () => player.meanBrightness(),
  pixelSignature: () => player.pixelSignature(),
  rtcFramesDecoded: () => player.rtcFramesDecoded(),
  mode: null,               // the player mode in use: webrtc, webcodecs, mse or jpeg
};

const canvas = $('live');
// WebRTC → WebCodecs → MSE → JPEG/canvas by capability, with fallback (js/lib/players/select.js).
const player = new PlayerSelector(canvas, {
  send: (message) => socket.sendJson(message),
  // Audio frames come over the socket in every mode, only while the page is unmuted.
  extraKinds: () => (audioPanel ? audioPanel.kinds().filter((kind) => kind === 'audio') : []),
  codec: device.expected_media,
  forced: forcedMode(),
  online: () => state.online,
  onMode: (playerState) => showMode(playerState),
  onDraw({ framesDrawn, latencyMs }) {
    state.framesDrawn = framesDrawn;
    state.latencyMs = latencyMs;
    state.decoder = player.decoder;
    if (state.firstFrameMs === null) {
      state.firstFrameMs = performance.now();
      canvas.classList.add('has-frame');
      render();  // the snapshot button is usable from the first frame, not a tick later
    }
  },
  onUnsupported(message) { showConnection('unsupported', message); },
});
state.player = player.state;  // mode, order, fallbacks, framesInMode: for people debugging and the tests
const modeEl = addModeControls();

// Live audio (muted until the person unmutes) and, for operators, talk-back.
let audioPanel = null;
audioPanel = setupAudioPanel({
  state, player, resubscribe: () => player.resubscribe(),
});

const talk = setupTalk({ state, send: (message) => socket.send(message), sendJson: (message) => socket.sendJson(message) });

const chart = new LiveChart($('chart'), {
  series: [
    { key: 'latency', label: 'latency ms', color: '#f5a524', max: 100 },
    { key: 'fps', label: 'fps', color: '#3ddc97', max: 10 },
  ],
});

let socketState = { name: 'connecting', detail: '' };

function showConnection(name, detail = '') {
  socketState = { name, detail };
  render();
}

/** Overlay, picture and controls from the socket's state and the device's presence: "live" only
 * when both the socket is open and the device is online; an offline device shows no picture. */
function render() {
  const { name, detail } = socketState;
  const offline = name === 'open' && !state.online;
  const labels = { connecting: 'connecting…', open: 'live', reconnecting: 'reconnecting…', waiting: 'disconnected', failed: 'unavailable', closed: 'closed', unsupported: 'cannot decode' };
  const el = $('conn');
  const shown = offline ? 'offline' : name;
  const label = offline ? `offline · ${formatAgo(state.lastSeen)}` : (labels[name] || name);
  el.dataset.state = shown;
  el.textContent = detail && !offline ? `${label}: ${detail}` : label;
  state.liveLabel = label;
  $('player').dataset.online = String(state.online);
  $('offline-panel').hidden = state.online;
  $('offline-seen').textContent = state.lastSeen ? `last ${formatAgo(state.lastSeen)} (${new Date(state.lastSeen).toLocaleString()})` : 'never seen';
  const controls = $('controls-set');
  if (controls) {
    controls.disabled = !state.online;
    $('controls-offline').hidden = state.online;
  }
  state.controlsEnabled = Boolean(controls && !controls.disabled);
  $('snapshot').disabled = !state.online || !player.framesDrawn;
}

const socket = new ReconnectingSocket(`/ws/view/${device.id}/`, {
  onState(name, detail) {
    state.connection = name;
    state.connected = name === 'open';
    state.reconnects = socket ? socket.reconnects : 0;
    showConnection(name, detail);
  },
  // The player selector subscribes per mode at the welcome, adding audio while unmuted.
  onOpen() {
    state.timings.socketOpen ??= performance.now();
  },
  onBinary(buffer) {
    state.timings.firstBinary ??= performance.now();
    if (buffer.byteLength > 2 && new Uint8Array(buffer, 2, 1)[0] === KIND_AUDIO) {
      try { audioPanel.handleFrame(parseFrame(buffer)); } catch { /* counted by nobody: a bad frame */ }
      return;
    }
    player.handleBinary(buffer);
  },
  onText(message) { handleMessage(message); },
}, { early: window.sightlineEarlySocket });

function handleMessage(message) {
  if (player.handleText(message)) return;  // signalling and MSE descriptions
  switch (message.type) {
    case 'welcome':
      state.timings.welcome ??= performance.now();
      player.onWelcome(message);
      state.canControl = Boolean(message.can_control);
      state.role = message.role;
      if (message.device) setPresence(message.device.online, message.device.last_seen, message.device.source);
      audioPanel.setMedia(message.media, message.device?.online);
      talk.setMedia(message.media);
      talk.setTalking(message.talking);
      break;
    case 'talk':
      talk.setTalking(message.talking);
      break;
    case 'talk_result':
      talk.onResult(message);
      break;
    case 'stats':
      state.serverStats = message;
      player.noteServerTime(message.server_ts);
      state.drops = (message.drops || 0) + player.localDrops;
      break;
    case 'presence':
      setPresence(message.online, message.last_seen, message.source);
      if ('media' in message) {
        audioPanel.setMedia(message.media, message.online);
        talk.setMedia(message.media);
      }
      break;
    case 'command_result':
      showCommandResult(message);
      break;
    case 'ping':
      socket.sendJson({ type: 'pong', id: message.id, ts: message.ts });
      break;
    case 'error':
      state.errors.push(message);
      break;
    default:
      break;
  }
}

function setPresence(online, lastSeen, source) {
  state.online = Boolean(online);
  if (lastSeen) state.lastSeen = lastSeen;
  const el = $('presence');
  el.textContent = online ? 'online' : 'offline';
  el.dataset.online = String(state.online);
  state.source = online ? sourceLabel(source) || null : null;
  $('source').textContent = state.source ? `via ${state.source}` : '';
  render();
}

// Overlay and chart refresh once a second from what this browser measured.
setInterval(() => {
  state.fps = player.meter.fps;
  state.bitrateBps = player.meter.bitrateBps;
  state.drops = (state.serverStats?.drops || 0) + player.localDrops;
  $('stat-fps').textContent = state.fps.toFixed(1);
  $('stat-bitrate').textContent = formatBitrate(state.bitrateBps);
  $('stat-latency').textContent = state.latencyMs === null ? '–' : `${Math.round(state.latencyMs)} ms`;
  showMode(player.state);
  $('stat-drops').textContent = String(state.drops);
  chart.push({ latency: state.latencyMs, fps: state.fps });
  render();  // "last seen … ago" moves on, the snapshot button follows the first frame
}, 1000);

$('snapshot').addEventListener('click', () => {
  if (!player.framesDrawn) return;
  let picture = canvas;
  if (player.source !== canvas) {  // WebRTC and MSE play in a <video>: copy its picture
    picture = document.createElement('canvas');
    picture.width = player.source.videoWidth;
    picture.height = player.source.videoHeight;
    picture.getContext('2d').drawImage(player.source, 0, 0);
  }
  picture.toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `${device.name.replace(/[^\w-]+/g, '_')}-${new Date().toISOString().replace(/[:.]/g, '-')}.jpg`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, 'image/jpeg', 0.92);
});

// -- controls (rendered by the server only for operators and owners) ------------
// A viewer's page has no controls, so a result (only ever "forbidden") is only recorded.
let showCommandResult = (message) => { state.lastCommandResult = message; };
const form = $('controls');
if (form) {
  const sent = new Map();  // command id -> settings, to say what an ack is about
  const result = $('command-result');

  const send = (settings) => {
    const id = crypto.randomUUID();
    sent.set(id, settings);
    state.commandsSent++;
    result.dataset.state = 'pending';
    result.textContent = `Sending ${describe(settings)}…`;
    if (!socket.sendJson({ type: 'command', id, settings })) {
      showCommandResult({ id, ok: false, error: 'not connected' });
    }
  };

  showCommandResult = (message) => {
    const settings = sent.get(message.id);
    sent.delete(message.id);
    state.lastCommandResult = message;
    result.dataset.state = message.ok ? 'ok' : 'error';
    result.textContent = message.ok
      ? `Applied ${describe(message.applied || settings || {})}`
      : `Not applied${settings ? ` (${describe(settings)})` : ''}: ${explain(message.error)}`;
  };

  for (const name of ['brightness', 'contrast']) {
    const input = form.elements[name];
    input.addEventListener('input', () => { $(`out-${name}`).textContent = input.value; });
    input.addEventListener('change', () => send({ [name]: Number(input.value) }));
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    send({
      brightness: Number(form.elements.brightness.value),
      contrast: Number(form.elements.contrast.value),
      fps: Number(form.elements.fps.value),
      resolution: form.elements.resolution.value,
    });
  });
}

function describe(settings) {
  return Object.entries(settings).map(([k, v]) => `${k} ${v}`).join(', ');
}

function explain(error) {
  const known = {
    timeout: 'the device did not answer in time', device_offline: 'the device is offline',
    forbidden: 'your role may not control devices', busy: 'too many commands waiting; try again',
  };
  if (typeof error === 'string' && error.startsWith('device: ')) return `the device refused: ${error.slice(8)}`;
  return known[error] || error || 'unknown error';
}

/** The player mode in the overlay (with its latency) and a select to force one (kept in the URL
 * and localStorage). Built here so the template stays as it is. */
function addModeControls() {
  const row = document.createElement('div');
  row.innerHTML = '<dt>mode</dt><dd id="stat-mode">–</dd>';
  document.querySelector('#overlay .stats').prepend(row);
  const label = document.createElement('label');
  label.className = 'player-mode';
  label.innerHTML = 'Player <select id="player-mode"><option value="">automatic</option></select>';
  const select = label.querySelector('select');
  for (const mode of MODES) select.add(new Option(MODE_LABELS[mode], mode));
  select.value = player.state.forced || '';
  select.addEventListener('change', () => {
    rememberForcedMode(select.value || null);
    player.force(select.value || null);
  });
  $('snapshot').before(label);
  return $('stat-mode');
}

function showMode(playerState) {
  if (!modeEl) return;
  const label = MODE_LABELS[playerState.mode] || '–';
  const latency = state.latencyMs === null ? '' : ` · ${Math.round(state.latencyMs)} ms`;
  modeEl.textContent = `${label}${latency}`;
  modeEl.title = playerState.reason ? `fell back: ${playerState.reason}` : '';
  $('player').dataset.mode = playerState.mode || '';
  $('player').dataset.fallbacks = String(playerState.fallbacks.length);
  state.mode = playerState.mode;
}

// For the tests: drop the connection as a network failure would, to exercise reconnecting.
state.dropConnection = () => socket.ws?.close(4000, 'dropped by test');

state.timings.moduleStart = moduleStart;
socket.start();
window.addEventListener('pagehide', () => { socket.stop(); player.close(); audioPanel.close(); });
