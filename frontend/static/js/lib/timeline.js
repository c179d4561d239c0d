// Day timeline: recorded segments (with their thumbnail strips) laid out over 24 hours,
// gaps left visible, zoom, click or drag to seek, shift-drag to select a range, keyboard.
import { clock, pad } from './format.js';

export const ZOOM_SPANS = [86400, 21600, 7200, 3600, 900, 300, 60];  // seconds visible in the window
const TICK_STEPS = [7200, 1800, 600, 300, 60, 30, 10];

export class Timeline {
  /**
   * @param {object} els  {wrap, timeline, segments, ticks, playhead, hover, selection, zoomLabel}
   * @param {object} on   {seek(wallMs), scrub(wallMs), select(startMs, endMs)}
   */
  constructor(els, on) {
    this.els = els;
    this.on = on;
    this.dayStart = 0;
    this.dayEnd = 0;
    this.zoom = 0;
    this.segments = [];
    this.playheadMs = null;
    this.drag = null;
    this.bind();
  }

  setDay(startMs, endMs) {
    this.dayStart = startMs;
    this.dayEnd = endMs;
    this.els.timeline.setAttribute('aria-valuemax', String(Math.round((endMs - startMs) / 1000)));
    this.renderTicks();
  }

  get spanMs() { return this.dayEnd - this.dayStart; }

  /** Fraction 0..1 of the day for a wall-clock time. */
  frac(ms) { return (ms - this.dayStart) / this.spanMs; }

  setSegments(segments) {
    this.segments = segments;
    const box = this.els.segments;
    box.replaceChildren();
    for (const s of segments) {
      const start = Date.parse(s.start);
      const end = s.end ? Date.parse(s.end) : Date.now();
      const left = Math.max(0, this.frac(start));
      const right = Math.min(1, this.frac(end));
      if (right <= 0 || left >= 1) continue;
      const el = document.createElement('div');
      el.className = `segment state-${s.state}`;
      el.dataset.segmentId = s.id;
      el.style.left = `${left * 100}%`;
      el.style.width = `${(right - left) * 100}%`;  // CSS min-width keeps short ones visible
      if (s.strip_url) el.style.backgroundImage = `url("${s.strip_url}")`;
      el.title = `${clock(new Date(start))}–${clock(new Date(end))} · ${s.state}${s.has_audio ? ' · audio' : ''}${s.held ? ' · held' : ''}`;
      box.append(el);
    }
  }

  setZoom(index, centreMs = this.playheadMs ?? this.dayStart + this.spanMs / 2) {
    this.zoom = Math.max(0, Math.min(ZOOM_SPANS.length - 1, index));
    const factor = 86400 / ZOOM_SPANS[this.zoom];
    this.els.timeline.style.width = `${factor * 100}%`;
    const span = ZOOM_SPANS[this.zoom];
    this.els.zoomLabel.textContent = span >= 3600 ? `${span / 3600} h` : span >= 60 ? `${span / 60} min` : `${span} s`;
    this.renderTicks();
    this.scrollTo(centreMs);
  }

  scrollTo(ms) {
    const wrap = this.els.wrap;
    const x = this.frac(ms) * this.els.timeline.clientWidth;
    wrap.scrollLeft = Math.max(0, x - wrap.clientWidth / 2);
  }

  renderTicks() {
    const step = TICK_STEPS[this.zoom] * 1000;
    const box = this.els.ticks;
    box.replaceChildren();
    if (!this.spanMs) return;
    for (let t = this.dayStart; t <= this.dayEnd; t += step) {
      const d = new Date(t);
      const tick = document.createElement('span');
      tick.className = 'tick';
      tick.style.left = `${this.frac(t) * 100}%`;
      tick.textContent = step >= 60000 ? `${pad(d.getHours())}:${pad(d.getMinutes())}` : clock(d);
      box.append(tick);
    }
  }

  setPlayhead(ms) {
    this.playheadMs = ms;
    const el = this.els.playhead;
    if (ms === null) { el.hidden = true; return; }
    el.hidden = false;
    el.style.left = `${this.frac(ms) * 100}%`;
    this.els.timeline.setAttribute('aria-valuenow', String(Math.round((ms - this.dayStart) / 1000)));
    this.els.timeline.setAttribute('aria-valuetext', clock(new Date(ms)));
    const wrap = this.els.wrap;
    const x = this.frac(ms) * this.els.timeline.clientWidth;
    if (!this.drag && (x < wrap.scrollLeft || x > wrap.scrollLeft + wrap.clientWidth)) this.scrollTo(ms);
  }

  setSelection(startMs, endMs) {
    const el = this.els.selection;
    if (startMs === null || endMs === null || endMs <= startMs) { el.hidden = true; return; }
    el.hidden = false;
    el.style.left = `${this.frac(startMs) * 100}%`;
    el.style.width = `${(this.frac(endMs) - this.frac(startMs)) * 100}%`;
  }

  timeAt(clientX) {
    const rect = this.els.timeline.getBoundingClientRect();
    const f = Math.max(0, Math.min(1, (clientX - rect.left) / rect.width));
    return this.dayStart + f * this.spanMs;
  }

  /** Segment containing ms, else the next one after it (so a click in a gap plays what follows). */
  segmentAtOrAfter(ms) {
    for (const s of this.segments) {
      const end = s.end ? Date.parse(s.end) : Date.now();
      if (end > ms) return s;
    }
    return null;
  }

  bind() {
    const tl = this.els.timeline;
    tl.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      tl.setPointerCapture(e.pointerId);
      this.drag = { from: this.timeAt(e.clientX), select: e.shiftKey };
      this.showHover(this.drag.from);
    });
    tl.addEventListener('pointermove', (e) => {
      const t = this.timeAt(e.clientX);
      this.showHover(t);
      if (this.drag?.select) this.setSelection(Math.min(this.drag.from, t), Math.max(this.drag.from, t));
      else if (this.drag) { this.setPlayhead(t); this.on.scrub?.(t); }  // scrubbing: preview, seek on release
    });
    tl.addEventListener('pointerleave', () => { if (!this.drag) this.showHover(null); });
    tl.addEventListener('pointerup', (e) => {
      if (!this.drag) return;
      const t = this.timeAt(e.clientX);
      const { from, select } = this.drag;
      this.drag = null;
      this.showHover(null);
      if (select && Math.abs(t - from) > 500) this.on.select(Math.min(from, t), Math.max(from, t));
      else this.on.seek(t);
    });
    tl.addEventListener('keydown', (e) => {
      const at = this.playheadMs ?? this.dayStart;
      const big = e.shiftKey ? 60000 : 10000;
      const keys = {
        ArrowLeft: () => this.on.seek(at - big),
        ArrowRight: () => this.on.seek(at + big),
        Home: () => this.on.seek(this.segments.length ? Date.parse(this.segments[0].start) : this.dayStart),
        End: () => this.on.seek(this.dayEnd - 1000),
        PageDown: () => { const s = this.segmentAtOrAfter(at + 1000); if (s) this.on.seek(Math.max(at + 1000, Date.parse(s.start))); },
        '+': () => this.setZoom(this.zoom + 1),
        '=': () => this.setZoom(this.zoom + 1),
        '-': () => this.setZoom(this.zoom - 1),
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
  }

  showHover(ms) {
    const el = this.els.hover;
    if (ms === null) { el.hidden = true; return; }
    el.hidden = false;
    el.style.left = `${this.frac(ms) * 100}%`;
    el.textContent = clock(new Date(ms));
  }
}
