// Audio payloads of protocol v1 (docs/protocol.md section 3a) -> Float32 samples, for the
// live player. PCM and G.711 are decoded here; AAC and Opus by WebCodecs' AudioDecoder.

/** G.711 A-law byte -> linear 16-bit (ITU-T G.711). */
function alawSample(a) {
  a ^= 0x55;
  let t = (a & 0x0f) << 4;
  const seg = (a & 0x70) >> 4;
  if (seg === 0) t += 8;
  else if (seg === 1) t += 0x108;
  else t = (t + 0x108) << (seg - 1);
  return (a & 0x80) ? t : -t;
}

/** G.711 µ-law byte -> linear 16-bit. */
function mulawSample(u) {
  u = ~u & 0xff;
  let t = ((u & 0x0f) << 3) + 0x84;
  t <<= (u & 0x70) >> 4;
  return (u & 0x80) ? 0x84 - t : t - 0x84;
}

const ALAW = new Float32Array(256).map((_, i) => alawSample(i) / 32768);
const MULAW = new Float32Array(256).map((_, i) => mulawSample(i) / 32768);

/** Planar Float32 channels of a PCM-family payload. */
export function decodePcm(codec, payload, channels) {
  if (codec === 'pcm_s16le') {
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const frames = Math.floor(payload.byteLength / 2 / channels);
    const out = Array.from({ length: channels }, () => new Float32Array(frames));
    for (let i = 0; i < frames; i++) {
      for (let c = 0; c < channels; c++) out[c][i] = view.getInt16((i * channels + c) * 2, true) / 32768;
    }
    return out;
  }
  const table = codec === 'pcm_alaw' ? ALAW : MULAW;
  const out = new Float32Array(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = table[payload[i]];
  return [out];
}

/** [{config: Uint8Array(2), raw: Uint8Array}] of the ADTS frames in a payload. */
export function splitAdts(data) {
  const frames = [];
  let offset = 0;
  while (offset + 7 <= data.length) {
    if (data[offset] !== 0xff || (data[offset + 1] & 0xf6) !== 0xf0) break;
    const headerLength = (data[offset + 1] & 1) ? 7 : 9;
    const objectType = (data[offset + 2] >> 6) + 1;
    const index = (data[offset + 2] >> 2) & 0xf;
    const channels = ((data[offset + 2] & 1) << 2) | (data[offset + 3] >> 6);
    const length = ((data[offset + 3] & 3) << 11) | (data[offset + 4] << 3) | (data[offset + 5] >> 5);
    if (length < headerLength || offset + length > data.length) break;
    const value = (objectType << 11) | (index << 7) | (channels << 3);
    frames.push({ config: new Uint8Array([value >> 8, value & 0xff]), raw: data.subarray(offset + headerLength, offset + length) });
    offset += length;
  }
  return frames;
}

export function hexBytes(hex) {
  return new Uint8Array((hex.match(/../g) || []).map((b) => parseInt(b, 16)));
}

/** Decoder for one hello.audio; calls onSamples(channels: Float32Array[], rate, timestampUs). */
export class PayloadDecoder {
  constructor(audio, onSamples, onError = () => {}) {
    this.audio = audio;
    this.onSamples = onSamples;
    this.onError = onError;
    this.webcodecs = null;
    this.kind = audio.codec.startsWith('pcm_') ? 'js' : 'webcodecs';
  }

  static supported(audio) {
    if (!audio) return false;
    return audio.codec.startsWith('pcm_') || typeof AudioDecoder !== 'undefined';
  }

  decode(payload, timestampUs) {
    const { codec, rate, channels } = this.audio;
    if (this.kind === 'js') {
      this.onSamples(decodePcm(codec, payload, channels), rate, timestampUs);
      return;
    }
    if (codec === 'aac') {
      if (this.audio.format === 'raw') this.chunk(payload, timestampUs, this.audio.config && hexBytes(this.audio.config));
      else {
        splitAdts(payload).forEach(({ config, raw }, n) => {
          this.chunk(raw, timestampUs + Math.round((n * 1024 * 1e6) / rate), config);
        });
      }
    } else if (codec === 'opus') this.chunk(payload, timestampUs, null);
  }

  chunk(data, timestampUs, description) {
    if (!this.webcodecs) {
      const { codec, rate, channels } = this.audio;
      const config = codec === 'opus'
        ? { codec: 'opus', sampleRate: 48000, numberOfChannels: channels }
        : { codec: 'mp4a.40.2', sampleRate: rate, numberOfChannels: channels, description };
      this.webcodecs = new AudioDecoder({
        output: (audioData) => this.output(audioData),
        error: (error) => { this.onError(error); this.webcodecs = null; },
      });
      this.webcodecs.configure(config);
    }
    this.webcodecs.decode(new EncodedAudioChunk({ type: 'key', timestamp: timestampUs, data }));
  }

  output(audioData) {
    const channels = [];
    for (let c = 0; c < audioData.numberOfChannels; c++) {
      const plane = new Float32Array(audioData.numberOfFrames);
      audioData.copyTo(plane, { planeIndex: c, format: 'f32-planar' });
      channels.push(plane);
    }
    this.onSamples(channels, audioData.sampleRate, audioData.timestamp);
    audioData.close();
  }

  close() {
    try { this.webcodecs?.close(); } catch { /* already closed */ }
    this.webcodecs = null;
  }
}
