// A WebSocket that reconnects with exponential backoff and jitter, and says what state it is in.
import { FATAL_CLOSES } from './protocol.js';

export function wsUrl(path) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}

export class ReconnectingSocket {
  /**
   * @param {string} path  e.g. /ws/view/<id>/
   * @param {object} handlers  onOpen(ws), onText(obj), onBinary(ArrayBuffer), onState(state, detail)
   */
  /**
   * early: {ws, path, messages, opened, closed} from a page's inline script that opened the
   * socket before the modules loaded; its buffered events are replayed in order.
   */
  constructor(path, handlers, { minDelayMs = 250, maxDelayMs = 10000, protocols, early = null } = {}) {
    this.path = path;
    this.handlers = handlers;
    this.minDelayMs = minDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.protocols = protocols;
    this.attempt = 0;
    this.ws = null;
    this.state = 'idle';
    this.stopped = false;
    this.timer = null;
    this.reconnects = 0;
    this.early = early && early.path === path ? early : null;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  stop(code = 1000) {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(code);
    this.setState('closed');
  }

  send(data) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(data); return true; }
    return false;
  }

  sendJson(obj) { return this.send(JSON.stringify(obj)); }

  get bufferedAmount() { return this.ws ? this.ws.bufferedAmount : 0; }

  setState(state, detail = '') {
    this.state = state;
    this.handlers.onState?.(state, detail);
  }

  connect() {
    clearTimeout(this.timer);
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    const early = this.early;
    this.early = null;  // only the first connection can be the early one
    const ws = early ? early.ws : new WebSocket(wsUrl(this.path), this.protocols);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setState('open');
      this.handlers.onOpen?.(ws);
    };
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') {
        let message;
        try { message = JSON.parse(event.data); } catch { return; }
        this.handlers.onText?.(message);
      } else {
        this.handlers.onBinary?.(event.data);
      }
    };
    ws.onerror = () => {};  // onclose follows and carries the code
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.handlers.onClose?.(event);
      if (this.stopped) return;
      if (FATAL_CLOSES.has(event.code)) {
        this.setState('failed', closeReason(event));
        return;
      }
      this.scheduleReconnect(event);
    };
    if (early) {  // replay what happened before we took over, in order
      if (early.opened) ws.onopen();
      for (const event of early.messages) ws.onmessage(event);
      if (early.closed) ws.onclose(early.closed);
    }
  }

  scheduleReconnect(event) {
    const delay = backoffDelay(this.attempt, this.minDelayMs, this.maxDelayMs);
    this.attempt += 1;
    this.reconnects += 1;
    this.setState('waiting', `${closeReason(event)} – retrying in ${(delay / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

/** Exponential backoff with ±25 % jitter so a restarted server is not hit all at once. */
export function backoffDelay(attempt, minMs, maxMs) {
  const base = Math.min(maxMs, minMs * 2 ** attempt);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

export function closeReason(event) {
  const known = {
    1000: 'closed', 1001: 'server restarting', 1006: 'connection lost',
    4401: 'not logged in', 4403: 'not allowed', 4404: 'no such device',
    4012: 'replaced by a newer connection', 4013: 'your access changed', 4429: 'too many attempts',
  };
  return event.reason || known[event.code] || `closed (${event.code})`;
}
