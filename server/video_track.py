"""The avatar as a live video track: a session's pose frames in, rendered pictures out, on the clock.

A `Studio` holds what every viewer shares: the avatar and its one renderer (one GL thread). Each
viewer's `AvatarTrack` keeps its own retargeter (it has hold/ease and smoothing state) and two
bounded slots: the newest pose not yet drawn, and the newest picture. A pose that arrives while
an older one waits replaces it (the old one is stale and is counted as dropped), so a renderer
slower than the clock shows fewer, current frames instead of building latency. `recv()` — pulled
by aiortc's encoder — paces itself on the frame clock and sends whatever picture is newest.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.avatar.gltf import Avatar, load_avatar
from server.avatar.render import AvatarRenderer
from server.avatar.retarget import Retargeter, RetargetSettings
from server.config import Config
from server.protocol import PoseFrame

CLOCK_RATE = 90000  # RTP video clock
_RESYNC_PERIODS = 3  # an encoder this many frames behind the clock skips ahead instead of bursting


@dataclass
class TrackStats:
    drawn: int = 0
    dropped: int = 0  # poses replaced by a newer one before they were drawn
    sent: int = 0
    skipped: int = 0  # clock periods skipped because the consumer fell behind


class Studio:
    """The avatar and the one renderer all video tracks share. Blocking to build (loads the avatar,
    makes a GL context): build it off the event loop."""

    def __init__(self, cfg: Config) -> None:
        v, a = cfg.video, cfg.avatar
        self.fps = float(v.fps)
        self.avatar: Avatar = load_avatar(cfg.resolve(a.path), a.bone_map)
        self.settings = RetargetSettings(a.min_confidence, a.hold_seconds, a.ease_seconds, a.smoothing, a.finger_limits)
        self.renderer = AvatarRenderer(self.avatar, v.width, v.height, v.background, a.skinning, v.antialias)
        self.rest_image: np.ndarray = self.renderer.render(self.avatar.rig.bind)

    @property
    def pixel_format(self) -> str:
        return "rgba" if self.renderer.rgba else "rgb24"

    def close(self) -> None:
        self.renderer.close()


class AvatarTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        self.stats = TrackStats()
        self.image: np.ndarray = studio.rest_image  # the newest picture
        self._retargeter = Retargeter(studio.avatar.rig, studio.fps, studio.settings)
        self._pose: PoseFrame | None = None  # the newest pose not yet drawn
        self._wake = asyncio.Event()
        self._period = 1.0 / studio.fps
        self._start: float | None = None
        self._timestamp = 0
        self._drawer = asyncio.create_task(self._draw_loop())

    def show(self, frame: PoseFrame) -> None:
        """The session's next pose frame (called on its clock; never blocks)."""
        if self._pose is not None:
            self.stats.dropped += 1
        self._pose = frame
        self._wake.set()

    def _solve(self, pose: PoseFrame):
        """Retarget, FK and skin on a worker thread; the draw is queued on the GL thread."""
        local = self._retargeter.push(pose.points.astype(np.float64), pose.confidence)
        if local is None:  # the smoothing's first frame
            return None
        return self.studio.renderer.submit(self.studio.avatar.rig.fk(local))

    async def _draw_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            pose, self._pose = self._pose, None
            if pose is None:
                continue
            job = await loop.run_in_executor(None, self._solve, pose)
            if job is not None:
                self.image = await asyncio.wrap_future(job)
                self.stats.drawn += 1

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._timestamp += int(CLOCK_RATE * self._period)
            wait = self._start + self._timestamp / CLOCK_RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -_RESYNC_PERIODS * self._period:  # behind: follow the clock, don't burst
                behind = int(-wait / self._period)
                self.stats.skipped += behind
                self._timestamp += int(CLOCK_RATE * self._period) * behind
        frame = av.VideoFrame.from_ndarray(self.image, format=self.studio.pixel_format)
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, CLOCK_RATE)
        self.stats.sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._drawer.cancel()
