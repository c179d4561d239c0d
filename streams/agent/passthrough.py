"""The agent for an RTSP camera: the camera's H.264 relayed to Sightline as received.

``PassthroughAgent`` is the reference ``Agent`` (session.py: hello, welcome,
heartbeat, reconnects, one send lock) with the capture-and-encode loop replaced
by a relay of what the camera's demux thread (rtsp.RtspCamera) delivers. The
device is online while the camera streams: the portal connection is opened once
the camera is, with a hello describing the camera's real stream, and closed when
the camera drops (viewers see the device go offline, then online when it returns).
After every (re)connection to the portal, access units are skipped until the next
keyframe, so viewers and the recorder always start on a decodable picture.
"""
from __future__ import annotations

import asyncio

from streams.agent import AGENT_NAME
from streams.agent.encoders import EncodedFrame
from streams.agent.rtsp import RtspCamera
from streams.agent.session import Agent, AgentConfig
from streams.agent.status import StatusLine
from streams.protocol import KIND_AUDIO, KIND_H264

UNSUPPORTED = ("unsupported: this camera is relayed as received (RTSP passthrough, no re-encoding), "
               "so the agent cannot change its {keys}; change them in the camera's own settings")


class _Relay:
    """Stands where the reference agent keeps its encoder: nothing to encode or reset here."""

    codec = "h264"

    def restart(self) -> None:
        pass  # each session waits for a keyframe itself (PassthroughAgent._video)

    def close(self) -> None:
        pass


class PassthroughAgent(Agent):
    def __init__(self, config: AgentConfig, camera: RtspCamera, status: StatusLine | None = None, **kwargs):
        config.codec, config.audio, config.use_server_settings = "h264", False, False
        super().__init__(config, camera, _Relay(), status, **kwargs)
        self.camera = camera
        self._hello_generation = 0  # the camera connection the current hello describes

    async def run(self) -> int:
        self.camera.start(asyncio.get_running_loop())
        return await super().run()

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
            # Frames cannot be dropped from an H.264 stream without breaking the pictures after them.
            self.status.error(f"the camera sends {fps:g} fps, above the server's max_fps={limit}: the server "
                              "will refuse the stream; lower the frame rate in the camera's settings")

    def _hello(self) -> dict:
        info = self.camera.info
        agent = AGENT_NAME + f" (RTSP{': ' + self.config.name[:100] if self.config.name else ''})"
        return {"type": "hello", "protocol": 1, "codecs": ["h264"], "resolution": info.resolution,
                "fps": info.fps, "audio": dict(info.audio) if info.audio else None, "agent": agent}

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

    def handle_command(self, message: dict) -> dict:
        """A relayed stream cannot change fps, size, brightness...: every command is acked
        as unsupported, naming the settings, so the portal can say so (not silently ignored)."""
        self.counters.commands += 1
        settings = message.get("settings")
        keys = ", ".join(sorted(settings)) if isinstance(settings, dict) and settings else "settings"
        self.status.event(f"refused command {message.get('id')}: unsupported on a relayed camera ({keys})")
        return {"type": "ack", "id": message.get("id"), "ok": False, "error": UNSUPPORTED.format(keys=keys)}
