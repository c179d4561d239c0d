// Load generator for bench/fanout.py and bench/recording_cpu.py, on the npm `ws` package.
//
// One process plays the cameras (device sockets sending binary frames with the
// 24-byte Sightline header, agent/sightline_agent/protocol.py) and the viewers (sockets that
// count and time the frames they receive). Devices and viewers share one clock,
// so capture->receive latency is exact. Node is used so the load generator stays
// well below one core at 200 viewers x 30 fps x 100 KB (it measures and reports
// its own CPU use so a run where it became the bottleneck can be spotted).
//
// Configuration: one JSON object on stdin (tokens never go on the command line):
//   devices:  [{url, token|null}]        one socket each; token sent as "Authorization: Bearer"
//   viewers:  {url, count, headers, expectWelcome}   (count 0 for ingest-only runs)
//   payloadFile  path of the frame payload (a real JPEG, see bench/media.py)
//   fps, warmupS, measureS, drainS, connectConcurrency, connectTimeoutS,
//   deviceExpectWelcome (Sightline sends a welcome; the Node relay does not),
//   viewerDeflate (offer permessage-deflate like a browser does), hello (device hello object)
// Output on stdout, one per line: "CONNECTED", "MEASURE_START", "MEASURE_END",
// then "RESULT <json>". Diagnostics go to stderr.
"use strict";
const fs = require("fs");
const { performance } = require("perf_hooks");
const WebSocket = require("ws");
const { RawViewer } = require("./rawviewer");

const HEADER_SIZE = 24;
const KIND_JPEG = 1;
const FLAGS_WHOLE_KEYFRAME = 0x01 | 0x02 | 0x04;
const DEVICE_BACKLOG_LIMIT = 32 * 1024 * 1024; // past this the server is not reading: stop queueing

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (msg) => process.stderr.write(`loadgen: ${msg}\n`);
const emit = (line) => process.stdout.write(line + "\n");

function readConfig() {
  return JSON.parse(fs.readFileSync(0, "utf8"));
}

// --- viewers -----------------------------------------------------------------
class ViewerStats {
  constructor() {
    this.received = 0; // frames of the measured window received (unique, in order)
    this.lastSeq = -1;
    this.outOfOrder = 0;
    this.framesTotal = 0;
    this.bytesTotal = 0;
    this.connected = false;
    this.closeCode = null;
    this.extensions = "";
  }
}

const window_ = { measuring: false, firstSeq: null, lastSeq: null };
let latencies = new Float64Array(1024);
let latencyCount = 0;
function pushLatency(ms) {
  if (latencyCount === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[latencyCount++] = ms;
}

function onViewerFrame(stats, header, length) {
  const received = nowUs();
  stats.framesTotal++;
  stats.bytesTotal += length;
  const seq = header.readUInt32BE(4);
  const captured = header.readUInt32BE(8) * 4294967296 + header.readUInt32BE(12);
  if (seq <= stats.lastSeq) { stats.outOfOrder++; return; }
  stats.lastSeq = seq;
  if (window_.firstSeq !== null && seq >= window_.firstSeq && (window_.lastSeq === null || seq <= window_.lastSeq)) {
    stats.received++;
    pushLatency((received - captured) / 1000);
  }
}

// Viewers use RawViewer (see rawviewer.js for why); `ws` only when they must
// offer permessage-deflate like a browser (RawViewer cannot inflate).
function openViewer(cfg, stats) {
  return new Promise((resolve) => {
    let settled = false;
    let timer = null;
    const done = (socket) => { if (!settled) { settled = true; clearTimeout(timer); resolve(socket); } };
    const onText = (socket, text) => {
      if (text.includes('"ping"')) {
        try {
          const message = JSON.parse(text);
          if (message.type === "ping") socket.sendText(JSON.stringify({ type: "pong", id: message.id, ts: message.ts }));
        } catch { /* not ours to judge */ }
      }
      if (!stats.connected && text.includes('"welcome"')) { stats.connected = true; done(socket); }
    };
    const onClose = (code) => { stats.closeCode = code; done(null); };
    let socket;
    if (cfg.viewerDeflate) {
      const ws = new WebSocket(cfg.viewers.url, { headers: cfg.viewers.headers || {}, perMessageDeflate: true, maxPayload: 16 * 1024 * 1024 });
      socket = { sendText: (t) => ws.send(t), close: (c) => ws.close(c), terminate: () => ws.terminate() };
      ws.on("open", () => { stats.extensions = ws.extensions || ""; if (!cfg.viewers.expectWelcome) { stats.connected = true; done(socket); } });
      ws.on("message", (data, isBinary) => {
        if (!isBinary) return onText(socket, data.toString());
        if (data.length >= HEADER_SIZE) onViewerFrame(stats, data, data.length);
      });
      ws.on("close", onClose);
      ws.on("error", (err) => { log(`viewer error: ${err.message}`); done(null); });
    } else {
      const url = new URL(cfg.viewers.url);
      socket = new RawViewer({ host: url.hostname, port: Number(url.port), path: url.pathname, headers: cfg.viewers.headers }, {
        onOpen: () => { if (!cfg.viewers.expectWelcome) { stats.connected = true; done(socket); } },
        onText: (text) => onText(socket, text),
        onBinary: (header, length, captured) => { if (captured >= HEADER_SIZE) onViewerFrame(stats, header, length); },
        onClose,
      });
    }
    timer = setTimeout(() => { log("viewer connect timed out"); socket.terminate(); done(null); },
      (cfg.connectTimeoutS || 30) * 1000);
  });
}

async function openViewers(cfg) {
  const count = cfg.viewers ? cfg.viewers.count : 0;
  const stats = Array.from({ length: count }, () => new ViewerStats());
  const sockets = new Array(count).fill(null);
  const batch = cfg.connectConcurrency || 25;
  for (let start = 0; start < count; start += batch) {
    const indices = [];
    for (let i = start; i < Math.min(count, start + batch); i++) indices.push(i);
    const opened = await Promise.all(indices.map((i) => openViewer(cfg, stats[i])));
    indices.forEach((i, k) => { sockets[i] = opened[k]; });
  }
  return { stats, sockets };
}

// --- devices -----------------------------------------------------------------
class Device {
  constructor(cfg, spec, payload, phaseMs) {
    this.cfg = cfg;
    this.spec = spec;
    this.payload = payload;
    this.phaseMs = phaseMs;
    this.seq = 0;
    this.sent = 0;
    this.backlogDrops = 0;
    this.lateTicks = 0;
    this.closeCode = null;
    this.closeReason = "";
    this.textReceived = {};
    this.recording = null; // the welcome's "recording" flag
    this.socket = null;
    this.timer = null;
    this.running = false;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const headers = {};
      if (this.spec.token) headers.Authorization = `Bearer ${this.spec.token}`;
      const socket = new WebSocket(this.spec.url, { headers, perMessageDeflate: false });
      this.socket = socket;
      const timer = setTimeout(() => reject(new Error("device connect timed out")), (this.cfg.connectTimeoutS || 30) * 1000);
      let welcomed = false;
      socket.on("open", () => {
        socket.send(JSON.stringify(this.cfg.hello));
        if (!this.cfg.deviceExpectWelcome) { clearTimeout(timer); welcomed = true; resolve(); }
      });
      socket.on("message", (data, isBinary) => {
        if (isBinary) return;
        const text = data.toString();
        let message;
        try { message = JSON.parse(text); } catch { return; }
        this.textReceived[message.type] = (this.textReceived[message.type] || 0) + 1;
        if (message.type === "ping") socket.send(JSON.stringify({ type: "pong", id: message.id, ts: message.ts }));
        if (message.type === "command") socket.send(JSON.stringify({ type: "ack", id: message.id, ok: true, applied: message.settings || {} }));
        if (message.type === "welcome" && !welcomed) {
          this.recording = message.recording;
          welcomed = true; clearTimeout(timer); resolve();
        }
      });
      socket.on("close", (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        this.running = false;
        if (!welcomed) { clearTimeout(timer); reject(new Error(`device closed before welcome: ${code} ${this.closeReason}`)); }
      });
      socket.on("error", (err) => log(`device error: ${err.message}`));
    });
  }

  sendFrame() {
    const socket = this.socket;
    if (socket.readyState !== WebSocket.OPEN) return;
    const seq = this.seq++;
    if (socket.bufferedAmount > DEVICE_BACKLOG_LIMIT) { this.backlogDrops++; return; }
    const message = Buffer.allocUnsafe(HEADER_SIZE + this.payload.length);
    const ts = nowUs();
    message[0] = 0x53; message[1] = 1; message[2] = KIND_JPEG; message[3] = FLAGS_WHOLE_KEYFRAME;
    message.writeUInt32BE(seq >>> 0, 4);
    message.writeUInt32BE(Math.floor(ts / 4294967296), 8);
    message.writeUInt32BE(ts % 4294967296, 12);
    message.writeUInt16BE(0, 16);
    message.writeUInt16BE(1, 18);
    message.writeUInt32BE(this.payload.length, 20);
    this.payload.copy(message, HEADER_SIZE);
    socket.send(message, { binary: true });
    this.sent++;
  }

  start() {
    // Frames on an absolute schedule (no drift); if the loop falls behind it catches
    // up on the next ticks instead of silently lowering the rate.
    const periodMs = 1000 / this.cfg.fps;
    const origin = performance.now() + this.phaseMs;
    let k = 0;
    this.running = true;
    const tick = () => {
      if (!this.running) return;
      const now = performance.now();
      if (now - (origin + k * periodMs) > periodMs) this.lateTicks++;
      this.sendFrame();
      k++;
      this.timer = setTimeout(tick, Math.max(0, origin + k * periodMs - performance.now()));
    };
    this.timer = setTimeout(tick, Math.max(0, origin - performance.now()));
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }
}

// --- run ---------------------------------------------------------------------
function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

async function main() {
  const cfg = readConfig();
  const payload = fs.readFileSync(cfg.payloadFile);
  const periodMs = 1000 / cfg.fps;
  const devices = cfg.devices.map((spec, i) => new Device(cfg, spec, payload, (i * periodMs) / cfg.devices.length));

  // Devices first, so the viewers watch a live stream, as in production.
  for (const device of devices) await device.connect();
  for (const device of devices) device.start();
  const { stats, sockets } = await openViewers(cfg);
  const connected = stats.filter((s) => s.connected).length;
  emit("CONNECTED");
  log(`${devices.length} device(s), ${connected}/${stats.length} viewer(s) connected`);

  await sleep(cfg.warmupS * 1000);
  // Window: the frames whose sequence numbers the devices assign from now on,
  // until MEASURE_END. Only the first device's frames are counted for viewers.
  window_.firstSeq = devices[0].seq;
  const sentAtStart = devices.map((d) => d.sent);
  const seqAtStart = devices.map((d) => d.seq);
  const lateAtStart = devices.map((d) => d.lateTicks);
  const cpuStart = process.cpuUsage();
  const wallStart = performance.now();
  emit("MEASURE_START");
  await sleep(cfg.measureS * 1000);
  window_.lastSeq = devices[0].seq - 1;
  const wallS = (performance.now() - wallStart) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  emit("MEASURE_END");
  const sentInWindow = devices.map((d, i) => d.sent - sentAtStart[i]);
  const offeredInWindow = devices.map((d, i) => d.seq - seqAtStart[i]);
  const lateInWindow = devices.map((d, i) => d.lateTicks - lateAtStart[i]);
  // Drain: frames of the window still in flight may arrive; anything later is lost.
  await sleep(cfg.drainS * 1000);
  for (const device of devices) device.stop();

  const windowFrames = window_.lastSeq - window_.firstSeq + 1;
  const received = stats.map((s) => s.received);
  const totalReceived = received.reduce((a, b) => a + b, 0);
  const sorted = Float64Array.from(latencies.subarray(0, latencyCount)).sort();
  const result = {
    devices: devices.length,
    viewers: stats.length,
    viewers_connected: connected,
    measure_s: wallS,
    window_frames: windowFrames,
    device_offered: offeredInWindow,
    device_sent: sentInWindow,
    device_sent_total: devices.reduce((a, d) => a + d.sent, 0),
    device_backlog_drops: devices.reduce((a, d) => a + d.backlogDrops, 0),
    device_late_ticks: lateInWindow.reduce((a, b) => a + b, 0),
    device_close_codes: devices.map((d) => d.closeCode).filter((c) => c !== null),
    device_close_reasons: devices.map((d) => d.closeReason).filter((r) => r),
    device_text_received: devices.map((d) => d.textReceived),
    device_recording: devices.map((d) => d.recording),
    delivered_frames: totalReceived,
    delivered_fps_per_viewer: stats.length ? totalReceived / stats.length / wallS : null,
    loss_pct: stats.length ? 100 * (1 - totalReceived / (windowFrames * stats.length)) : null,
    worst_viewer_loss_pct: stats.length ? 100 * (1 - Math.min(...received) / windowFrames) : null,
    out_of_order: stats.reduce((a, s) => a + s.outOfOrder, 0),
    latency_samples: latencyCount,
    latency_p50_ms: percentile(sorted, 50),
    latency_p99_ms: percentile(sorted, 99),
    latency_max_ms: sorted.length ? sorted[sorted.length - 1] : null,
    viewer_close_codes: stats.map((s) => s.closeCode).filter((c) => c !== null),
    viewer_extensions: [...new Set(stats.map((s) => s.extensions))],
    loadgen_cpu_pct: (100 * (cpu.user + cpu.system)) / 1e6 / wallS,
    loadgen_cpu_user_pct: (100 * cpu.user) / 1e6 / wallS,
    loadgen_cpu_us_per_received: totalReceived ? (cpu.user + cpu.system) / totalReceived : null,
  };
  emit("RESULT " + JSON.stringify(result));

  for (const device of devices) if (device.socket) device.socket.close(1000);
  for (const socket of sockets) if (socket) socket.close(1000);
  // Frames still queued in a device socket go out before its close frame: wait for the
  // server's close reply (up to 5 s on a loaded machine) so they are not cut off and
  // counted as sent but never accepted (bench/capacity.py compares the two).
  const closeBy = performance.now() + 5000;
  while (performance.now() < closeBy && devices.some((d) => d.socket && d.socket.readyState !== WebSocket.CLOSED)) await sleep(20);
  for (const device of devices) if (device.socket) device.socket.terminate();
  for (const socket of sockets) if (socket) socket.terminate();
  process.exit(0);
}

main().catch((err) => {
  log(`failed: ${err.stack || err}`);
  emit("RESULT " + JSON.stringify({ error: String(err.message || err) }));
  process.exit(1);
});
