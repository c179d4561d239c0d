// Small formatting helpers shared by the pages.
export function formatBitrate(bps) {
  if (!Number.isFinite(bps)) return '–';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mb/s`;
  if (bps >= 1e3) return `${Math.round(bps / 1e3)} kb/s`;
  return `${Math.round(bps)} b/s`;
}

export function formatBytes(n) {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function formatAgo(iso, now = Date.now()) {
  if (!iso) return 'never seen';
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 5) return 'seen just now';
  if (seconds < 60) return `seen ${seconds} s ago`;
  if (seconds < 3600) return `seen ${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `seen ${Math.round(seconds / 3600)} h ago`;
  return `seen ${new Date(iso).toLocaleDateString()}`;
}

/** What a connected device streams from (hello.source.kind, docs/protocol.md), in words. */
export function sourceLabel(kind) {
  return {
    rtsp: 'RTSP bridge',
    pattern: 'agent: test pattern',
    file: 'agent: video file',
    v4l2: 'agent: webcam (V4L2)',
    browser: 'browser',
  }[kind] || '';
}

export const pad = (n, w = 2) => String(n).padStart(w, '0');

/** HH:MM:SS of a Date in local time. */
export function clock(date) {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** YYYY-MM-DD of a Date in local time (the value of <input type=date>). */
export function isoDay(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function readConfig() {
  const el = document.getElementById('page-config');
  return el ? JSON.parse(el.textContent) : {};
}
