"""An RTSP camera read with PyAV in its own thread: H.264 and audio as received.

``RtspCamera`` owns one demux thread per camera. The thread opens the camera
(TCP by default, UDP selectable; timeouts on open and on every read), demuxes
packets without decoding video, turns each H.264 packet into a protocol access
unit (annexb.access_unit: Annex B, SPS/PPS on keyframes) and hands it to the
event loop. G.711, AAC and Opus audio are relayed as received (protocol v1 names
them in hello.audio, docs/protocol.md section 3a); any other audio codec is
decoded to PCM here (cheap: a few kbit/s). When the camera drops, or is down at
start, the thread retries with backoff and full jitter (reconnect.Backoff), with
a short cap so a camera that comes back is streaming again within seconds; a
camera that refuses us (401, 404, an H.265 stream) is retried slowly and said so.

The camera URL holds credentials: it is shown only through ``redact_url`` and
every error text is scrubbed (FFmpeg's messages quote the URL it opened).
"""
from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from sightline_agent.annexb import BitstreamError, access_unit, parameter_sets_from_extradata
from sightline_agent.reconnect import Backoff

OPEN_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 10.0
RETRY_BASE_SECONDS = 0.5
RETRY_CAP_SECONDS = 4.0  # a camera back from a reboot streams again within this (plus the open)
REFUSED_RETRY_SECONDS = 30.0  # wrong password, unknown path, H.265: a person must act; retry slowly
SECRET_QUERY_KEYS = {"password", "pass", "passwd", "pwd", "user", "username", "usr", "token", "auth", "key"}
QUEUE_ITEMS = 256  # about 10 s of video and audio; older items are dropped while Sightline is away


def redact_url(url: str) -> str:
    """The URL without its credentials: user and password (rtsp://***@host/path), and the
    values of query parameters that hold them (Dahua-style ?user=..&password=..)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """Every form in which the URL's credentials might appear in a message."""
    parts = urlsplit(url)
    secrets = [url]
    if parts.password:
        secrets += [parts.password, unquote(parts.password), quote(unquote(parts.password), safe="")]
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in SECRET_QUERY_KEYS and len(value) >= 3:
            secrets.append(value)
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` with the URL and its secrets replaced by the redacted URL / ***."""
    redacted = redact_url(url)
    for secret in url_secrets(url):
        text = text.replace(secret, redacted if secret == url else "***")
    return text


class CameraRefused(Exception):
    """The camera answered but will not give us a stream we can relay: a person must act."""


class CameraUnavailable(Exception):
    """The camera is down, unreachable, or stopped sending: retrying may heal it."""


def classify_open_error(error: Exception) -> type[Exception]:
    """CameraRefused for answers that retrying cannot change (401, 403, 404), else CameraUnavailable."""
    import av

    refused = (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError, av.error.HTTPNotFoundError)
    return CameraRefused if isinstance(error, refused) else CameraUnavailable


def explain_open_error(error: Exception) -> str:
    import av

    if isinstance(error, av.error.HTTPUnauthorizedError):
        return "the camera refused the credentials (401 Unauthorized): check the user and password in the URL"
    if isinstance(error, av.error.HTTPForbiddenError):
        return "the camera refused access (403 Forbidden): does this user have the right to view the stream?"
    if isinstance(error, av.error.HTTPNotFoundError):
        return "the camera has no stream at this path (404 Not Found): check the path in the URL"
    if isinstance(error, av.error.ExitError) or "Immediate exit" in str(error):
        return "the camera did not answer in time"
    return str(error)


def retry_delay(refused: bool, backoff: Backoff, refused_seconds: float = REFUSED_RETRY_SECONDS) -> float:
    """Seconds before the next attempt to open the camera: backoff with full jitter when it
    is down; at least `refused_seconds` (plus up to half again, jitter) when it refused us,
    so a wrong password never turns into a fast loop of failed logins (cameras lock users out)."""
    if refused:
        return refused_seconds * (1 + backoff.rng() / 2)
    return backoff.next_delay()


@dataclass(frozen=True)
class CameraInfo:
    width: int
    height: int
    fps: float | None
    audio: dict | None  # the hello's audio object (pcm_s16le, rate, channels) or None

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class Item:
    """What the demux thread hands the event loop. kind: open, video, audio or lost."""

    kind: str
    generation: int
    payload: bytes = b""
    keyframe: bool = False
    timestamp_us: int = 0
    info: CameraInfo | None = None
    message: str = ""


def passthrough_audio(name: str, rate: int, channels: int, extradata: bytes | None) -> dict | None:
    """The hello.audio for relaying a camera's audio packets as received, or None when
    the codec must be decoded to PCM instead. Pure."""
    from sightline_agent.protocol import ProtocolError, validate_audio

    if name in ("pcm_alaw", "pcm_mulaw"):
        audio = {"codec": name, "rate": rate, "channels": channels}
    elif name == "aac" and extradata:
        # RTP (RFC 3640) delivers raw access units; the config comes from the SDP.
        audio = {"codec": "aac", "rate": rate, "channels": channels, "format": "raw", "config": bytes(extradata).hex()}
    elif name == "opus":
        audio = {"codec": "opus", "rate": 48000, "channels": channels}
    else:
        return None
    try:
        return validate_audio(audio)
    except ProtocolError:  # e.g. stereo G.711: decode it instead
        return None


def check_video_codec(name: str) -> None:
    if name in ("hevc", "h265"):
        raise CameraRefused("the camera sends H.265, which Sightline does not relay yet: set this stream "
                            "to H.264 in the camera's video settings (or use its H.264 substream)")
    if name != "h264":
        raise CameraRefused(f"the camera sends {name} video; only H.264 is relayed")


class Clock:
    """Capture times (µs since the epoch) from packet times: anchored on the wall clock at the
    first packet, shared by audio and video (FFmpeg puts both on one timeline), re-anchored
    if the camera's timeline jumps more than JUMP_SECONDS from the wall clock."""

    JUMP_SECONDS = 2.0

    def __init__(self, wall=time.time):
        self._wall = wall
        self._anchor: float | None = None

    def timestamp_us(self, seconds: float | None) -> int:
        now = self._wall()
        if seconds is None:
            return int(now * 1_000_000)
        if self._anchor is None or abs(self._anchor + seconds - now) > self.JUMP_SECONDS:
            self._anchor = now - seconds
        return int((self._anchor + seconds) * 1_000_000)


class RtspCamera:
    """One camera, read in its own thread; items arrive on an asyncio queue of the given loop."""

    def __init__(self, url: str, transport: str = "tcp", open_timeout: float = OPEN_TIMEOUT_SECONDS,
                 read_timeout: float = READ_TIMEOUT_SECONDS, retry_cap: float = RETRY_CAP_SECONDS,
                 refused_retry: float = REFUSED_RETRY_SECONDS, rng=random.random, on_message=None):
        if transport not in ("tcp", "udp"):
            raise ValueError("transport must be tcp or udp")
        self.url = url
        self.description = f"RTSP camera {redact_url(url)} over {transport.upper()}"
        self.transport = transport
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.refused_retry = refused_retry
        self.backoff = Backoff(base=RETRY_BASE_SECONDS, cap=retry_cap, rng=rng)
        self.on_message = on_message or (lambda text, error: None)
        self.state = "starting"  # opening, streaming, retrying, refused, stopped
        self.info: CameraInfo | None = None
        self.generation = 0
        self.reconnects = 0
        self.last_error = ""
        self.queue: asyncio.Queue[Item] | None = None
        self.opened: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    # -- the event-loop side ---------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.queue = asyncio.Queue(QUEUE_ITEMS)
        self.opened = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtsp-{redact_url(self.url)}", daemon=True)
        self._thread.start()

    def _deliver(self, item: Item) -> None:  # on the loop
        if item.kind == "open":
            self.opened.set()
        elif item.kind == "lost":
            self.opened.clear()
        if self.queue.full():
            # Sightline is slow or away: drop the oldest; the session waits for a keyframe.
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    def _post(self, item: Item) -> None:  # from the thread
        try:
            self._loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError:  # the loop is closed: we are shutting down
            self._stopping.set()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread; it notices within one read (read_timeout at worst: then it is left,
        a daemon, to die with the process)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.state = "stopped"

    # -- the demux thread -------------------------------------------------------------

    def _say(self, text: str, error: bool = False) -> None:
        self.on_message(scrub(text, self.url), error)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.state = "opening"
            refused = False
            started = time.monotonic()
            try:
                self._stream_once()
                message = "the camera ended the stream"
            except CameraRefused as error:
                refused, message = True, str(error)
            except CameraUnavailable as error:
                message = str(error)
            except Exception as error:  # noqa: BLE001 -- FFmpeg and PyAV raise many kinds; keep the thread alive
                message = f"{type(error).__name__}: {error}"
            if self._stopping.is_set():
                break
            if self.state == "streaming":
                self._post(Item("lost", self.generation, message=scrub(message, self.url)))
                if time.monotonic() - started > 10:
                    self.backoff.reset()
            self.last_error = scrub(message, self.url)
            delay = retry_delay(refused, self.backoff, self.refused_retry)
            self.state = "refused" if refused else "retrying"
            self._say(f"camera {redact_url(self.url)}: {message}; trying again in {delay:.1f} s", error=True)
            if self._stopping.wait(delay):
                break
            self.reconnects += 1
        self.state = "stopped"

    def _open(self):
        import av

        options = {"rtsp_transport": self.transport, "timeout": str(int(self.read_timeout * 1_000_000)),
                   # Codec parameters come from the SDP: probe briefly so the stream starts fast.
                   "analyzeduration": "1000000", "probesize": "65536"}
        if self.transport == "tcp":
            options["rtsp_flags"] = "prefer_tcp"
        try:
            return av.open(self.url, options=options, timeout=(self.open_timeout, self.read_timeout))
        except Exception as error:  # noqa: BLE001 -- av.error.* and OSError
            raise classify_open_error(error)(explain_open_error(error)) from None

    def _stream_once(self) -> None:
        import av

        container = self._open()
        try:
            if not container.streams.video:
                raise CameraRefused("the camera's stream has no video")
            video = container.streams.video[0]
            check_video_codec(video.codec_context.name)
            try:
                parameter_sets, length_size = parameter_sets_from_extradata(video.codec_context.extradata)
            except BitstreamError as error:
                raise CameraRefused(f"unreadable H.264 parameters: {error}") from None
            audio = container.streams.audio[0] if container.streams.audio else None
            resampler, audio_hello = None, None
            if audio is not None and audio.codec_context.sample_rate:
                context = audio.codec_context
                channels = 1 if context.channels == 1 else 2
                audio_hello = passthrough_audio(context.name, context.sample_rate, context.channels, context.extradata)
                if audio_hello is None:  # a codec protocol v1 does not name: decode it to PCM
                    audio_hello = {"codec": "pcm_s16le", "rate": context.sample_rate, "channels": channels}
                    resampler = av.AudioResampler(format="s16", layout="mono" if channels == 1 else "stereo",
                                                  rate=context.sample_rate)
            rate = video.average_rate or video.guessed_rate
            info = CameraInfo(video.codec_context.width, video.codec_context.height,
                              round(float(rate), 3) if rate else None, audio_hello)
            self.info = info
            self.generation += 1
            generation = self.generation
            self.state = "streaming"
            self._say(f"camera {redact_url(self.url)}: streaming H.264 {info.resolution}"
                      f"{f' at {info.fps:g} fps' if info.fps else ''}"
                      f"{', audio ' + audio.codec_context.name + (' as PCM' if resampler else ' as received') if audio_hello else ', no audio'}")
            self._post(Item("open", generation, info=info))
            clock = Clock()
            streams = [video] + ([audio] if audio_hello else [])
            for packet in container.demux(*streams):
                if self._stopping.is_set():
                    return
                if packet.size == 0:
                    continue  # end-of-stream flush packet
                when = packet.pts if packet.pts is not None else packet.dts
                ts = clock.timestamp_us(float(when * packet.time_base) if when is not None else None)
                if packet.stream is video:
                    keyframe = bool(packet.is_keyframe)
                    try:
                        payload = access_unit(bytes(packet), keyframe, parameter_sets, length_size)
                    except BitstreamError as error:
                        self._say(f"skipped a malformed H.264 packet: {error}", error=True)
                        continue
                    self._post(Item("video", generation, payload, keyframe, ts))
                elif resampler is None:
                    self._post(Item("audio", generation, bytes(packet), False, ts))
                else:
                    pcm = b"".join(self._pcm(resampler, frame) for frame in audio.codec_context.decode(packet))
                    if pcm:
                        self._post(Item("audio", generation, pcm, False, ts))
            raise CameraUnavailable("the camera ended the stream")
        except (CameraRefused, CameraUnavailable):
            raise
        except av.error.ExitError:
            raise CameraUnavailable(f"the camera sent nothing for {self.read_timeout:g} s") from None
        except (av.error.FFmpegError, OSError) as error:
            raise CameraUnavailable(f"the camera stream broke: {error}") from None
        finally:
            container.close()

    @staticmethod
    def _pcm(resampler, frame) -> bytes:
        out = b""
        for converted in resampler.resample(frame):
            size = converted.samples * len(converted.layout.channels) * 2
            out += bytes(converted.planes[0])[:size]
        return out
