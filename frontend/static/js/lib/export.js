// Clip export: ask the server for an MP4 of a range, show progress, then the SHA-256 the server
// computed, and check the downloaded bytes against it in this browser; under the download link,
// what the clip holds (picture size, segments joined, which were re-encoded and why).
import { getJson, postJson } from './api.js';
import { clock, formatBytes } from './format.js';

const POLL_MS = 500;
const GIVE_UP_MS = 15 * 60 * 1000;
const VERIFY_UP_TO_BYTES = 512 * 1024 * 1024;  // hashing needs the whole file in memory

export async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

const seconds = (s) => (s < 120 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`);
const spans = (list) => (list || []).map(([a, b]) => `${clock(new Date(a))}–${clock(new Date(b))}`).join(', ');

/** What the status line says while the export runs. */
export function describeProgress(info) {
  const c = info.coverage || {};
  if (info.waiting_for > 0) {
    return `Waiting for ${info.waiting_for} of ${c.segments} segments of this range, still being recorded or processed`
      + (c.max_wait_seconds ? ` (${Math.round(c.waited_seconds || 0)} of at most ${Math.round(c.max_wait_seconds)} s)…` : '…');
  }
  return `Exporting… ${Math.round((info.progress || 0) * 100)} %`;
}

/** What the status line says when the export is done: never "ready" for less than asked without saying so. */
export function describeDone(info) {
  const c = info.coverage || {};
  if (info.complete === false) {
    const why = (c.note || '').split(': ').slice(1).join(': ');
    return `Export ready (${formatBytes(info.bytes)}), but it covers only ${seconds(c.covered_seconds)} of the `
      + `${seconds(c.requested_seconds)} asked: ${spans(c.covered) || 'nothing'}. Missing ${spans(c.missing)}`
      + `${why ? ` (${why})` : ''}.`;
  }
  return `Export ready: ${formatBytes(info.bytes)}, the whole range asked.`;
}

/**
 * What the finished clip holds, in one line under the download link: its picture size, how many
 * segments it joins, the ones re-encoded to fit (and why) and those whose sound is not in it.
 * Segments are named by their start time where startOf(id) knows it (the day on screen), else by id.
 */
export function describeCoverage(c, startOf = () => null) {
  if (!c || !Array.isArray(c.picture) || !Array.isArray(c.segments)) return '';
  const name = (id) => {
    const ms = startOf(id);
    return ms === null || ms === undefined ? `segment ${id.slice(0, 8)}` : clock(new Date(ms));
  };
  const n = c.segments.length;
  const lines = [`${c.picture[0]}×${c.picture[1]}, ${n} segment${n === 1 ? '' : 's'} joined.`];
  if (c.reencoded?.length) {
    lines.push(`Re-encoded to fit: ${c.reencoded.map((r) => `${name(r.id)} (${r.reason})`).join('; ')}.`);
  }
  if (c.audio_left_out?.length) {
    lines.push(`Audio left out: ${c.audio_left_out.map(name).join(', ')} (other audio than the clip's).`);
  }
  return lines.join(' ');
}

/**
 * @param {object} job   {url, startMs, endMs, fileName, signal, segmentStart}: an aborted signal stops following
 *                        the export and leaves the elements alone (the page moved to another day);
 *                        segmentStart(id) is a segment's start (ms) or null (describeCoverage)
 * @param {object} els   {progress, status, checksumRow, checksum, verified, download, details}
 * @param {function} onUpdate  called with the export's latest state (for window.sightline)
 */
export async function runExport({ url, startMs, endMs, fileName, signal, segmentStart }, els, onUpdate) {
  const gone = () => Boolean(signal?.aborted);
  const say = (text) => { if (!gone()) els.status.textContent = text; };
  els.download.hidden = true;
  els.details.hidden = true;
  els.details.textContent = '';
  els.checksumRow.hidden = true;
  els.progress.hidden = false;
  delete els.status.dataset.complete;
  els.progress.value = 0;
  let info = { state: 'requested', progress: 0 };
  onUpdate(info);
  let created;
  try {
    created = await postJson(url, { start: new Date(startMs).toISOString(), end: new Date(endMs).toISOString() });
  } catch (error) {
    onUpdate({ state: 'failed', error: error.message });
    say(`Export refused: ${error.message}`);
    els.progress.hidden = true;
    return;
  }
  say('Export queued…');
  const deadline = Date.now() + GIVE_UP_MS;
  info = { ...created, state: 'queued', progress: 0 };
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    if (gone()) return;
    try {
      info = await getJson(created.status_url || `/api/exports/${created.id}/`);
    } catch (error) {
      say(`Checking export: ${error.message}`);
      continue;
    }
    if (gone()) return;
    onUpdate({ ...info });
    els.progress.value = info.progress || 0;
    if (info.state === 'done' || info.state === 'failed') break;
    say(describeProgress(info));
  }
  if (info.state !== 'done') {
    say(`Export failed: ${info.failure_reason || info.error || info.state}`);
    return;
  }
  if (gone()) return;
  els.progress.value = 1;
  say(describeDone(info));
  els.status.dataset.complete = String(info.complete !== false);
  els.checksum.textContent = info.checksum;
  els.checksumRow.hidden = false;
  els.download.href = info.download_url;
  els.download.download = fileName;
  els.download.hidden = false;
  els.details.textContent = describeCoverage(info.coverage, segmentStart);
  els.details.hidden = !els.details.textContent;
  if (!crypto.subtle || info.bytes >= VERIFY_UP_TO_BYTES) return;  // crypto.subtle needs https or localhost
  els.verified.textContent = 'verifying…';
  try {
    const response = await fetch(info.download_url, { credentials: 'same-origin' });
    const computed = await sha256Hex(await response.arrayBuffer());
    if (gone()) return;
    info = { ...info, computedChecksum: computed, verified: computed === info.checksum };
    onUpdate(info);
    els.verified.textContent = info.verified ? '✓ matches the downloaded file' : `✗ downloaded file hashes to ${computed}`;
  } catch (error) {
    els.verified.textContent = `could not verify: ${error.message}`;
  }
}
