// Talk-back (docs/protocol.md section 5, "talk"): press and hold Talk (or hold Space on it),
// the microphone (echo cancellation on) is encoded and sent over the viewer socket as
// binary kind-3 frames; the server plays it on the device. Opus through WebCodecs'
// AudioEncoder when the browser has it and the device takes it, else PCM s16le.
// Only for owners and operators (the server renders the button for them only), only when
// the device's hello offers talk-back, and only one talker per device: while someone else
// talks, everyone sees "talking: <name>" and the button is disabled.
import { KIND_AUDIO, encodeFrame } from '../protocol.js';

const BLOCK = 1024;  // samples per ScriptProcessor callback: 21 ms at 48 kHz

export function chooseTalkCodec(talkback, hasEncoder) {
  if (!talkback) return null;
  if (hasEncoder && talkback.codecs.includes('opus')) return { codec: 'opus', rate: 48000 };
  return { codec: 'pcm_s16le', rate: talkback.rate };
}

export function floatToS16(samples) {
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(i * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
  }
  return out;
}

export function setupTalk({ state, send, sendJson }) {
  const $ = (id) => document.getElementById(id);
  const button = $('talk');
  const label = $('talk-state');
  const info = state.talk = { offered: false, talking: null, me: false, framesSent: 0, codec: null, error: null };
  let talkback = null;
  let capture = null;   // { stream, ctx, node, encoder }
  let wanted = false;   // the button is held
  let seq = 0;

  function render() {
    const panel = $('talk-panel');
    if (panel) panel.hidden = !info.offered && !info.talking;
    if (button) {
      button.hidden = !info.offered;
      button.disabled = Boolean(info.talking && !info.me);
      button.setAttribute('aria-pressed', String(info.me));
      button.textContent = info.me ? 'Talking… (release to stop)' : 'Hold to talk';
    }
    if (label) {
      label.textContent = info.me ? 'You are talking' : (info.talking ? `talking: ${info.talking}` : (info.error || ''));
    }
  }

  function sendAudio(payload, timestampUs) {
    seq = (seq + 1) >>> 0;
    for (const message of encodeFrame(KIND_AUDIO, payload, seq, Math.round(timestampUs))) send(message);
    info.framesSent++;
  }

  async function startCapture(choice) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    const ctx = new AudioContext({ sampleRate: choice.rate, latencyHint: 'interactive' });
    const source = ctx.createMediaStreamSource(stream);
    // ScriptProcessorNode hands us the samples on the main thread with no module to load;
    // at 21 ms blocks that costs little, and it works where AudioWorklet is restricted.
    const node = ctx.createScriptProcessor(BLOCK, 1, 1);
    let encoder = null;
    if (choice.codec === 'opus') {
      encoder = new AudioEncoder({
        output: (chunk) => {
          const data = new Uint8Array(chunk.byteLength);
          chunk.copyTo(data);
          sendAudio(data, chunk.timestamp);
        },
        error: (error) => { info.error = `encoder: ${error.message}`; stop(); },
      });
      encoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1, bitrate: 32000,
        opus: { frameDuration: 20000, application: 'voip' } });
    }
    node.onaudioprocess = (event) => {
      const samples = event.inputBuffer.getChannelData(0);
      // Capture time of the block's first sample, on the wall clock the device compares with.
      const capturedUs = (Date.now() - (samples.length / choice.rate) * 1000) * 1000;
      if (encoder) {
        encoder.encode(new AudioData({ format: 'f32', sampleRate: choice.rate, numberOfFrames: samples.length,
          numberOfChannels: 1, timestamp: capturedUs, data: new Float32Array(samples) }));
      } else {
        sendAudio(floatToS16(samples), capturedUs);
      }
    };
    source.connect(node);
    node.connect(ctx.destination);  // a ScriptProcessor runs only when connected; it outputs silence
    return { stream, ctx, node, encoder };
  }

  function stopCapture() {
    if (!capture) return;
    const { stream, ctx, node, encoder } = capture;
    capture = null;
    node.onaudioprocess = null;
    stream.getTracks().forEach((track) => track.stop());
    ctx.close();
    try { encoder?.close(); } catch { /* already closed */ }
  }

  function start() {
    if (!talkback || wanted || (info.talking && !info.me)) return;
    wanted = true;
    const choice = chooseTalkCodec(talkback, typeof AudioEncoder !== 'undefined');
    info.codec = choice.codec;
    info.error = null;
    sendJson({ type: 'talk', action: 'start', codec: choice.codec, rate: choice.rate });
  }

  function stop() {
    if (!wanted && !info.me) return;
    wanted = false;
    stopCapture();
    if (info.me) sendJson({ type: 'talk', action: 'stop' });
    info.me = false;
    render();
  }

  if (button) {
    button.addEventListener('pointerdown', (event) => { event.preventDefault(); start(); });
    for (const name of ['pointerup', 'pointerleave', 'pointercancel']) button.addEventListener(name, stop);
    button.addEventListener('keydown', (event) => { if (event.key === ' ' && !event.repeat) { event.preventDefault(); start(); } });
    button.addEventListener('keyup', (event) => { if (event.key === ' ') stop(); });
  }
  window.addEventListener('blur', stop);

  return {
    setMedia(media) {
      talkback = media?.talkback || null;
      info.offered = Boolean(talkback && button);
      if (!talkback) stop();
      render();
    },
    setTalking(name) {
      info.talking = name || null;
      render();
    },
    async onResult(message) {
      if (!message.ok) {
        wanted = false;
        info.error = message.error === 'busy' ? null : `cannot talk: ${message.error}`;
        info.talking = message.talking || info.talking;
        render();
        return;
      }
      if (!wanted) { sendJson({ type: 'talk', action: 'stop' }); return; }  // released before the answer
      info.me = true;
      info.talking = message.talking;
      render();
      try {
        capture = await startCapture({ codec: info.codec, rate: info.codec === 'opus' ? 48000 : talkback.rate });
        if (!wanted) stopCapture();
      } catch (error) {
        info.error = `microphone: ${error.message}`;
        stop();
      }
    },
    stop,
    start,
  };
}
