"""The avatar as live video: one render and one encode per pose stream, sent to any number of viewers.

A `VideoRenderer` holds what every stream shares: the avatar and its one renderer (one GL thread). It
draws on a transparent background so each stream can put its own colour behind the avatar (WebRTC
video has no alpha: a broadcast mixer keys on a chroma colour instead).

A `VideoStream` is one stream's picture. It gets one session's pose frames on the session's clock and
draws the newest (a slot of one: a pose that arrives while an older one waits replaces it, counted
as dropped, so a slow renderer shows fewer, current frames instead of building latency). On the
frame clock it encodes the newest picture once (VP8 or H.264) and hands the packet to every
viewer's `ViewerTrack`; aiortc's sender packetizes a packet without encoding it again. So N viewers
of a channel cost one render and one encode (about 4 ms of CPU a frame at 512×512), not N.

A viewer gets a keyframe when it joins, when its browser reports picture loss (PLI), and when it
fell so far behind that its bounded queue was emptied; until then it gets nothing (inter frames
without their reference are useless).
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.avatar.painter import AvatarPainter
from server.config import Config
from engines.frame import PoseFrame

CLOCK_RATE = 90000  # RTP video clock
BITRATE = 1_000_000  # fixed: one encode serves every viewer, so no per-viewer rate adaptation
_RESYNC_PERIODS = 3  # a clock this many frames late skips ahead instead of bursting
_STEADY = 3  # after this many equal poses the retargeter's smoothing has settled: stop redrawing
# At rest only the slow life moves (breathing, sway, blinks): drawing it at this rate instead of the
# full frame rate keeps an idle stream cheap (a render is ~10 ms; 25 a second for nobody signing).
_REST_DRAW_FPS = 8.0
_QUEUE = 12  # packets a viewer may fall behind (~0.5 s) before it is resynchronised on a keyframe

RGB = tuple[int, int, int]


@dataclass
class TrackStats:
    drawn: int = 0
    dropped: int = 0  # poses replaced by a newer one before they were drawn
    sent: int = 0  # pictures encoded
    skipped: int = 0  # clock periods skipped because the encoder fell behind
    keyframes: int = 0


def parse_colour(text: str) -> RGB:
    """'#RRGGBB' or 'RRGGBB' → (r, g, b); ValueError otherwise."""
    h = text.removeprefix("#")
    if len(h) != 6:
        raise ValueError(f"a colour is #RRGGBB, got {text!r}")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


class VideoRenderer:
    """The avatar and the one renderer all video streams share. Blocking to build (loads the avatar,
    makes a GL context): build it off the event loop."""

    def __init__(self, cfg: Config) -> None:
        v = cfg.video
        self.fps = float(v.fps)
        self.background: RGB = tuple(int(round(c * 255)) for c in v.background[:3])  # type: ignore[assignment]
        self.painter = AvatarPainter.open(cfg, background=(*v.background[:3], 0.0))
        self.rest: np.ndarray = self.painter.paint_rest()  # RGBA

    def compose(self, rgba: np.ndarray, background: RGB) -> np.ndarray:
        """The RGBA picture over an opaque background colour → RGB."""
        if background == self.background:
            # GL cleared to this colour (alpha 0), so the RGB is already the picture over it,
            # antialiased edges included: a copy, not a blend (6 ms a 512×512 frame here).
            return np.ascontiguousarray(rgba[..., :3])
        alpha = rgba[..., 3:4].astype(np.uint16)
        out = rgba[..., :3] * alpha + np.array(background, np.uint16) * (255 - alpha)
        return ((out + 127) // 255).astype(np.uint8)

    def close(self) -> None:
        self.painter.close()


def _encoder(codec: str, width: int, height: int, fps: float) -> av.CodecContext:
    """One real-time encoder, set up as aiortc sets up its own (CBR VP8 / baseline H.264)."""
    ctx = av.CodecContext.create("libvpx" if codec == "vp8" else "libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.bit_rate = width, height, "yuv420p", BITRATE
    ctx.time_base = fractions.Fraction(1, int(round(fps)))
    ctx.framerate = fractions.Fraction(int(round(fps)), 1)
    if codec == "vp8":
        ctx.gop_size = 3000  # keyframes on demand only
        ctx.qmin, ctx.qmax = 2, 56
        ctx.options = {"bufsize": str(BITRATE), "cpu-used": "-6", "deadline": "realtime", "lag-in-frames": "0",
                       "minrate": str(BITRATE), "maxrate": str(BITRATE), "noise-sensitivity": "4",
                       "overshoot-pct": "15", "partitions": "0", "static-thresh": "1", "undershoot-pct": "100"}
    else:
        ctx.options = {"level": "31", "tune": "zerolatency"}
        ctx.profile = "Baseline"
    ctx.thread_count = 1
    return ctx


def _same_pose(a: PoseFrame, b: PoseFrame) -> bool:
    return (np.array_equal(a.points, b.points) and np.array_equal(a.confidence, b.confidence)
            and (a.face is None) == (b.face is None) and (a.face is None or np.array_equal(a.face, b.face)))


class VideoStream:
    """One pose stream → one picture → one encoded stream for all its viewers."""

    def __init__(self, renderer: VideoRenderer, codec: str, background: RGB | None = None) -> None:
        self.shared = renderer
        self.background = background or renderer.background
        self.stats = TrackStats()
        self.viewers: set[ViewerTrack] = set()
        self.image: np.ndarray = renderer.compose(renderer.rest, self.background)  # the newest picture
        self._stream = renderer.painter.stream()
        self._encoder = _encoder(codec, self.image.shape[1], self.image.shape[0], renderer.fps)
        self._pose: PoseFrame | None = None  # the newest pose not yet drawn
        self._wake = asyncio.Event()
        self._watched = asyncio.Event()  # some viewer's peer is connected: draw and encode only then
        self._keyframe = True
        self._tasks = [asyncio.create_task(self._draw_loop()), asyncio.create_task(self._clock())]

    def push(self, frame: PoseFrame) -> None:
        """The session's next pose frame (called on its clock; never blocks)."""
        if self._pose is not None and self._watched.is_set():
            self.stats.dropped += 1
        self._pose = frame
        if self._watched.is_set():
            self._wake.set()

    def connected(self) -> None:
        """A viewer's peer connected: the first makes the stream draw and encode."""
        if not self._watched.is_set():
            self._watched.set()
            self._keyframe = True
            if self._pose is not None:
                self._wake.set()

    def _unwatched(self) -> None:
        """A viewer left: with no connected viewer left, the stream idles (draws and encodes nothing)."""
        if not any(v.is_connected for v in self.viewers):
            self._watched.clear()

    def watch(self) -> ViewerTrack:
        track = ViewerTrack(self)
        self.viewers.add(track)
        self.request_keyframe()
        return track

    def request_keyframe(self) -> None:
        self._keyframe = True

    def _solve(self, pose: PoseFrame) -> np.ndarray | None:
        """Retarget, FK and skin on a worker thread, draw on the GL thread, compose here."""
        rgba = self._stream.paint(pose.points, pose.confidence, pose.face)
        return None if rgba is None else self.shared.compose(rgba, self.background)  # None: smoothing's first frame

    async def _draw_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last: PoseFrame | None = None
        same = 0  # poses in a row equal to the one before
        rest_every = max(1, round(self.shared.fps / _REST_DRAW_FPS))
        rest_drawn = -rest_every  # frame index of the last rest pose drawn
        while True:
            await self._wake.wait()
            self._wake.clear()
            pose, self._pose = self._pose, None
            if pose is None:
                continue
            same = same + 1 if last is not None and _same_pose(pose, last) else 0
            last = pose
            if same > _STEADY:  # the rest pose while idle: the smoothed picture no longer changes
                continue
            if pose.kind == "rest" and same == 0 and 0 <= pose.frame - rest_drawn < rest_every:
                continue  # idle life at _REST_DRAW_FPS
            if pose.kind == "rest":
                rest_drawn = pose.frame
            image = await loop.run_in_executor(None, self._solve, pose)
            if image is not None:
                self.image = image
                self.stats.drawn += 1

    def _encode(self, image: np.ndarray, index: int, keyframe: bool) -> list[av.Packet]:
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        packets = self._encoder.encode(frame)
        for p in packets:  # the sender converts pts to the 90 kHz RTP clock
            p.pts, p.time_base = index, self._encoder.time_base
        return packets

    async def _clock(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.shared.fps
        start, index = loop.time(), 0
        while True:
            if not self._watched.is_set():  # nobody connected (an abandoned offer): cost nothing
                await self._watched.wait()
                start, index = loop.time() - index * period, index  # resume the clock from now
            index += 1
            wait = start + index * period - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -_RESYNC_PERIODS * period:  # behind: follow the clock, don't burst
                behind = int(-wait / period)
                self.stats.skipped += behind
                index += behind
            keyframe, self._keyframe = self._keyframe, False
            packets = await loop.run_in_executor(None, self._encode, self.image, index, keyframe)
            self.stats.sent += 1
            for packet in packets:
                self.stats.keyframes += packet.is_keyframe
                for viewer in list(self.viewers):
                    viewer.put(packet)

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for viewer in list(self.viewers):
            viewer.stop()


class ViewerTrack(MediaStreamTrack):
    """One viewer's video: the stream's encoded packets, from a keyframe on, in a bounded queue."""

    kind = "video"

    def __init__(self, stream: VideoStream) -> None:
        super().__init__()
        self.stream = stream
        self.dropped = 0  # packets thrown away because this viewer fell behind
        self._queue: deque[av.Packet] = deque()
        self._ready = asyncio.Event()
        self._synced = False  # a keyframe has been queued since (re)joining
        self.is_connected = False  # its peer connection is up (until then the stream need not draw for it)

    def connect(self) -> None:
        self.is_connected = True
        self.stream.connected()

    def put(self, packet: av.Packet) -> None:
        if len(self._queue) >= _QUEUE:  # the sender is stuck: start again at the next keyframe
            self.dropped += len(self._queue)
            self._queue.clear()
            self._synced = False
            self.stream.request_keyframe()
        if not self._synced and not packet.is_keyframe:
            return
        self._synced = True
        self._queue.append(packet)
        self._ready.set()

    async def recv(self) -> av.Packet:  # type: ignore[override]  # aiortc sends packets as they are
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()
        self.is_connected = False
        self.stream.viewers.discard(self)
        self.stream._unwatched()
