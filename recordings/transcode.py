"""Spool segment -> playable fragmented MP4, with PyAV.

- JPEG frames are decoded (FFmpeg's mjpeg decoder), converted to yuv420p and
  encoded with libx264 (x264_options(): preset/crf/threads from the settings). Each frame's timestamp is its
  capture time, so variable frame rates play at true speed; an IDR is forced
  about every KEYFRAME_INTERVAL_SECONDS so HLS seeks land close.
- H.264 access units are remuxed without re-encoding, stamped with capture
  times (cameras are expected to send no B-frames; see docs/recording.md).
- Audio (docs/protocol.md, "Audio codecs"): AAC and Opus packets are copied into
  the MP4 as they came (both play in browsers from fMP4); PCM s16le and G.711
  are decoded to PCM and encoded to AAC.
- A JPEG that is not a whole JPEG (no SOI/EOI) or that FFmpeg cannot decode is
  skipped and counted, never fatal.
- Output is fragmented MP4 (empty moov at the front, a fragment per
  keyframe): it plays progressively in <video>, and as one HLS fMP4 segment
  whose init section is its first `init_bytes` (ftyp+moov).

FFmpeg's log callback stays off (av.logging level None, PyAV's default): the
Python callback costs the GIL on every FFmpeg log line and has deadlocked
threaded programs. Errors arrive as exceptions instead. Every container is
opened in a with-block so it is closed on every path.

Benchmark entry point: `transcode_jpeg_directory(directory, out_path, fps=15.0)`.
"""
from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import av.logging

from recordings import constants, spool
from sightline_agent import audioformats
from sightline_agent.protocol import KIND_AUDIO, KIND_H264, KIND_JPEG

av.logging.set_level(None)
log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, constants.VIDEO_TIME_BASE)


class TranscodeError(Exception):
    """The segment cannot become a video at all (no decodable frame). Permanent."""


@dataclass
class TranscodeResult:
    frames: int  # video frames in the output
    corrupt_frames: int  # JPEG frames skipped
    has_audio: bool
    duration: float  # seconds, first to last frame + one interval
    bytes: int = 0
    init_bytes: int = 0  # ftyp + moov: the HLS EXT-X-MAP byte range


@dataclass(slots=True)
class AudioInput:
    rate: int
    channels: int
    chunks: list[tuple[int, bytes]]  # (capture time us, PCM s16le interleaved; or AAC/Opus packets)
    codec: str = "pcm_s16le"  # pcm_s16le (G.711 is converted on reading), "aac" (raw frames) or "opus"
    config: bytes = b""  # AAC AudioSpecificConfig


def _audio_muxer(out, audio: AudioInput | None):
    if not audio or not audio.chunks:
        return None
    if audio.codec in ("aac", "opus"):
        return _AudioCopy(out, audio)
    return _AudioMuxer(out, audio)


def looks_like_jpeg(data: bytes) -> bool:
    """SOI at the start and EOI at the end (a truncated JPEG has no EOI)."""
    return len(data) > 4 and data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"


class _Clock:
    """Capture microseconds -> strictly increasing pts in TIME_BASE ticks."""

    def __init__(self):
        self.origin = None
        self.last = -1

    def pts(self, ts_us: int) -> int:
        if self.origin is None:
            self.origin = ts_us
        pts = (ts_us - self.origin) * constants.VIDEO_TIME_BASE // 1_000_000
        self.last = max(pts, self.last + 1)
        return self.last


def _open_output(out_path):
    return av.open(str(out_path), "w", format="mp4", options={"movflags": constants.MP4_MOVFLAGS})


def transcode_jpeg_frames(frames: Iterable[tuple[int, bytes]], out_path, audio: AudioInput | None = None,
                          nominal_fps: float = 15.0) -> TranscodeResult:
    """Encode (capture time us, JPEG bytes) pairs to an H.264 fMP4 at out_path."""
    clock, written, corrupt = _Clock(), 0, 0
    key_every = int(constants.KEYFRAME_INTERVAL_SECONDS * constants.VIDEO_TIME_BASE)
    next_key, last_pts, stream = 0, 0, None
    with _open_output(out_path) as out, _DecodeAhead(frames) as pictures:
        muxer = _audio_muxer(out, audio)
        for ts_us, picture in pictures:
            if picture is None:
                corrupt += 1
                continue
            if stream is None:
                stream = _add_video_stream(out, picture.width, picture.height, nominal_fps)
            if (picture.width, picture.height, picture.format.name) != (
                    stream.codec_context.width, stream.codec_context.height, "yuv420p"):
                picture = picture.reformat(width=stream.codec_context.width,
                                           height=stream.codec_context.height, format="yuv420p")
            picture.pts, picture.time_base = clock.pts(ts_us), TIME_BASE
            # The mjpeg decoder marks every picture I; x264 would obey and make all IDRs.
            picture.pict_type = av.video.frame.PictureType.NONE
            if picture.pts >= next_key:
                picture.pict_type = av.video.frame.PictureType.I
                next_key = picture.pts + key_every
            last_pts = picture.pts
            out.mux(stream.encode(picture))
            written += 1
            if muxer:
                muxer.feed_until(ts_us, clock.origin)
        if stream is None:
            raise TranscodeError(f"no decodable frame ({corrupt} corrupt)")
        out.mux(stream.encode(None))
        if muxer:
            muxer.finish(clock.origin)
    interval = last_pts / (written - 1) if written > 1 else constants.VIDEO_TIME_BASE / nominal_fps
    return _result(out_path, written, corrupt, bool(muxer), (last_pts + interval) / constants.VIDEO_TIME_BASE)


class _DecodeAhead:
    """Decode and convert JPEGs in a second thread while the encoder works, like
    the ffmpeg CLI's threaded pipeline (FFmpeg releases the GIL in both). Yields
    (capture time us, yuv420p picture or None if corrupt), in order."""

    _DONE = object()

    def __init__(self, frames: Iterable[tuple[int, bytes]], depth: int = 8):
        import queue
        import threading

        self._frames = frames
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="jpeg-decode", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except Exception:
                self._thread.join(0.01)
        return False

    def _put(self, item) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        decoder = av.CodecContext.create("mjpeg", "r")
        try:
            for ts_us, data in self._frames:
                picture = _decode_jpeg(decoder, data)
                if picture is not None and picture.format.name != "yuv420p":
                    picture = picture.reformat(width=picture.width - picture.width % 2,
                                               height=picture.height - picture.height % 2, format="yuv420p")
                if not self._put((ts_us, picture)):
                    return
        except BaseException as exc:  # re-raised in the consumer
            self._error = exc
        self._put(self._DONE)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._DONE:
                if self._error is not None:
                    raise self._error
                return
            yield item


def _decode_jpeg(decoder, data: bytes):
    if not looks_like_jpeg(data):
        return None
    try:
        pictures = decoder.decode(av.Packet(data))
    except (av.FFmpegError, ValueError):
        return None
    return pictures[0] if pictures else None


def x264_options(conf: dict | None = None) -> dict:
    """libx264 options of a transcode: constants.X264_OPTIONS with the settings' preset, crf and threads.

    conf: the SIGHTLINE settings dict (default: django.conf.settings.SIGHTLINE when configured).
    threads 0 leaves x264 its default (about 1.5 x the cores); 1 makes each transcode
    single-threaded, so a worker with one process per core keeps every core busy with
    no threading overhead (docs/deployment.md, "Sizing hosts").
    """
    if conf is None:
        from django.conf import settings

        conf = settings.SIGHTLINE if settings.configured else {}
    options = dict(constants.X264_OPTIONS)
    options["preset"] = str(conf.get("TRANSCODE_X264_PRESET", options["preset"]))
    options["crf"] = str(conf.get("TRANSCODE_X264_CRF", options["crf"]))
    threads = int(conf.get("TRANSCODE_THREADS", 0))
    if threads:
        options["threads"] = str(threads)
    return options


def _add_video_stream(out, width: int, height: int, nominal_fps: float):
    stream = out.add_stream("libx264", rate=Fraction(round(nominal_fps * 1000), 1000), options=dict(
        x264_options(), **{"forced-idr": "1"}))
    stream.width, stream.height = width - width % 2, height - height % 2  # yuv420p needs even sizes
    stream.pix_fmt = "yuv420p"
    # PyAV defaults to SLICE, which makes libx264 use sliced threads; the ffmpeg
    # CLI's default (frame + slice) gives x264 frame threads, the faster choice
    # for whole-file encoding (bench/transcode.py compares the two).
    stream.codec_context.thread_type = "AUTO"
    stream.codec_context.time_base = TIME_BASE
    stream.time_base = TIME_BASE
    stream.codec_context.gop_size = int(nominal_fps * 10) or 150  # IDRs are forced by time instead
    return stream


class _AudioMuxer:
    """PCM s16le chunks -> AAC, pts in samples from the first video frame."""

    def __init__(self, out, audio: AudioInput):
        layout = "mono" if audio.channels == 1 else "stereo"
        self.audio, self.layout = audio, layout
        self.stream = out.add_stream("aac", rate=audio.rate, layout=layout)
        self.stream.bit_rate = constants.AUDIO_BITRATE
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=audio.rate,
                                           frame_size=self.stream.codec_context.frame_size or 1024)
        self.out, self.index, self.next_pts = out, 0, None
        self.primed = False

    def feed_until(self, video_ts_us: int, origin_us: int) -> None:
        chunks = self.audio.chunks
        while self.index < len(chunks) and chunks[self.index][0] <= video_ts_us:
            self._feed(*chunks[self.index], origin_us)
            self.index += 1

    def _feed(self, ts_us: int, pcm: bytes, origin_us: int) -> None:
        bytes_per_sample = 2 * self.audio.channels
        samples = len(pcm) // bytes_per_sample
        if samples == 0:
            return
        if self.next_pts is None:
            offset = (ts_us - origin_us) * self.audio.rate // 1_000_000
            if offset < 0:  # audio captured before the first picture: drop the overhang
                skip = min(samples, -offset)
                pcm, samples, offset = pcm[skip * bytes_per_sample:], samples - skip, 0
                if samples == 0:
                    return
            self.next_pts = offset
        frame = av.AudioFrame(format="s16", layout=self.layout, samples=samples)
        frame.planes[0].update(pcm[: samples * bytes_per_sample])
        frame.sample_rate, frame.pts = self.audio.rate, self.next_pts
        frame.time_base = Fraction(1, self.audio.rate)
        self.next_pts += samples
        for resampled in self.resampler.resample(frame):
            self._mux(self.stream.encode(resampled))

    def _mux(self, packets) -> None:
        # FFmpeg's AAC encoder first emits one frame of priming (pts -1024). The fragmented
        # MP4 keeps no edit list to hide it, so it would play as 1024 samples of lag
        # (128 ms at 8 kHz) and lengthen the track: it is dropped instead.
        if not self.primed and packets:
            packets, self.primed = packets[1:], True
        self.out.mux(packets)

    def finish(self, origin_us: int) -> None:
        self.feed_until(1 << 62, origin_us)
        for resampled in self.resampler.resample(None):
            self._mux(self.stream.encode(resampled))
        self._mux(self.stream.encode(None))


class _AudioCopy:
    """AAC or Opus packets copied into the MP4 without re-encoding.

    Each packet's pts continues from the previous one by its own length (1024
    samples per AAC-LC frame, the TOC's duration for Opus), so small jitter in
    capture times never makes gaps or overlaps; only the first packet's capture
    time places the audio against the first video frame.
    """

    def __init__(self, out, audio: AudioInput):
        self.audio, self.out = audio, out
        layout = "mono" if audio.channels == 1 else "stereo"
        if audio.codec == "aac":
            self.stream = out.add_stream("aac", rate=audio.rate, layout=layout)
            self.stream.codec_context.extradata = audio.config
            self.samples = lambda packet: audioformats.AAC_FRAME_SAMPLES
        else:
            self.stream = out.add_stream("libopus", rate=48000, layout=layout)
            self.stream.codec_context.extradata = audioformats.opus_head(audio.channels)
            self.samples = audioformats.opus_packet_samples
        self.rate = 48000 if audio.codec == "opus" else audio.rate
        self.time_base = Fraction(1, self.rate)
        self.stream.time_base = self.time_base
        self.index, self.next_pts = 0, None

    def feed_until(self, video_ts_us: int, origin_us: int) -> None:
        chunks = self.audio.chunks
        while self.index < len(chunks) and chunks[self.index][0] <= video_ts_us:
            self._mux(*chunks[self.index], origin_us)
            self.index += 1

    def _mux(self, ts_us: int, data: bytes, origin_us: int) -> None:
        samples = self.samples(data)
        if not data or samples <= 0:
            return
        if self.next_pts is None:
            offset = (ts_us - origin_us) * self.rate // 1_000_000
            if offset < 0:  # captured before the first picture: packets cannot be cut, drop them
                return
            self.next_pts = offset
        packet = av.Packet(data)
        packet.pts = packet.dts = self.next_pts
        packet.duration = samples
        packet.time_base, packet.stream = self.time_base, self.stream
        self.next_pts += samples
        self.out.mux(packet)

    def finish(self, origin_us: int) -> None:
        self.feed_until(1 << 62, origin_us)


def remux_h264(access_units: list[tuple[int, bytes]], out_path, audio: AudioInput | None = None) -> TranscodeResult:
    """(capture time us, Annex B access unit) pairs -> fMP4 without re-encoding."""
    if not access_units:
        raise TranscodeError("no H.264 access units")
    clock, written, last_pts = _Clock(), 0, 0
    raw = io.BytesIO(b"".join(au for _, au in access_units))
    with av.open(raw, "r", format="h264") as source, _open_output(out_path) as out:
        in_stream = source.streams.video[0]
        stream = out.add_stream_from_template(in_stream)
        stream.time_base = TIME_BASE
        muxer = _audio_muxer(out, audio)
        for packet in source.demux(in_stream):
            if packet.size == 0:
                continue
            index = min(written, len(access_units) - 1)
            ts_us = access_units[index][0]
            packet.pts = packet.dts = last_pts = clock.pts(ts_us)
            packet.duration = _interval_ticks(access_units, index)
            packet.time_base, packet.stream = TIME_BASE, stream
            out.mux(packet)
            written += 1
            if muxer:
                muxer.feed_until(ts_us, clock.origin)
        if muxer:
            muxer.finish(clock.origin)
    if written != len(access_units):
        log.warning("H.264 remux: %d access units in, %d packets out", len(access_units), written)
    interval = last_pts / (written - 1) if written > 1 else constants.VIDEO_TIME_BASE / 15
    return _result(out_path, written, 0, bool(muxer), (last_pts + interval) / constants.VIDEO_TIME_BASE)


def _interval_ticks(units: list[tuple[int, bytes]], index: int) -> int:
    """Duration of unit `index`: until the next one (the last repeats the one before)."""
    if len(units) < 2:
        return constants.VIDEO_TIME_BASE // 15
    a, b = (index, index + 1) if index + 1 < len(units) else (index - 1, index)
    return max(1, (units[b][0] - units[a][0]) * constants.VIDEO_TIME_BASE // 1_000_000)


def transcode_spool(spool_path, out_path) -> TranscodeResult:
    """One spool segment (recordings/spool.py) -> fMP4. Picks encode or remux by codec.

    JPEG payloads are streamed from the file into the decoder, never all held
    in memory; a first pass reads only record headers and the (small) audio.
    """
    with open(spool_path, "rb") as f:
        meta = spool.read_file_header(f)
        index = list(spool.iter_records(f, payload_kinds={KIND_AUDIO}))
    audio = _audio_input(meta, index)
    if meta.get("codec") == "h264":
        # A segment cut without a keyframe starts mid-GOP: those pictures cannot
        # be decoded on their own, so they are skipped and counted as corrupt.
        units = [(r.header.timestamp_us, r.payload, r.header.keyframe)
                 for r in spool.read_spool(spool_path).records if r.header.kind == KIND_H264]
        first_key = next((i for i, (_, _, key) in enumerate(units) if key), None)
        if first_key is None:
            raise TranscodeError(f"no H.264 keyframe in {len(units)} access units")
        result = remux_h264([(ts, au) for ts, au, _ in units[first_key:]], out_path, audio)
        result.corrupt_frames = first_key
        return result
    stamps = [r.header.timestamp_us for r in index if r.header.kind == KIND_JPEG]

    def jpeg_frames() -> Iterator[tuple[int, bytes]]:
        with open(spool_path, "rb") as f:
            spool.read_file_header(f)
            for record in spool.iter_records(f, payload_kinds={KIND_JPEG}):
                if record.header.kind == KIND_JPEG:
                    yield record.header.timestamp_us, record.payload

    return transcode_jpeg_frames(jpeg_frames(), out_path, audio, nominal_fps=_nominal_fps(stamps))


def _audio_input(meta: dict, records) -> AudioInput | None:
    """The segment's audio as the muxers take it, from the hello.audio the recorder saved."""
    params = meta.get("audio") or {}
    chunks = [(r.header.timestamp_us, r.payload) for r in records if r.header.kind == KIND_AUDIO]
    codec = params.get("codec", "pcm_s16le")
    if not chunks:
        return None
    rate, channels = int(params.get("rate", 16000)), int(params.get("channels", 1))
    if codec in ("pcm_s16le", "pcm_alaw", "pcm_mulaw"):
        return AudioInput(rate, channels, [(ts, audioformats.to_s16(codec, data)) for ts, data in chunks])
    if codec == "opus":
        return AudioInput(48000, channels, chunks, codec="opus")
    if codec == "aac":
        return _aac_input(params, rate, channels, chunks)
    log.warning("segment audio codec %r is not known: recorded without audio", codec)
    return None


def _aac_input(params: dict, rate: int, channels: int, chunks) -> AudioInput | None:
    """Raw AAC frames: ADTS headers come off (MP4 keeps the config once, in the esds)."""
    config = bytes.fromhex(params["config"]) if params.get("config") else b""
    if params.get("format", "adts") == "raw":
        return AudioInput(rate, channels, chunks, codec="aac", config=config)
    frames = []
    for ts_us, data in chunks:
        parts = audioformats.split_adts(data)
        # Several ADTS frames in one message: each later frame starts 1024 samples on.
        for n, (frame_config, raw) in enumerate(parts):
            config = config or frame_config
            frames.append((ts_us + n * audioformats.AAC_FRAME_SAMPLES * 1_000_000 // rate, raw))
    if not frames or not config:
        return None
    return AudioInput(rate, channels, frames, codec="aac", config=config)


def _nominal_fps(stamps: list[int]) -> float:
    """Average frame rate from capture times (x264 rate control wants one)."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return 15.0
    return max(1.0, min(120.0, (len(stamps) - 1) * 1_000_000 / (stamps[-1] - stamps[0])))


def transcode_jpeg_directory(directory, out_path, fps: float = 15.0) -> TranscodeResult:
    """Benchmark entry: every *.jpg in directory (sorted by name) at a constant fps -> fMP4."""
    paths = sorted(Path(directory).glob("*.jpg"))

    def frames() -> Iterator[tuple[int, bytes]]:
        for index, path in enumerate(paths):
            yield int(index * 1_000_000 / fps), path.read_bytes()

    return transcode_jpeg_frames(frames(), out_path, nominal_fps=fps)


def mp4_init_size(path) -> int:
    """Bytes before the first moof: ftyp + moov of a fragmented MP4 (0 if none)."""
    offset = 0
    with open(path, "rb") as f:
        while True:
            header = f.read(8)
            if len(header) < 8:
                return 0
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
            if kind == b"moof":
                return offset
            if size < 8:
                return 0
            offset += size
            f.seek(offset)


def _result(out_path, frames, corrupt, has_audio, duration) -> TranscodeResult:
    size = Path(out_path).stat().st_size
    return TranscodeResult(frames=frames, corrupt_frames=corrupt, has_audio=has_audio, duration=duration,
                           bytes=size, init_bytes=mp4_init_size(out_path))
