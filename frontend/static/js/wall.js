// Device wall: a live tile per device of the current organisation. Presence and stats
// come from /ws/wall/<organisation>/; each tile draws frames from its own /ws/view/ socket.
import { getJson } from './lib/api.js';
import { formatAgo, readConfig, sourceLabel } from './lib/format.js';
import { PlayerSelector, forcedMode } from './lib/players/select.js';
import { ReconnectingSocket } from './lib/socket.js';

const config = readConfig();
const wallEl = document.getElementById('wall');
const tiles = new Map();  // device id -> Tile
const DEVICE_LIST_REFRESH_MS = 10000;

const state = window.sightline = {
  page: 'wall',
  wallConnected: false,
  tiles: {},  // device id -> {connected, framesDrawn, online, fps}
  framesDrawn: 0,
  firstFrameMs: null,
};

class Tile {
  constructor(device, element) {
    this.device = device;
    this.el = element || Tile.render(device);
    this.canvas = this.el.querySelector('canvas');
    this.state = state.tiles[device.id] = { connected: false, framesDrawn: 0, online: device.online, fps: null };
    // Same choice as the device page (js/lib/players/select.js), per tile.
    this.player = new PlayerSelector(this.canvas, {
      send: (message) => this.socket.sendJson(message),
      codec: device.expected_media,
      forced: forcedMode(),
      online: () => this.state.online,
      onMode: ({ mode }) => { this.state.mode = mode; this.el.dataset.mode = mode; },
      onDraw: ({ framesDrawn }) => {
        this.state.framesDrawn = framesDrawn;
        state.framesDrawn++;
        if (state.firstFrameMs === null) state.firstFrameMs = performance.now();
        this.el.classList.add('has-frame');
      },
    });
    this.socket = new ReconnectingSocket(`/ws/view/${device.id}/`, {
      onState: (name) => { this.state.connected = name === 'open'; this.el.dataset.connection = name; },
      // The player subscribes at the welcome, by mode (never live audio on the wall).
      onBinary: (buffer) => this.player.handleBinary(buffer),
      onText: (message) => this.handle(message),
    }).start();
    this.update(device);
  }

  static render(device) {
    const li = document.createElement('li');
    li.className = 'tile';
    li.dataset.deviceId = device.id;
    const href = config.deviceUrlTemplate.replace('00000000-0000-0000-0000-000000000000', device.id);
    li.innerHTML = `<a class="tile-link"><canvas class="tile-canvas" width="320" height="180"></canvas>
      <span class="tile-name"></span>
      <span class="tile-meta"><span class="badge" data-field="online"></span> <span data-field="fps"></span>
      <span data-field="last-seen"></span> <span data-field="source"></span></span></a>`;
    li.querySelector('a').href = href;
    li.querySelector('.tile-name').textContent = device.name;
    li.querySelector('canvas').setAttribute('aria-label', `Live view of ${device.name}`);
    return li;
  }

  handle(message) {
    if (this.player.handleText(message)) return;
    if (message.type === 'welcome') this.player.onWelcome(message);
    if (message.type === 'presence') this.update({ online: message.online, last_seen: message.last_seen, source: message.source });
    else if (message.type === 'welcome' && message.device) this.update(message.device);
    else if (message.type === 'stats') this.update({ fps: message.fps });
    else if (message.type === 'ping') this.socket.sendJson({ type: 'pong', id: message.id, ts: message.ts });
  }

  update(fields) {
    Object.assign(this.device, fields);
    const d = this.device;
    this.state.online = Boolean(d.online);
    this.el.dataset.online = String(Boolean(d.online));
    this.el.querySelector('[data-field=online]').textContent = d.online ? 'online' : 'offline';
    this.state.source = d.online ? sourceLabel(d.source) || null : null;
    this.el.querySelector('[data-field=source]').textContent = this.state.source ? `via ${this.state.source}` : '';
    if (Number.isFinite(d.fps)) {
      this.state.fps = d.fps;
      this.el.querySelector('[data-field=fps]').textContent = d.online ? `${d.fps.toFixed(1)} fps` : '';
    }
    this.refreshLastSeen();
  }

  refreshLastSeen() {
    const d = this.device;
    this.el.querySelector('[data-field=last-seen]').textContent = d.online ? 'live' : formatAgo(d.last_seen);
  }

  remove() {
    this.socket.stop();
    this.player.close();
    this.el.remove();
    delete state.tiles[this.device.id];
  }
}

function addTile(device, element) {
  if (!tiles.has(device.id)) tiles.set(device.id, new Tile({ ...device }, element));
  document.getElementById('wall-empty')?.remove();
}

/** Make the tiles match the organisation's current devices (added, removed, presence). */
async function reconcile(devices = null) {
  if (!devices) {
    try { devices = (await getJson(config.devicesUrl)).devices || []; } catch { return; }
  }
  const seen = new Set();
  for (const device of devices) {
    seen.add(device.id);
    if (tiles.has(device.id)) tiles.get(device.id).update(device);
    else { addTile(device); wallEl.append(tiles.get(device.id).el); }
  }
  for (const [id, tile] of tiles) if (!seen.has(id)) { tile.remove(); tiles.delete(id); }
}

function onWallEvent(message) {
  if (message.type === 'ping') { wallSocket.sendJson({ type: 'pong', id: message.id, ts: message.ts }); return; }
  if (message.type === 'devices') { reconcile(message.devices); return; }  // sent on every (re)connect
  const id = message.device_id;
  if (!id) return;
  const tile = tiles.get(id);
  if (!tile) { reconcile(); return; }  // a device we have not seen: added since the page loaded
  if (message.type === 'presence') {
    tile.update({ online: message.online, last_seen: message.last_seen ?? tile.device.last_seen, source: message.source });
  }
  else if (message.type === 'stats') tile.update({ fps: message.fps });
  else if (message.type === 'removed' || message.type === 'device_removed') reconcile();
}

for (const device of config.devices) {
  addTile(device, wallEl.querySelector(`[data-device-id="${device.id}"]`));
}

let wallSocket = null;
if (config.organisationId) {
  const stateEl = document.getElementById('wall-state');
  wallSocket = new ReconnectingSocket(`/ws/wall/${config.organisationId}/`, {
    onState(name, detail) {
      state.wallConnected = name === 'open';
      stateEl.dataset.state = name;
      stateEl.textContent = name === 'open' ? 'live' : (detail || name);
    },
    onText: onWallEvent,
  }).start();
  window.addEventListener('pagehide', () => wallSocket.stop());
  setInterval(() => { for (const tile of tiles.values()) tile.refreshLastSeen(); }, 5000);
  // The wall socket reports devices known when it connected; devices added or removed since
  // come from the devices API.
  setInterval(() => reconcile(), DEVICE_LIST_REFRESH_MS);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) reconcile(); });
}
window.addEventListener('pagehide', () => { for (const tile of tiles.values()) tile.socket.stop(); });
