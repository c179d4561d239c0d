"""``sightline-agent``: arguments, the token, and the process exit code.

The token comes from --token-file or the SIGHTLINE_DEVICE_TOKEN environment
variable, never from an argument (``ps`` shows every process's arguments to
every user), and is never printed: messages name it by ``tokens.redact``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from sightline_agent import AGENT_NAME
from sightline_agent.audio import CODECS as AUDIO_CODECS
from sightline_agent.audio import open_audio_source
from sightline_agent.controls import InvalidSetting, parse_resolution
from sightline_agent.encoders import make_encoder
from sightline_agent.onvif_camera import onvif_for
from sightline_agent.passthrough import PassthroughAgent
from sightline_agent.reconnect import EXIT_ERROR, EXIT_OK, EXIT_USAGE, AgentExit
from sightline_agent.rtsp import RtspCamera, redact_url, url_secrets
from sightline_agent.session import Agent, AgentConfig
from sightline_agent.sources import SourceUnavailable, open_source
from sightline_agent.status import Counters, StatusLine
from sightline_agent.tls import INSECURE_MARK, INSECURE_WARNING, TlsSetupError, client_context
from sightline_agent.tokens import MalformedToken, redact, split

TOKEN_ENV = "SIGHTLINE_DEVICE_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sightline-agent",
        description="Sightline reference device agent: streams a camera (or a test pattern) to the portal "
                    "over WebSocket protocol v1. See docs/agent.md.",
    )
    parser.add_argument("--url", required=True, help="device endpoint, e.g. wss://portal.example.com/ws/device/")
    parser.add_argument("--token-file", metavar="PATH",
                        help=f"file holding the device token (else the {TOKEN_ENV} environment variable)")
    parser.add_argument("--source", default="pattern",
                        help="pattern (default), file:PATH (a video file, played at its own speed and looped), v4l2:/dev/videoN "
                             "(a webcam) or rtsp://[user:password@]host[:port]/path (an IP camera, relayed as "
                             "received: H.264 only, no re-encoding; see docs/agent.md)")
    parser.add_argument("--rtsp-transport", choices=["tcp", "udp"], default="tcp",
                        help="RTSP media over the camera's TCP connection (default) or UDP")
    parser.add_argument("--onvif", metavar="HOST[:PORT]",
                        help="the RTSP camera's ONVIF address: brightness/contrast commands then go to its imaging "
                             "service (credentials: --onvif-user, else those of the rtsp:// URL)")
    parser.add_argument("--onvif-user", metavar="USER",
                        help="ONVIF user; the password comes from --onvif-password-file or SIGHTLINE_ONVIF_PASSWORD")
    parser.add_argument("--onvif-password-file", metavar="PATH", help="file holding the ONVIF password")
    parser.add_argument("--codec", choices=["jpeg", "h264"], default="jpeg", help="video codec (default jpeg)")
    parser.add_argument("--audio", action="store_true", help="also send audio (default: a 440 Hz tone as PCM 16 kHz mono)")
    parser.add_argument("--audio-codec", choices=AUDIO_CODECS, metavar="CODEC",
                        help=f"send audio in this codec: {', '.join(AUDIO_CODECS)} (implies --audio)")
    parser.add_argument("--audio-source", default="tone", metavar="SRC",
                        help="tone (440 Hz, default), tone:HZ, speech (a speech-like signal) or file:PATH "
                             "(a file's audio track, looped) (implies --audio)")
    parser.add_argument("--talkback", action="store_true",
                        help="offer talk-back: play operators' voices to the sound device, or to --talkback-wav")
    parser.add_argument("--talkback-wav", metavar="PATH",
                        help="write talk-back audio to this WAV file (default: the sound device if there is one, "
                             "else talkback.wav) (implies --talkback)")
    parser.add_argument("--metadata", action="store_true",
                        help="also send a metadata frame (JSON: settings, last video seq) once a second")
    parser.add_argument("--fps", type=int, default=10, help="frames per second, 1..60 (default 10)")
    parser.add_argument("--resolution", default="640x360", help="WxH, even numbers (default 640x360)")
    parser.add_argument("--jpeg-quality", type=int, default=75, metavar="Q", help="JPEG quality 1..95 (default 75)")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (exit 0)")
    parser.add_argument("--frames", type=int, metavar="N", help="stop after sending N video frames (exit 0)")
    parser.add_argument("--quiet", action="store_true", help="no status line or event lines; errors only")
    parser.add_argument("--no-pacing", action="store_true",
                        help="send at --fps and --jpeg-quality even above the rate limits in the server's welcome "
                             "(the server then closes with 4009 and the agent reconnects); for tests and comparisons")
    parser.add_argument("--auth", choices=["header", "subprotocol"], default="header",
                        help="present the token as an Authorization header (default) or as a WebSocket subprotocol")
    parser.add_argument("--name", default="", metavar="LABEL", help="a label sent in hello and shown in messages")
    parser.add_argument("--local-settings", action="store_true",
                        help="keep --fps/--resolution instead of the settings stored on the server "
                             "(operator commands still apply)")
    parser.add_argument("--ca-file", metavar="PATH",
                        help="wss://: also trust this CA certificate (PEM), e.g. var/tls/ca.pem of a portal "
                             "started with TLS=self-signed (default: the system's CAs only)")
    parser.add_argument("--insecure", action="store_true",
                        help="wss://: do not check the server's certificate at all (testing only; warned loudly)")
    parser.add_argument("--version", action="version", version=AGENT_NAME)
    return parser


def read_token(token_file: str | None) -> str:
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as error:
            raise AgentExit(EXIT_USAGE, f"cannot read --token-file {token_file}: {error.strerror}") from None
        origin = f"--token-file {token_file}"
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        origin = TOKEN_ENV
        if not token:
            raise AgentExit(EXIT_USAGE, f"no token: pass --token-file PATH or set {TOKEN_ENV}")
    try:
        split(token)
    except MalformedToken:
        raise AgentExit(EXIT_USAGE, f"{origin} does not hold a Sightline device token "
                                    "(sl_<8 characters>_<43 characters>)") from None
    return token


def config_from_args(args) -> AgentConfig:
    try:
        width, height = parse_resolution(args.resolution)
    except InvalidSetting as error:
        raise AgentExit(EXIT_USAGE, f"--resolution: {error}") from None
    if not 1 <= args.fps <= 60:
        raise AgentExit(EXIT_USAGE, "--fps must be 1..60")
    if not 1 <= args.jpeg_quality <= 95:
        raise AgentExit(EXIT_USAGE, "--jpeg-quality must be 1..95")
    if args.duration is not None and args.duration <= 0:
        raise AgentExit(EXIT_USAGE, "--duration must be positive")
    if args.frames is not None and args.frames <= 0:
        raise AgentExit(EXIT_USAGE, "--frames must be positive")
    if not args.url.startswith(("ws://", "wss://")):
        raise AgentExit(EXIT_USAGE, "--url must start with ws:// or wss://")
    try:
        client_context(args.url, args.ca_file, args.insecure)
    except TlsSetupError as error:
        raise AgentExit(EXIT_USAGE, str(error)) from None
    audio = args.audio or bool(args.audio_codec) or args.audio_source != "tone"
    if audio:
        try:
            open_audio_source(args.audio_source, 8000)
        except (ValueError, OSError) as error:
            raise AgentExit(EXIT_USAGE, f"--audio-source: {error}") from None
    return AgentConfig(
        url=args.url, token=read_token(args.token_file), auth=args.auth, codec=args.codec,
        audio=audio, audio_codec=args.audio_codec or "pcm_s16le", audio_source=args.audio_source,
        metadata=args.metadata,
        fps=args.fps, width=width, height=height, duration=args.duration, frames=args.frames,
        name=args.name, use_server_settings=not args.local_settings,
        pacing=not args.no_pacing,
        ca_file=args.ca_file, insecure=args.insecure,
    )


async def _run(agent: Agent) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, agent.stop)
        except (NotImplementedError, RuntimeError):  # not on the main thread, or Windows
            pass
    return await agent.run()


def is_rtsp(source: str) -> bool:
    return source.startswith(("rtsp://", "rtsps://"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bridge"]:
        from sightline_agent.bridge import main as bridge_main

        return bridge_main(argv[1:])
    if argv[:1] == ["discover"]:
        from sightline_agent.discover import main as discover_main

        return discover_main(argv[1:])
    args = build_parser().parse_args(argv)
    status = StatusLine(Counters(), quiet=args.quiet)
    if is_rtsp(args.source):
        for secret in url_secrets(args.source):
            status.hide(secret, redact_url(args.source) if secret == args.source else "***")
    try:
        config = config_from_args(args)
        status.hide(config.token, redact(config.token))
        if is_rtsp(args.source):
            camera = RtspCamera(args.source, transport=args.rtsp_transport,
                                on_message=lambda text, error: (status.error if error else status.event)(text))
            status.event(f"{AGENT_NAME}{' ' + config.name if config.name else ''}: {camera.description}, "
                         f"H.264 as received → {config.url} (token {redact(config.token)}, auth by {config.auth})")
            onvif = None
            if args.onvif:
                try:
                    onvif = onvif_for(args.onvif, args.onvif_user, args.onvif_password_file, args.source, os.environ)
                except ValueError as error:
                    raise AgentExit(EXIT_USAGE, f"--onvif: {error}") from None
            agent = PassthroughAgent(config, camera, status, onvif=onvif)
            return _finish(status, agent, asyncio.run(_run(agent)))
        try:
            source = open_source(args.source, config.width, config.height, config.fps)
        except SourceUnavailable as error:
            raise AgentExit(EXIT_USAGE, str(error)) from None
        encoder = make_encoder(config.codec, args.jpeg_quality)
        if config.insecure:
            status.warning(INSECURE_WARNING)
            status.mark = INSECURE_MARK
        if args.talkback or args.talkback_wav:
            from sightline_agent.talkback import TalkbackPlayer

            config.talkback = TalkbackPlayer(args.talkback_wav, status, status.counters)
        audio = f" + audio ({config.audio_codec}, {args.audio_source})" if config.audio else ""
        talk = f", talk-back to {config.talkback.description}" if config.talkback else ""
        status.event(f"{AGENT_NAME}{' ' + config.name if config.name else ''}: {source.description}, "
                     f"{config.codec}{audio}{talk} → {config.url} "
                     f"(token {redact(config.token)}, auth by {config.auth})")
        agent = Agent(config, source, encoder, status)
        code = asyncio.run(_run(agent))
    except AgentExit as error:
        status.error(error.message)
        return error.code
    except Exception as error:  # say what went wrong in one line; the traceback helps no installer
        status.error(f"unexpected {type(error).__name__}: {error}")
        return EXIT_ERROR
    return _finish(status, agent, code)


def _finish(status: StatusLine, agent: Agent, code: int | None) -> int:
    status.finish()
    counters = agent.counters
    status.event(f"done: {counters.frames_sent} video frames, {counters.audio_frames_sent} audio frames, "
                 f"{counters.reconnects} reconnects")
    return code if code is not None else EXIT_OK
