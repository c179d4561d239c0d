// Live audio of the device page: decodes kind-3 frames (lib/audio/decode.js) and schedules
// them as AudioBufferSourceNodes on the capture clock, so sound and picture share one clock:
// a frame captured at T plays at T + delay, where delay follows the video's capture->draw
// latency (never below a small jitter buffer). Muted by default; the AudioContext is made
// on the first unmute, which is a user gesture as browsers require.
//
//   sources -> meter analyser (the device's level) -> volume gain -> output analyser -> speakers
import { PayloadDecoder } from './decode.js';

const MIN_DELAY_MS = 60;     // jitter buffer: packets 20 ms apart arriving unevenly
const MAX_DELAY_MS = 500;
const CONTIGUOUS_S = 0.04;   // closer than this to the previous buffer's end: butt them together

export class LiveAudio {
  constructor({ clockOffsetMs = () => 0, videoLatencyMs = () => null } = {}) {
    this.clockOffsetMs = clockOffsetMs;
    this.videoLatencyMs = videoLatencyMs;
    this.audio = null;          // hello.audio of the device, or null
    this.ctx = null;
    this.decoder = null;
    this.muted = true;
    this.volume = 0.8;
    this.nextTime = 0;
    this.extraDelayMs = 0;
    this.latencyMs = null;      // capture -> played, smoothed
    this.latencies = [];        // the last 500, for the benchmark
    this.framesPlayed = 0;
    this.underruns = 0;
    this.decodeErrors = 0;
  }

  /** The device's hello.audio (from the welcome or a presence message). */
  configure(audio) {
    if (JSON.stringify(audio) === JSON.stringify(this.audio)) return;
    this.decoder?.close();
    this.decoder = null;
    this.audio = audio || null;
    this.nextTime = 0;
  }

  get supported() { return PayloadDecoder.supported(this.audio); }

  async unmute() {
    if (!this.ctx) {
      this.ctx = new AudioContext({ latencyHint: 'interactive' });
      this.meter = this.ctx.createAnalyser();
      this.meter.fftSize = 2048;
      this.gain = this.ctx.createGain();
      this.output = this.ctx.createAnalyser();
      this.output.fftSize = 8192;     // 5.9 Hz bins at 48 kHz: enough to find a tone's pitch
      this.output.smoothingTimeConstant = 0;
      this.meter.connect(this.gain).connect(this.output).connect(this.ctx.destination);
    }
    await this.ctx.resume();
    this.muted = false;
    this.gain.gain.value = this.volume;
  }

  mute() {
    this.muted = true;
    if (this.gain) this.gain.gain.value = 0;
    this.nextTime = 0;
  }

  setVolume(value) {
    this.volume = Math.max(0, Math.min(1, value));
    if (this.gain && !this.muted) this.gain.gain.value = this.volume;
  }

  /** One whole kind-3 frame from lib/protocol.js. */
  handleFrame(frame) {
    if (this.muted || !this.ctx || !this.audio) return;
    if (!this.decoder) {
      this.decoder = new PayloadDecoder(this.audio, (channels, rate, ts) => this.schedule(channels, rate, ts),
        () => { this.decodeErrors++; this.decoder = null; });
    }
    try { this.decoder.decode(frame.payload.slice(), frame.timestampUs); } catch { this.decodeErrors++; }
  }

  /** Wall-clock ms (this browser's) -> AudioContext time, through the output timestamp. */
  contextTimeFor(wallMs) {
    const stamp = this.ctx.getOutputTimestamp();
    const wallAt = performance.timeOrigin + stamp.performanceTime;
    return stamp.contextTime + (wallMs - wallAt) / 1000;
  }

  wallTimeFor(contextTime) {
    const stamp = this.ctx.getOutputTimestamp();
    return performance.timeOrigin + stamp.performanceTime + (contextTime - stamp.contextTime) * 1000;
  }

  targetDelayMs() {
    const video = this.videoLatencyMs();
    const base = Math.max(MIN_DELAY_MS, Number.isFinite(video) ? video : 0);
    return Math.min(MAX_DELAY_MS, base + this.extraDelayMs);
  }

  schedule(channels, rate, timestampUs) {
    if (this.muted || !this.ctx || !channels.length || !channels[0].length) return;
    const ctx = this.ctx;
    const frames = channels[0].length;
    const buffer = ctx.createBuffer(channels.length, frames, rate);
    channels.forEach((plane, c) => buffer.copyToChannel(plane, c));
    const captureMs = timestampUs / 1000 - this.clockOffsetMs();
    let when = this.contextTimeFor(captureMs + this.targetDelayMs());
    if (this.nextTime && Math.abs(when - this.nextTime) < CONTIGUOUS_S) when = this.nextTime;
    const now = ctx.currentTime;
    if (when < now + 0.005) {      // arrived too late for its slot: play now, keep a bigger buffer
      this.underruns++;
      this.extraDelayMs = Math.min(MAX_DELAY_MS, this.extraDelayMs + 20);
      when = now + 0.01;
    } else if (when > now + 2) {   // a clock far off: do not pile up seconds of sound
      return;
    }
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.meter);
    source.start(when);
    this.nextTime = when + frames / rate;
    const latency = this.wallTimeFor(when) - captureMs;
    this.latencyMs = this.latencyMs === null ? latency : this.latencyMs * 0.9 + latency * 0.1;
    this.latencies.push(latency);
    if (this.latencies.length > 500) this.latencies.shift();
    this.framesPlayed++;
  }

  /** RMS level of the device's sound (before the volume), 0..1. */
  level() {
    if (!this.meter || this.muted) return 0;
    const data = new Float32Array(this.meter.fftSize);
    this.meter.getFloatTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += v * v;
    return Math.sqrt(sum / data.length);
  }

  /** What reaches the speakers: RMS and the strongest frequency (Hz), for the tests and the curious. */
  outputAnalysis() {
    if (!this.output) return { rms: 0, peakHz: null };
    const time = new Float32Array(this.output.fftSize);
    this.output.getFloatTimeDomainData(time);
    let sum = 0;
    for (const v of time) sum += v * v;
    const freq = new Float32Array(this.output.frequencyBinCount);
    this.output.getFloatFrequencyData(freq);
    let best = 1;
    for (let i = 2; i < freq.length; i++) if (freq[i] > freq[best]) best = i;
    return { rms: Math.sqrt(sum / time.length), peakHz: (best * this.ctx.sampleRate) / this.output.fftSize };
  }

  close() {
    this.decoder?.close();
    this.ctx?.close();
  }
}
