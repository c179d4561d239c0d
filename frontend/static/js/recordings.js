// Recordings: a day timeline per device, continuous HLS playback across segments
// (hls.js over MSE; the browser's own HLS where there is no MSE), seek, day jumps, export.
import { getJson } from './lib/api.js';
import { runExport } from './lib/export.js';
import { clock, isoDay, readConfig } from './lib/format.js';
import { MediaMap, mapFromSegments } from './lib/mediamap.js';
import { Timeline, ZOOM_SPANS } from './lib/timeline.js';

const config = readConfig();
const $ = (id) => document.getElementById(id);
const video = $('video');
const status = (text) => { $('timeline-status').textContent = text; };

const state = window.sightline = {
  page: 'recordings',
  deviceId: config.device.id,
  day: null,
  segments: [],
  engine: null,             // 'hls.js' | 'native'
  playlistLoaded: false,
  fragments: 0,
  playing: false,
  currentWallMs: null,
  lastSeek: null,           // {targetWallMs, targetMedia, landedMedia, ms}
  seeks: [],
  export: null,
  exportWaitedFor: 0,       // most segments the current export was seen waiting for (0: it did not wait)
  errors: [],
};

// Wall clock <-> position in the HLS stream: from the playlist's EXT-X-PROGRAM-DATE-TIME
// (hls.js fragments) or, with native HLS, from the playable segments in order.
let media = new MediaMap();
const wallToMedia = (ms) => media.wallToMedia(ms);
const mediaToWall = (t) => media.mediaToWall(t);

// -- playback engine ------------------------------------------------------------
let hls = null;
let Hls = null;

async function loadEngine() {
  try {
    Hls = (await import('../vendor/hls.min.mjs')).default;
  } catch {
    Hls = null;  // vendor files missing (scripts/build-frontend not run): try native HLS
  }
  if (Hls && Hls.isSupported()) return 'hls.js';
  if (video.canPlayType('application/vnd.apple.mpegurl')) return 'native';
  return null;
}

function playlistUrl(day) {
  const q = new URLSearchParams({ start: new Date(day.start).toISOString(), end: new Date(day.end).toISOString() });
  return `${config.playlistUrl}?${q}`;
}

/** (Re)load the day's playlist; resolves when the fragment map is known. */
function loadPlaylist() {
  state.playlistLoaded = false;
  const url = playlistUrl(currentDay);
  return new Promise((resolve, reject) => {
    if (state.engine === 'hls.js') {
      hls?.destroy();
      hls = new Hls({ maxBufferLength: 20, backBufferLength: 30, enableWorker: true });
      hls.on(Hls.Events.LEVEL_LOADED, (_e, data) => {
        media = new MediaMap(data.details.fragments
          .filter((f) => f.programDateTime)
          .map((f) => ({ mediaStart: f.start, duration: f.duration, wallStart: f.programDateTime })));
        state.fragments = media.length;
        state.playlistLoaded = true;
        resolve();
      });
      hls.on(Hls.Events.ERROR, (_e, data) => {
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR && data.details === Hls.ErrorDetails.LEVEL_LOAD_ERROR
            || data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR) {
          reject(new Error(data.response?.code === 404 ? 'no playable recordings' : 'playlist failed to load'));
        }
        if (data.fatal) {
          state.errors.push(`${data.type}: ${data.details}`);
          if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else {
      media = mapFromSegments(state.segments.filter(playable));
      state.fragments = media.length;
      video.src = url;
      video.addEventListener('loadedmetadata', () => { state.playlistLoaded = true; resolve(); }, { once: true });
      video.addEventListener('error', () => reject(new Error('playlist failed to load')), { once: true });
    }
  });
}

/** Forget the previous day's stream, so nothing of it plays under another day's timeline. */
function stopPlayback() {
  hls?.destroy();
  hls = null;
  media = new MediaMap();
  state.fragments = 0;
  state.playlistLoaded = false;
  state.playing = false;
  pendingSeek = null;
  video.removeAttribute('src');
  video.removeAttribute('poster');
  video.load();
}

// media_url is set exactly when this host can serve the segment now (ready on another host's spool:
// not until it is archived), so the timeline and the playlist agree.
const playable = (s) => Boolean(s.media_url);

// -- seeking ----------------------------------------------------------------------
let pendingSeek = null;

async function seekTo(wallMs) {
  wallMs = Math.max(currentDay.start, Math.min(currentDay.end - 1, wallMs));
  const lastPlayable = state.segments.filter(playable).at(-1);
  const coveredUntil = media.coveredUntil;
  if (lastPlayable && Date.parse(lastPlayable.end) > coveredUntil && wallMs >= coveredUntil - 1000) {
    // Newer segments became playable since the playlist was loaded (today): reload it first.
    try { await loadPlaylist(); } catch (error) { status(error.message); return; }
  }
  const target = wallToMedia(wallMs);
  if (target === null) {
    status(`Nothing recorded after ${clock(new Date(wallMs))} on this day.`);
    return;
  }
  pendingSeek = { targetWallMs: wallMs, targetMedia: target, startedAt: performance.now() };
  timeline.setPlayhead(mediaToWall(target));
  video.currentTime = target;
  const played = video.play();
  if (played) {
    played.catch(() => {
      // Autoplay with sound refused before any user gesture: play muted, the user can unmute.
      video.muted = true;
      video.play().catch(() => {});
    });
  }
}

/** While dragging along the timeline, show the frame under the pointer (one seek at a time). */
function scrubPreview(wallMs) {
  const target = wallToMedia(wallMs);
  if (target === null || video.seeking || !state.playlistLoaded) return;
  video.currentTime = target;
}

function finishSeekIfPlaying() {
  if (!pendingSeek || video.seeking || video.paused || video.readyState < 3) return;
  const ms = performance.now() - pendingSeek.startedAt;
  state.lastSeek = { ...pendingSeek, landedMedia: video.currentTime, landedWallMs: mediaToWall(video.currentTime), ms };
  state.seeks.push(state.lastSeek);
  pendingSeek = null;
}

video.addEventListener('seeked', finishSeekIfPlaying);
video.addEventListener('playing', () => { state.playing = true; finishSeekIfPlaying(); });
video.addEventListener('canplay', finishSeekIfPlaying);
video.addEventListener('pause', () => { state.playing = false; });
video.addEventListener('ended', () => { state.playing = false; status('End of the recordings of this day.'); });
video.addEventListener('timeupdate', () => {
  finishSeekIfPlaying();
  const wall = mediaToWall(video.currentTime);
  state.currentTime = video.currentTime;
  state.currentWallMs = wall;
  if (wall !== null) {
    $('video-clock').textContent = new Date(wall).toLocaleString();
    if (!timeline.drag) timeline.setPlayhead(wall);
  }
});

// -- days -------------------------------------------------------------------------
let currentDay = null;

function dayBounds(isoDate) {
  const [y, m, d] = isoDate.split('-').map(Number);
  return { iso: isoDate, start: new Date(y, m - 1, d).getTime(), end: new Date(y, m - 1, d + 1).getTime() };
}

async function fetchSegments() {
  const day = currentDay;
  const q = new URLSearchParams({ start: new Date(day.start).toISOString(), end: new Date(day.end).toISOString() });
  const body = await getJson(`${config.segmentsUrl}?${q}`);
  if (day !== currentDay) return state.segments;  // the day changed meanwhile: its answer is stale
  state.segments = (body.segments || []).slice().sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
  timeline.setSegments(state.segments);
  return state.segments;
}

async function showDay(isoDate) {
  currentDay = dayBounds(isoDate);
  state.day = isoDate;
  $('day').value = isoDate;
  const url = new URL(location.href);
  url.searchParams.set('date', isoDate);
  history.replaceState(null, '', url);
  timeline.setDay(currentDay.start, currentDay.end);
  timeline.setPlayhead(null);
  stopPlayback();
  clearDayState();
  status('loading…');
  const day = currentDay;
  try {
    await fetchSegments();
  } catch (error) {
    if (day === currentDay) status(`Could not load recordings: ${error.message}`);
    return;
  }
  if (day !== currentDay) return;  // another day was chosen while this one loaded
  const ready = state.segments.filter(playable);
  const recorded = state.segments.reduce((sum, s) => sum + (s.duration || 0), 0);
  status(state.segments.length
    ? `${state.segments.length} segments, ${recorded < 120 ? `${Math.round(recorded)} s` : `${Math.round(recorded / 60)} min`} recorded${ready.length < state.segments.length ? `, ${state.segments.length - ready.length} still processing` : ''}. Click the timeline to play; shift-drag to select.`
    : 'No recordings on this day.');
  fitZoom();
  if (!ready.length || !state.engine) return;
  if (ready[0].poster_url) video.poster = ready[0].poster_url;
  try { await loadPlaylist(); } catch (error) { status(error.message); }
  if (media.length) timeline.setPlayhead(media.fragments[0].wallStart);
}

/** Nothing of the previous day stays on screen: its clock, selection and export result. */
function clearDayState() {
  state.currentWallMs = null;
  state.currentTime = null;
  $('video-clock').textContent = '';
  state.segments = [];
  timeline.setSegments([]);
  select(null, null);
  exportRun?.abort();
  exportRun = null;
  state.export = null;
  state.exportWaitedFor = 0;
  if (exportForm) {
    $('export-start').value = '';
    $('export-end').value = '';
    $('export-status').textContent = '';
    delete $('export-status').dataset.complete;
    $('export-progress').hidden = true;
    $('export-checksum-row').hidden = true;
    $('export-checksum').textContent = '';
    $('export-verified').textContent = '';
    $('export-download').hidden = true;
    $('export-download').removeAttribute('href');
    $('export-details').hidden = true;
    $('export-details').textContent = '';
  }
}

/** Zoom so the day's recordings fill the view: short recordings would be slivers at 24 h. */
function fitZoom() {
  if (!state.segments.length) { timeline.setZoom(0); return; }
  const first = Date.parse(state.segments[0].start);
  const last = state.segments.at(-1);
  const end = last.end ? Date.parse(last.end) : Date.now();
  let index = 0;
  while (index + 1 < ZOOM_SPANS.length && ZOOM_SPANS[index + 1] * 1000 >= (end - first) * 1.5) index++;
  timeline.setZoom(index, (first + end) / 2);
}

function shiftDay(days) {
  const d = new Date(currentDay.start);
  d.setDate(d.getDate() + days);
  showDay(isoDay(d));
}

// -- export -------------------------------------------------------------------------
const exportForm = $('export');
let selection = { start: null, end: null };
let exportRun = null;  // AbortController of the export being followed (a day change stops following it)

function timeOfDay(ms) { return clock(new Date(ms)); }

function msFromTimeInput(value) {
  const [h, m, s = 0] = value.split(':').map(Number);
  const d = new Date(currentDay.start);
  d.setHours(h, m, s, 0);
  return d.getTime();
}

function select(startMs, endMs) {
  selection = { start: startMs, end: endMs };
  timeline.setSelection(startMs, endMs);
  if (exportForm) {
    if (startMs !== null) $('export-start').value = timeOfDay(startMs);
    if (endMs !== null) $('export-end').value = timeOfDay(endMs);
  }
}

if (exportForm) {
  $('mark-in').addEventListener('click', () => select(state.currentWallMs ?? timeline.playheadMs, selection.end));
  $('mark-out').addEventListener('click', () => select(selection.start, state.currentWallMs ?? timeline.playheadMs));
  for (const id of ['export-start', 'export-end']) {
    $(id).addEventListener('change', () => {
      selection = { start: msFromTimeInput($('export-start').value || '00:00:00'), end: msFromTimeInput($('export-end').value || '00:00:00') };
      timeline.setSelection(selection.start, selection.end);
    });
  }
  exportForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const start = msFromTimeInput($('export-start').value);
    const end = msFromTimeInput($('export-end').value);
    if (!(end > start)) { $('export-status').textContent = 'The end must be after the start.'; return; }
    const fileName = `${config.device.name.replace(/[^\w-]+/g, '_')}-${new Date(start).toISOString().replace(/[:.]/g, '-')}.mp4`;
    exportRun?.abort();
    exportRun = new AbortController();
    state.exportWaitedFor = 0;
    const { signal } = exportRun;
    const segmentStart = (id) => {
      const segment = state.segments.find((s) => s.id === id);
      return segment ? Date.parse(segment.start) : null;
    };
    runExport({ url: config.exportsUrl, startMs: start, endMs: end, fileName, signal, segmentStart }, {
      progress: $('export-progress'), status: $('export-status'), checksumRow: $('export-checksum-row'),
      checksum: $('export-checksum'), verified: $('export-verified'), download: $('export-download'),
      details: $('export-details'),
    }, (info) => {
      if (signal.aborted) return;
      state.export = info;
      state.exportWaitedFor = Math.max(state.exportWaitedFor, info.waiting_for || 0);
    });
  });
}

// -- wiring -----------------------------------------------------------------------------
const timeline = new Timeline({
  wrap: $('timeline-wrap'), timeline: $('timeline'), segments: $('segments'), ticks: $('ticks'),
  playhead: $('playhead'), hover: $('hover'), selection: $('selection'), zoomLabel: $('zoom-level'),
}, {
  seek: (ms) => seekTo(ms),
  scrub: (ms) => scrubPreview(ms),
  select: (start, end) => select(start, end),
});

$('day-prev').addEventListener('click', () => shiftDay(-1));
$('day-next').addEventListener('click', () => shiftDay(1));
$('day').addEventListener('change', () => { if ($('day').value) showDay($('day').value); });
$('zoom-in').addEventListener('click', () => timeline.setZoom(timeline.zoom + 1));
$('zoom-out').addEventListener('click', () => timeline.setZoom(timeline.zoom - 1));

// Test and debugging hooks: seek by wall-clock time, and the zoom levels.
state.seekTo = (ms) => seekTo(ms);
state.select = (startMs, endMs) => select(startMs, endMs);
state.zoomSpans = ZOOM_SPANS;

(async () => {
  state.engine = await loadEngine();
  if (!state.engine) status('This browser cannot play HLS recordings.');
  await showDay(config.date || isoDay(new Date()));
  // Today's timeline grows while the device records.
  setInterval(() => {
    if (currentDay && Date.now() < currentDay.end && Date.now() >= currentDay.start) fetchSegments().catch(() => {});
  }, 15000);
})();
