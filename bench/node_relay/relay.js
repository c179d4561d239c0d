// Baseline for bench/fanout.py: the smallest useful relay on the npm `ws` package.
// Every binary message from a device socket (/ws/device/...) is sent, unchanged,
// to every viewer socket (/ws/view/...). No auth, no parsing, no queues of its own:
// it shows what one event loop costs per delivered message with a mature C-free
// WebSocket stack, so Sightline's cost per frame can be compared against it.
//
// usage: node relay.js --port 0   (prints "LISTENING <port>" once bound)
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");

function argValue(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(argValue("--port", "0"));
const host = argValue("--host", "127.0.0.1");
const viewers = new Set();

const server = http.createServer((req, res) => {
  res.writeHead(426, { "content-type": "text/plain" });
  res.end("WebSocket only\n");
});
// perMessageDeflate off: frames are JPEG, compression would only burn CPU.
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });

wss.on("connection", (socket, req) => {
  if (req.url.startsWith("/ws/view/")) {
    viewers.add(socket);
    socket.on("close", () => viewers.delete(socket));
  } else {
    socket.on("message", (data, isBinary) => {
      if (!isBinary) return; // hello/pong etc.: the baseline has no control plane
      for (const viewer of viewers) {
        if (viewer.readyState === 1) viewer.send(data, { binary: true });
      }
    });
  }
  socket.on("error", () => {});
});

server.listen(port, host, () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

function shutdown() {
  for (const client of wss.clients) client.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
