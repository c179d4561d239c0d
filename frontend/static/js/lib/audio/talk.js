// Talk-back (docs/protocol.md section 5, "talk"): press and hold Talk (or hold Space on it),
// the microphone (echo cancellation on) is encoded and sent over the viewer socket as
// binary kind-3 frames; the server plays it on the device. Opus through WebCodecs'
// AudioEncoder when the browser has it and the device takes it, else PCM s16le.
// Only for owners and operators (the server renders the button for them only), only when
// the device's hello offers talk-back, and only one talker per device: while someone else
// talks, everyone sees "talking: <name>" and the button is disabled.
import { KIND_AUDIO, encodeFrame } from '../protocol.js';
import { MIC_CONSTRAINTS, chooseMicCodec, startMicEncoder } from './capture.js';

const FORGET_TALKER_MS = 6500;

export function chooseTalkCodec(talkback) {
  if (!talkback) return null;
  return chooseMicCodec(talkback.codecs, talkback.rate);
}

export function setupTalk({ state, send, sendJson }) {
  const $ = (id) => document.getElementById(id);
  const button = $('talk');
  const label = $('talk-state');
  const info = state.talk = { offered: false, talking: null, me: false, framesSent: 0, codec: null, error: null };
  let talkback = null;
  let capture = null;   // { stream, stopEncoder }
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
    const stream = await navigator.mediaDevices.getUserMedia({ audio: MIC_CONSTRAINTS });
    const stopEncoder = startMicEncoder(stream, choice, sendAudio, (error) => {
      info.error = `encoder: ${error.message}`;
      stop();
    });
    return { stream, stopEncoder };
  }

  function stopCapture() {
    if (!capture) return;
    const { stream, stopEncoder } = capture;
    capture = null;
    stopEncoder();
    stream.getTracks().forEach((track) => track.stop());
  }

  function start() {
    if (!talkback || wanted || (info.talking && !info.me)) return;
    wanted = true;
    const choice = chooseTalkCodec(talkback);
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

  // The server repeats "talking: <name>" every second while audio flows; a talker not heard
  // of for longer than the floor's expiry (5 s) is gone (its server may have died).
  let heardAt = 0;
  setInterval(() => {
    if (info.talking && !info.me && performance.now() - heardAt > FORGET_TALKER_MS) {
      info.talking = null;
      render();
    }
  }, 1000);

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
      heardAt = performance.now();
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
