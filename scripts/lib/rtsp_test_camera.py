#!/usr/bin/python3
"""A real RTSP camera for tests and benchmarks: GStreamer's RTSP server through python3-gi.

Run with Debian's system Python (``/usr/bin/python3``, which has python3-gi), not
.venv: the GObject bindings come from the packages gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-{base,good,bad,ugly} (scripts/test installs them as root).

    /usr/bin/python3 scripts/lib/rtsp_test_camera.py --port 8554 --path /cam \
        [--size 320x240] [--fps 10] [--audio alaw|mulaw|aac|none] [--file clip.mp4]

Credentials (RTSP basic and digest auth) come from the environment, never the
arguments (``ps`` shows arguments to everyone): RTSP_TEST_USER, RTSP_TEST_PASSWORD;
``--auth digest`` (default) or ``basic`` picks the method asked of clients.

Video is H.264: a moving test pattern encoded by x264 with low-CPU settings
(ultrafast, zerolatency, one keyframe a second, SPS/PPS before each keyframe),
or ``--file``: an MP4 holding H.264, sent as it is stored (no re-encode; played once,
at its own rate, so make it longer than the run), so a benchmark's camera costs little. All clients share one pipeline, so
two clients receive the same access units. Prints ``READY rtsp://127.0.0.1:PORT/PATH``
on stdout once it listens; SIGTERM or SIGINT stops it. Restarting it on the same
port is how tests simulate a camera that drops and comes back.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

AUDIO = {
    # G.711 is 8 kHz mono by definition; AAC at 16 kHz mono keeps the test light.
    "alaw": "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audio/x-raw,rate=8000,channels=1 "
            "! alawenc ! rtppcmapay name=pay1 pt=8",
    "mulaw": "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audio/x-raw,rate=8000,channels=1 "
             "! mulawenc ! rtppcmupay name=pay1 pt=0",
    "aac": "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audio/x-raw,rate=16000,channels=1 "
           "! audioconvert ! voaacenc bitrate=32000 ! rtpmp4gpay name=pay1 pt=97",
}


def launch_line(args) -> str:
    width, height = (int(v) for v in args.size.split("x"))
    if args.file:
        # The stored access units, paced by the clock (identity sync=true), played once;
        # config-interval=-1: SPS/PPS before each keyframe.
        video = (f"filesrc location={args.file} ! qtdemux name=demux demux.video_0 ! queue "
                 "! h264parse ! identity sync=true ! rtph264pay name=pay0 pt=96 config-interval=-1")
    elif args.codec == "h265":  # to test that H.265 cameras are refused clearly
        video = (f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
                 f"framerate={args.fps}/1 ! x265enc tune=zerolatency speed-preset=ultrafast "
                 f"key-int-max={args.fps} bitrate={args.bitrate} ! rtph265pay name=pay0 pt=96 config-interval=-1")
    else:
        video = (f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
                 f"framerate={args.fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast threads=1 "
                 f"key-int-max={args.fps} bitrate={args.bitrate} ! video/x-h264,profile=constrained-baseline "
                 "! rtph264pay name=pay0 pt=96 config-interval=-1")
    audio = AUDIO.get(args.audio, "")
    return f"( {video} {audio} )"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--bitrate", type=int, default=300, help="kbit/s of the test pattern (default 300)")
    parser.add_argument("--audio", choices=["alaw", "mulaw", "aac", "none"], default="alaw")
    parser.add_argument("--auth", choices=["digest", "basic"], default="digest",
                        help="RTSP authentication asked of clients when credentials are set (default digest)")
    parser.add_argument("--codec", choices=["h264", "h265"], default="h264",
                        help="h265: an H.265 test pattern (x265), to test cameras the bridge refuses")
    parser.add_argument("--file", help="an MP4 with H.264 video, served as stored (played once)")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(True)
    if args.file:
        factory.set_eos_shutdown(False)

    user, password = os.environ.get("RTSP_TEST_USER"), os.environ.get("RTSP_TEST_PASSWORD")
    if user and password:
        auth = GstRtspServer.RTSPAuth()
        # The Python binding takes one method, not the C flags' union: --auth picks it.
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST if args.auth == "digest"
                                   else GstRtsp.RTSPAuthMethod.BASIC)
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        auth.add_digest(user, password, token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("camera-user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role("camera-user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)

    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda *_: (loop.quit(), False)[1])
    print(f"READY rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
