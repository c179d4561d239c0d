// A receive-only WebSocket client (RFC 6455) for the load generator's viewers.
//
// Why not `ws` for the viewers: at 200 viewers x 30 fps x 100 KB the generator
// receives 6,000 messages (600 MB) a second. `ws` assembles every message into a
// fresh Buffer (allocation + copy of 100 KB) and spent about 64 µs of CPU per
// message here, twice the relay under test; its serial work per frame burst
// (~13 ms for 200 viewers) then showed up as latency. This client reads each
// socket into one reusable buffer (net `onread`), keeps only the first 24 bytes
// of a binary message (the Sightline header: sequence and capture time) and
// skips the rest, so the generator stays cheap and its own queueing small.
//
// It does the HTTP/1.1 upgrade itself, answers pings (WebSocket and Sightline's
// JSON ping), masks what it sends as a client must, and reports close codes.
"use strict";
const net = require("net");
const crypto = require("crypto");

const OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10;
const CAPTURE = 24;
const READ_BUFFER_BYTES = 128 * 1024;

class RawViewer {
  // handlers: onOpen(), onText(string), onBinary(headerBuffer24, messageLength), onClose(code)
  constructor({ host, port, path, headers }, handlers) {
    this.handlers = handlers;
    this.closeCode = null;
    this.handshakeDone = false;
    this.handshake = "";
    this.header = Buffer.alloc(14);
    this.headerHave = 0;
    this.remaining = -1; // -1: reading a frame header
    this.opcode = 0;
    this.fin = true;
    this.messageOpcode = 0;
    this.messageLength = 0;
    this.capture = Buffer.alloc(CAPTURE);
    this.captured = 0;
    this.parts = [];
    const key = crypto.randomBytes(16).toString("base64");
    this.socket = net.connect({
      host, port, noDelay: true,
      onread: { buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES), callback: (n, buf) => { this.onBytes(buf, n); return true; } },
    });
    const lines = [`GET ${path} HTTP/1.1`, `Host: ${host}:${port}`, "Upgrade: websocket", "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`, "Sec-WebSocket-Version: 13"];
    for (const [name, value] of Object.entries(headers || {})) lines.push(`${name}: ${value}`);
    this.socket.on("connect", () => this.socket.write(lines.join("\r\n") + "\r\n\r\n"));
    this.socket.on("error", () => {});
    this.socket.on("close", () => {
      if (this.closeCode === null) this.closeCode = 1006;
      this.handlers.onClose(this.closeCode);
    });
  }

  onBytes(buf, n) {
    let i = 0;
    if (!this.handshakeDone) {
      this.handshake += buf.toString("latin1", 0, n);
      const end = this.handshake.indexOf("\r\n\r\n");
      if (end < 0) return;
      const status = this.handshake.slice(0, this.handshake.indexOf("\r\n"));
      if (!/^HTTP\/1\.1 101 /.test(status)) {
        this.closeCode = Number(status.split(" ")[1]) || 1002; // HTTP status of the refusal, e.g. 403
        this.socket.destroy();
        return;
      }
      this.handshakeDone = true;
      i = n - (this.handshake.length - end - 4); // bytes after the response headers are frames
      this.handshake = "";
      this.handlers.onOpen();
    }
    while (i < n) {
      if (this.remaining < 0) {
        this.header[this.headerHave++] = buf[i++];
        if (this.headerHave < 2) continue;
        const len7 = this.header[1] & 0x7f;
        const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (this.header[1] & 0x80 ? 4 : 0);
        if (this.headerHave < need) continue;
        this.startFrame(len7);
        if (this.remaining === 0) this.endFrame();
        continue;
      }
      const take = Math.min(this.remaining, n - i);
      if (this.opcode === OP_BINARY || (this.opcode === OP_CONT && this.messageOpcode === OP_BINARY)) {
        if (this.captured < CAPTURE) {
          const k = Math.min(CAPTURE - this.captured, take);
          buf.copy(this.capture, this.captured, i, i + k);
          this.captured += k;
        }
      } else {
        this.parts.push(Buffer.from(buf.subarray(i, i + take)));
      }
      this.remaining -= take;
      i += take;
      if (this.remaining === 0) this.endFrame();
    }
  }

  startFrame(len7) {
    const h = this.header;
    this.fin = (h[0] & 0x80) !== 0;
    this.opcode = h[0] & 0x0f;
    let length = len7;
    if (len7 === 126) length = h.readUInt16BE(2);
    else if (len7 === 127) length = h.readUInt32BE(2) * 4294967296 + h.readUInt32BE(6);
    this.headerHave = 0;
    this.remaining = length;
    if (this.opcode === OP_TEXT || this.opcode === OP_BINARY) {
      this.messageOpcode = this.opcode;
      this.messageLength = 0;
      this.captured = 0;
      this.parts = [];
    } else if (this.opcode !== OP_CONT) {
      this.controlParts = this.parts;
      this.parts = [];
    }
    if (this.opcode <= OP_BINARY) this.messageLength += length;
  }

  endFrame() {
    const opcode = this.opcode;
    this.remaining = -1;
    if (opcode >= OP_CLOSE) {
      const body = Buffer.concat(this.parts);
      this.parts = this.controlParts || [];
      if (opcode === OP_PING) this.sendFrame(OP_PONG, body);
      else if (opcode === OP_CLOSE) {
        this.closeCode = body.length >= 2 ? body.readUInt16BE(0) : 1005;
        this.sendFrame(OP_CLOSE, body.subarray(0, 2));
        this.socket.end();
      }
      return;
    }
    if (!this.fin) return;
    if (this.messageOpcode === OP_BINARY) this.handlers.onBinary(this.capture, this.messageLength, this.captured);
    else this.handlers.onText(Buffer.concat(this.parts).toString("utf8"));
    this.parts = [];
  }

  sendFrame(opcode, payload) {
    if (this.socket.destroyed || !this.socket.writable) return;
    const length = payload.length;
    const extra = length < 126 ? 0 : length < 65536 ? 2 : 8;
    const frame = Buffer.allocUnsafe(2 + extra + 4 + length);
    frame[0] = 0x80 | opcode;
    if (extra === 0) frame[1] = 0x80 | length;
    else if (extra === 2) { frame[1] = 0x80 | 126; frame.writeUInt16BE(length, 2); }
    else { frame[1] = 0x80 | 127; frame.writeUInt32BE(0, 2); frame.writeUInt32BE(length, 6); }
    const mask = crypto.randomBytes(4);
    mask.copy(frame, 2 + extra);
    const offset = 2 + extra + 4;
    for (let k = 0; k < length; k++) frame[offset + k] = payload[k] ^ mask[k & 3];
    this.socket.write(frame);
  }

  sendText(text) {
    this.sendFrame(OP_TEXT, Buffer.from(text, "utf8"));
  }

  close(code = 1000) {
    const body = Buffer.alloc(2);
    body.writeUInt16BE(code, 0);
    this.sendFrame(OP_CLOSE, body);
    this.socket.end();
  }

  terminate() {
    this.socket.destroy();
  }
}

module.exports = { RawViewer };
