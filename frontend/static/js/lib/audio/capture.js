// The microphone as protocol v1 audio payloads (docs/protocol.md section 3a), for talk-back
// (lib/audio/talk.js) and for publishing from the browser (publish.js): Opus through
// WebCodecs' AudioEncoder when the browser has it (and the receiver takes it), else PCM s16le.

const BLOCK = 1024;  // samples per ScriptProcessor callback: 21 ms at 48 kHz

export const MIC_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 };

export function hasOpusEncoder() { return typeof AudioEncoder !== 'undefined' && typeof AudioData !== 'undefined'; }

/** {codec, rate} to send, given the codecs the receiver accepts (null: any of ours). */
export function chooseMicCodec(accepted = null, pcmRate = 48000) {
  if (hasOpusEncoder() && (!accepted || accepted.includes('opus'))) return { codec: 'opus', rate: 48000 };
  return { codec: 'pcm_s16le', rate: pcmRate };
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

/** Encode the first audio track of `stream`; onPayload(bytes, captureUs) for each payload.
 * Returns a stop() function (which does not stop the track: its owner does). */
export function startMicEncoder(stream, choice, onPayload, onError = () => {}) {
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
        onPayload(data, chunk.timestamp);
      },
      error: onError,
    });
    encoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1, bitrate: 32000,
      opus: { frameDuration: 20000, application: 'voip' } });
  }
  node.onaudioprocess = (event) => {
    const samples = event.inputBuffer.getChannelData(0);
    // Capture time of the block's first sample, on the wall clock the receiver compares with.
    const capturedUs = (Date.now() - (samples.length / choice.rate) * 1000) * 1000;
    if (encoder) {
      encoder.encode(new AudioData({ format: 'f32', sampleRate: choice.rate, numberOfFrames: samples.length,
        numberOfChannels: 1, timestamp: capturedUs, data: new Float32Array(samples) }));
    } else {
      onPayload(floatToS16(samples), capturedUs);
    }
  };
  source.connect(node);
  node.connect(ctx.destination);  // a ScriptProcessor runs only when connected; it outputs silence
  return () => {
    node.onaudioprocess = null;
    source.disconnect();
    ctx.close();
    try { encoder?.close(); } catch { /* already closed */ }
  };
}
