"""The agent for an RTSP camera: the camera's H.264 relayed to Sightline as received.

``PassthroughAgent`` is the reference ``Agent`` (session.py: hello, welcome,
heartbeat, reconnects, one send lock) with the capture-and-encode loop replaced
by a relay of what the camera's demux thread (rtsp.RtspCamera) delivers. The
device is online while the camera streams: the portal connection is opened once
the camera is, with a hello describing the camera's real stream, and closed when
the camera drops (viewers see the device go offline, then online when it returns).
After every (re)connection to the portal, access units are skipped until the next
keyframe, so viewers and the recorder always start on a decodable picture. A camera
above the server's limits (max_fps, max_bytes_per_second) cannot be made smaller here:
the pacer (pacing.py) skips the rest of a group of pictures that does not fit, warns
once a connection by how much the camera is over, and the connection stays up.

Commands: a relayed stream's fps and size cannot change (that would need a
re-encode); brightness and contrast go to the camera's ONVIF imaging service when
the camera has one (``onvif=``: onvif_camera.OnvifCamera), scaled to the camera's
ranges. Everything else is acked ``ok: false`` with an ``unsupported: ...`` error
that the portal shows to the operator.
"""
from __future__ import annotations

import asyncio

from sightline_agent import AGENT_NAME
from sightline_agent.controls import InvalidSetting, validate
from sightline_agent.encoders import EncodedFrame
from sightline_agent.onvif_camera import OnvifImaging, OnvifUnavailable
from sightline_agent.rtsp import RtspCamera
from sightline_agent.session import Agent, AgentConfig
from sightline_agent.status import StatusLine
from sightline_agent.protocol import KIND_AUDIO, KIND_H264

# Short enough to reach the operator whole (the server keeps the first 200 characters of an ack's error).
UNSUPPORTED = ("unsupported: a relayed RTSP camera's {keys} cannot be changed here (its stream is passed through, "
               "not re-encoded): change them in the camera's own settings")
UNSUPPORTED_WITH_ONVIF = ("unsupported: a relayed RTSP camera's {keys} cannot be changed here (only {supported}, "
                          "through ONVIF): change them in the camera's own settings")
# An ONVIF command must be acked well inside the portal's COMMAND_TIMEOUT_SECONDS (5 s by default).
ONVIF_COMMAND_SECONDS = 3.5


def unsupported_keys(settings, supported: set[str]) -> list[str]:
    """The keys of a command this camera cannot honour (all of them without ONVIF imaging)."""
    if not isinstance(settings, dict) or not settings:
        return ["settings"]
    return sorted(str(key) for key in settings if key not in supported)


class _Relay:
    """Stands where the reference agent keeps its encoder: nothing to encode or reset here."""

    codec = "h264"

    def restart(self) -> None:
        pass  # each session waits for a keyframe itself (PassthroughAgent._video)

    def close(self) -> None:
        pass


class PassthroughAgent(Agent):
    def __init__(self, config: AgentConfig, camera: RtspCamera, status: StatusLine | None = None,
                 onvif=None, **kwargs):
        config.codec, config.audio, config.use_server_settings = "h264", False, False
        super().__init__(config, camera, _Relay(), status, **kwargs)
        self.camera = camera
        self.onvif = onvif  # onvif_camera.OnvifCamera, or None: every command is unsupported
        self._imaging: asyncio.Task | None = None
        self._hello_generation = 0  # the camera connection the current hello describes

    async def run(self) -> int:
        self.camera.start(asyncio.get_running_loop())
        if self.onvif is not None:
            self._start_imaging()
        try:
            return await super().run()
        finally:
            if self._imaging is not None:
                self._imaging.cancel()
            if self.onvif is not None:
                await self.onvif.close()

    async def _load_imaging(self) -> OnvifImaging:
        """Ask the camera once, at start, for its imaging ranges (a command should not wait for it)."""
        try:
            imaging = await self.onvif.imaging()
        except OnvifUnavailable as error:
            self.status.error(f"brightness/contrast unavailable: {error}")
            raise
        ranges = ", ".join(f"{key} {low:g}..{high:g}" for key, (low, high) in imaging.ranges.items())
        self.status.event(f"{self.onvif.where}: imaging service for video source {imaging.source_token} "
                          f"({ranges or 'no brightness or contrast'})")
        return imaging

    def _close_media(self) -> None:
        self.camera.close()

    async def _session(self) -> tuple[int | None, bool]:
        if not self.camera.opened.is_set():
            self.counters.state = "camera down"
            waits = [asyncio.create_task(self.camera.opened.wait()), asyncio.create_task(self.done.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
            if self.done.is_set():
                return None, False
        info = self.camera.info
        self._hello_generation = self.camera.generation
        self.settings.width, self.settings.height = info.width, info.height
        if info.fps:
            self.settings.fps = max(1, round(info.fps))
        return await super()._session()

    def _apply_welcome(self, welcome: dict) -> None:
        super()._apply_welcome(welcome)
        fps, limit = self.camera.info.fps, self.limits["max_fps"]
        if fps and fps > limit:
            # Frames cannot be dropped from an H.264 stream without breaking the pictures after them:
            # the pacer skips whole ends of groups of pictures, so viewers see pauses.
            self.status.error(f"the camera sends {fps:g} fps, above the server's max_fps={limit}: "
                              + ("frames will be skipped to the next keyframe (viewers see pauses)"
                                 if self.config.pacing else "the server will refuse the stream")
                              + "; lower the frame rate in the camera's settings")

    def _make_adapter(self, now: float) -> None:
        return None  # the camera's stream is relayed as received: nothing here can make it smaller

    def _hello(self) -> dict:
        info = self.camera.info
        agent = AGENT_NAME + f" (RTSP{': ' + self.config.name[:100] if self.config.name else ''})"
        return {"type": "hello", "protocol": 1, "codecs": ["h264"], "resolution": info.resolution,
                "fps": info.fps, "audio": dict(info.audio) if info.audio else None, "agent": agent,
                "source": {"kind": "rtsp"}}

    async def _video(self, ws) -> None:
        """Relay the camera's items of the current camera connection until it drops."""
        queue = self.camera.queue
        generation = self._hello_generation
        while not queue.empty():  # what piled up while we were away from the portal
            queue.get_nowait()
        if self.camera.generation != generation or not self.camera.opened.is_set():
            # The camera dropped (and its "lost" was among the items just discarded) between
            # the hello and now: the hello describes a stream that is gone.
            return
        waiting_for_keyframe = True
        dropped = self.camera.dropped
        while not self.done.is_set():
            item = await queue.get()
            if item.kind == "lost":
                if item.generation == generation:
                    self.status.event("camera lost: closing the portal connection until it is back")
                    return
                continue
            if item.kind == "open":
                return  # a new camera connection (its stream may differ): a new hello describes it
            if item.generation != generation:
                continue
            if self.camera.dropped != dropped:  # items were lost on the way: resume at a keyframe
                dropped, waiting_for_keyframe = self.camera.dropped, True
            if item.kind == "video":
                if waiting_for_keyframe and not item.keyframe:
                    continue
                waiting_for_keyframe = False
                await self._send_frame(ws, EncodedFrame(KIND_H264, item.payload, item.keyframe), item.timestamp_us)
                if self.config.frames is not None and self.counters.frames_sent >= self.config.frames:
                    self.done.set()
                    return
            elif item.kind == "audio" and not waiting_for_keyframe and self.camera.info.audio:
                await self._send_frame(ws, EncodedFrame(KIND_AUDIO, item.payload, False), item.timestamp_us)

    def handle_command(self, message: dict):
        """A relayed stream cannot change fps or size: such a command is acked as unsupported,
        naming the settings, so the portal can say so (not silently ignored). With ONVIF, a
        command of brightness/contrast only is answered by the camera (a coroutine: see
        _imaging_command)."""
        self.counters.commands += 1
        if self.onvif is not None:
            return self._imaging_command(message)
        return self._unsupported(message, unsupported_keys(message.get("settings"), set()), set())

    def _unsupported(self, message: dict, keys: list[str], supported: set[str]) -> dict:
        names = ", ".join(keys)
        self.status.event(f"refused command {message.get('id')}: unsupported on a relayed camera ({names})")
        error = (UNSUPPORTED_WITH_ONVIF.format(keys=names, supported=", ".join(sorted(supported))) if supported
                 else UNSUPPORTED.format(keys=names))
        return {"type": "ack", "id": message.get("id"), "ok": False, "error": error}

    async def _imaging_command(self, message: dict) -> dict:
        command_id, settings = message.get("id"), message.get("settings")
        try:
            imaging = await asyncio.wait_for(asyncio.shield(self._imaging_ready()), ONVIF_COMMAND_SECONDS)
            supported = set(imaging.ranges)
        except (OnvifUnavailable, asyncio.TimeoutError):
            imaging, supported = None, set()
        missing = unsupported_keys(settings, supported)
        if missing:
            return self._unsupported(message, missing, supported)
        try:
            changes = validate(settings)
        except InvalidSetting as error:
            return {"type": "ack", "id": command_id, "ok": False, "error": str(error)}
        try:
            sent = await asyncio.wait_for(self.onvif.set_imaging(imaging, changes), ONVIF_COMMAND_SECONDS)
        except (OnvifUnavailable, asyncio.TimeoutError) as error:
            text = str(error) or f"{self.onvif.where}: no answer within {ONVIF_COMMAND_SECONDS:g} s"
            self.status.error(f"command {command_id} failed: {text}")
            return {"type": "ack", "id": command_id, "ok": False, "error": f"onvif: {text}"}
        for key, value in changes.items():
            setattr(self.settings, key, value)
        self.status.event(f"applied command {command_id} through ONVIF: "
                          + ", ".join(f"{name}={value:g}" for name, value in sent.items()))
        return {"type": "ack", "id": command_id, "ok": True, "applied": changes}

    async def _imaging_ready(self) -> OnvifImaging:
        """The imaging ranges loaded at start; asked again if that failed (the camera may be back)."""
        if self._imaging is None or (self._imaging.done() and (self._imaging.cancelled()
                                                                or self._imaging.exception() is not None)):
            self._start_imaging()
        return await self._imaging

    def _start_imaging(self) -> None:
        self._imaging = asyncio.create_task(self._load_imaging())
        # Reported by _load_imaging already; retrieved here so asyncio does not warn about it again.
        self._imaging.add_done_callback(lambda task: task.cancelled() or task.exception())
