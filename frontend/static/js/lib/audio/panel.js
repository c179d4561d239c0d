// The device page's audio controls: mute/unmute (muted by default), volume, level meter,
// an "audio only" badge for a device that sends sound but no picture, and the capture ->
// played latency in the overlay. device.js plugs it in; state lands on window.sightline.audio.
import { LiveAudio } from './player.js';
import { startMeter } from './meter.js';

const AUDIO_ONLY_AFTER_MS = 3000;  // online with audio and no picture for this long

export function setupAudioPanel({ state, player, resubscribe }) {
  const $ = (id) => document.getElementById(id);
  const panel = $('audio-panel');
  const audio = new LiveAudio({
    clockOffsetMs: () => player.clockOffsetMs,
    videoLatencyMs: () => state.latencyMs,
  });
  const info = state.audio = {
    available: false, codec: null, muted: true, volume: audio.volume, level: 0, meterMoves: 0,
    latencyMs: null, framesPlayed: 0, underruns: 0, audioOnly: false,
    latencies: () => audio.latencies.slice(),
    analysis: () => audio.outputAnalysis(),
  };
  let onlineSince = null;
  const button = $('audio-mute');
  const volume = $('audio-volume');

  function render() {
    if (!panel) return;
    panel.hidden = !info.available;
    button.textContent = info.muted ? 'Unmute' : 'Mute';
    button.setAttribute('aria-pressed', String(!info.muted));
    $('audio-codec').textContent = info.codec || '';
    $('audio-only').hidden = !info.audioOnly;
    const stat = $('stat-audio-latency');
    if (stat) stat.textContent = info.muted || audio.latencyMs === null ? '–' : `${Math.round(audio.latencyMs)} ms`;
  }

  button?.addEventListener('click', async () => {
    if (info.muted) {
      await audio.unmute();
      info.muted = false;
    } else {
      audio.mute();
      info.muted = true;
    }
    resubscribe();
    render();
  });
  volume?.addEventListener('input', () => { audio.setVolume(Number(volume.value)); info.volume = audio.volume; });

  let lastMeter = 0;
  if ($('audio-level')) {
    startMeter($('audio-level'), () => audio.level(), (value) => {
      if (Math.abs(value - lastMeter) > 0.01) info.meterMoves++;
      lastMeter = value;
      info.level = value;
    });
  }

  setInterval(() => {
    info.latencyMs = audio.latencyMs;
    info.framesPlayed = audio.framesPlayed;
    info.underruns = audio.underruns;
    const noPicture = state.online && onlineSince !== null && performance.now() - onlineSince > AUDIO_ONLY_AFTER_MS
      && player.framesDrawn === 0;
    info.audioOnly = Boolean(info.available && noPicture);
    render();
  }, 500);

  return {
    audio,
    /** Media the device announced (welcome.media or a presence message's media). */
    setMedia(media, online) {
      onlineSince = online ? (onlineSince ?? performance.now()) : null;
      const hello = media?.audio || null;
      audio.configure(hello);
      info.available = Boolean(hello && audio.supported);
      info.codec = hello ? `${hello.codec} ${hello.rate / 1000} kHz` : null;
      render();
    },
    /** Kinds to subscribe to: audio only while unmuted (nobody pays for sound nobody hears). */
    kinds() { return info.muted ? ['jpeg', 'h264'] : ['jpeg', 'h264', 'audio']; },
    handleFrame(frame) { audio.handleFrame(frame); },
    close() { audio.close(); },
  };
}
