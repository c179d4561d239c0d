// A small live line chart on a canvas: two series (latency in ms, fps) over the last minute.
export class LiveChart {
  constructor(canvas, { seconds = 60, series = [] } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.seconds = seconds;
    this.series = series;  // [{key, color, min, max}]
    this.samples = [];     // [{t, latency, fps}]
  }

  push(sample) {
    this.samples.push({ t: performance.now(), ...sample });
    const cutoff = performance.now() - this.seconds * 1000;
    while (this.samples.length && this.samples[0].t < cutoff) this.samples.shift();
    this.draw();
  }

  draw() {
    const { ctx, canvas } = this;
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = 'rgba(255,255,255,0.08)';
    for (let y = 0; y <= 4; y++) {
      ctx.beginPath(); ctx.moveTo(0, (y * h) / 4); ctx.lineTo(w, (y * h) / 4); ctx.stroke();
    }
    const now = performance.now();
    for (const s of this.series) {
      const values = this.samples.map((p) => p[s.key]).filter((v) => Number.isFinite(v));
      const max = Math.max(s.max ?? 1, ...values);
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let started = false;
      for (const p of this.samples) {
        const v = p[s.key];
        if (!Number.isFinite(v)) continue;
        const x = w - ((now - p.t) / (this.seconds * 1000)) * w;
        const y = h - 2 - (Math.max(0, v) / max) * (h - 4);
        if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
      }
      ctx.stroke();
      if (values.length) {
        ctx.fillStyle = s.color;
        ctx.font = '10px system-ui, sans-serif';
        ctx.fillText(`${s.label} max ${Math.round(max)}`, 4, 12 + 12 * this.series.indexOf(s));
      }
    }
  }
}
