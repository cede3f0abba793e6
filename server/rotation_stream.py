"""The rotations stream: pose frames → the avatar's local bone rotations, for pages that draw it.

A page that draws the avatar itself (three.js, WebGL) needs per frame only the rotations of the
bones the retargeter drives (38 for a VRM humanoid: shoulders, arms, hands, finger segments), the
hips' displacement, and once, in `ready`, the bone order, the avatar's URL and the server's camera,
so the page's picture is the server's. That is 338 bytes a frame in binary, ~8.5 kB/s at 25 fps,
instead of a render and an encode.

`RotationRig` is loaded once per server (the configured avatar, its retargeting settings, the
ready fields). `RotationStream` is one stream's retargeter: a channel owns one, however many
clients watch (server/transports/channels.py), so retargeting costs once per channel, never once per viewer.
Each `RotationFrame` it makes caches its encodings, so fan-out encodes once per format.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from server.avatar.retarget import Retargeter, RetargetSettings
from server.avatar.rotations import matrix_to_quat
from server.protocol import Format, PoseFrame, RotationFrame

if TYPE_CHECKING:
    from server.avatar.gltf import Avatar
    from server.config import Config

log = logging.getLogger(__name__)
AVATAR_URL = "/avatar.glb"
_SOCKET_BUFFER = 16_384  # bytes unsent on a client's socket above which its frames queue (and the stale drop)
_STEADY = 3  # after this many equal poses in a row the smoothed output no longer changes: reuse it


@dataclass
class RotationRig:
    """What every rotations stream of a server shares: the avatar, how to retarget onto it, and
    the fields its clients' `ready` carries."""

    avatar: Avatar
    settings: RetargetSettings
    fps: float
    bones: tuple[str, ...]  # the bones each frame carries, in order (VRM humanoid names)
    joints: np.ndarray  # (B,) their rig joint indices
    ready: dict[str, Any]
    tick: Tick = field(default_factory=lambda: Tick())  # its streams' frames, batched per loop iteration

    @classmethod
    def load(cls, cfg: Config) -> RotationRig:
        from server.avatar.gltf import load_avatar
        from server.avatar.render import frame_camera

        a, v = cfg.avatar, cfg.video
        avatar = load_avatar(cfg.resolve(a.path), a.bone_map)
        settings = RetargetSettings(a.min_confidence, a.hold_seconds, a.ease_seconds, a.smoothing, a.finger_limits)
        bones = tuple(Retargeter(avatar.rig, float(v.fps), settings).names)
        joints = np.array([avatar.rig.humanoid[b] for b in bones])
        cam = frame_camera(avatar, v.width, v.height)  # the video's camera: same picture at any size
        ready = {"frames": "rotations", "bones": list(bones), "avatar": {
            "url": AVATAR_URL,
            "joints": [int(j) for j in joints],
            "hips": int(avatar.rig.humanoid.get("hips", -1)),
            "turn": [round(float(x), 6) for x in matrix_to_quat(avatar.turn)],
            "camera": {"position": [round(float(x), 6) for x in cam.position], "yfov": cam.yfov,
                       "znear": cam.znear, "zfar": cam.zfar},
            "background": [float(c) for c in v.background[:3]],
        }}
        from server.avatar.face import FaceRig
        ready["avatar"]["face"] = FaceRig.of_avatar(avatar).ready_fields()  # the page applies the non-manual track alike
        return cls(avatar, settings, float(v.fps), bones, joints, ready)


_rigs: dict[str, RotationRig] = {}
_lock = threading.Lock()


def rotation_rig(cfg: Config) -> RotationRig:
    """The server's one RotationRig for `cfg` (loaded on first use: ~0.1 s)."""
    a, v = cfg.avatar, cfg.video
    key = repr((str(cfg.resolve(a.path)), sorted(a.bone_map.items()), a.min_confidence, a.hold_seconds,
                a.ease_seconds, a.smoothing, a.finger_limits, v.fps, v.width, v.height, list(v.background)))
    with _lock:
        rig = _rigs.get(key)
        if rig is None:
            rig = _rigs[key] = RotationRig.load(cfg)
        return rig


class RotationStream:
    """One stream's retargeter: pose frames in, rotation frames out (one frame later: the
    retargeter's smoothing is centred, so frame n comes out when frame n+1 arrives)."""

    def __init__(self, rig: RotationRig) -> None:
        self.rig = rig
        self.retargeter = Retargeter(rig.avatar.rig, rig.fps, rig.settings)
        self.solved = 0  # frames retargeted (the rest were a steady pose, reused)
        self._prev: PoseFrame | None = None
        self._same = 0
        self._last: np.ndarray | None = None  # (B, 4) the last rotations sent
        self._root = np.zeros(3, dtype=np.float32)  # the retargeter moves no hips yet

    def push(self, frame: PoseFrame) -> RotationFrame | None:
        """The rotation frame for the pose before `frame`, now (None for the first)."""
        return push_frames([self], [frame])[0]

    def submit(self, frame: PoseFrame, deliver: Callable[[RotationFrame], None]) -> None:
        """`push`, batched with every other stream of this rig whose clock ticked in the same
        event-loop iteration: `deliver` gets the rotation frame on the next iteration."""
        self.rig.tick.submit(self, frame, deliver)

    def rotations(self, frame: PoseFrame) -> np.ndarray:
        """Local rotation matrices (J, 3, 3) of every joint for `frame` alone, unsmoothed (tests, bench)."""
        return self.retargeter.solve(frame.points.astype(np.float64), frame.confidence)


def push_frames(streams: Sequence[RotationStream], frames: Sequence[PoseFrame]) -> list[RotationFrame | None]:
    """One pose frame for each of several distinct streams of one rig: what `push` gives each, with
    the retargeting of all of them done in one batch (Retargeter.push_many)."""
    prevs: list[PoseFrame | None] = []
    todo: list[int] = []  # streams whose pose changed lately: retarget (the rest reuse their last)
    for i, (st, frame) in enumerate(zip(streams, frames)):
        prev, st._prev = st._prev, frame
        same = prev is not None and np.array_equal(prev.points, frame.points) and np.array_equal(prev.confidence, frame.confidence)
        st._same = st._same + 1 if same else 0
        prevs.append(prev)
        if not (st._same > _STEADY and st._last is not None):
            todo.append(i)
    skip: set[int] = set()  # the smoothing's first frame: nothing to send yet
    if todo:
        points = np.stack([frames[i].points for i in todo]).astype(np.float64)
        confidence = np.stack([frames[i].confidence for i in todo])
        local = Retargeter.push_many([streams[i].retargeter for i in todo], points, confidence)
        done = []
        for i, loc in zip(todo, local):
            streams[i].solved += 1
            if loc is None or prevs[i] is None:
                skip.add(i)
            else:
                done.append((i, loc))
        if done:
            joints = streams[0].rig.joints
            quats = matrix_to_quat(np.stack([loc[joints] for _, loc in done])).astype(np.float32)  # one call for all
            for (i, _), q in zip(done, quats):
                streams[i]._last = q
    out: list[RotationFrame | None] = []
    for i, (st, prev) in enumerate(zip(streams, prevs)):
        if i in skip or prev is None or st._last is None:
            out.append(None)
        else:
            out.append(RotationFrame(prev.unit, prev.segment, prev.frame, prev.t, prev.kind, st._last, st._root, prev.face))
    return out


class Tick:
    """The frames a rig's streams submit during one event-loop iteration, retargeted together on
    the next. Sessions' clocks fire independently, but those that come due together (many, when the
    server is loaded) tick in the same iteration: batching them costs a frame no added latency, and
    a batch of S streams costs a few times one stream, not S times (bench/rotations.py)."""

    def __init__(self) -> None:
        self._pending: dict[RotationStream, list[tuple[PoseFrame, Callable[[RotationFrame], None]]]] = {}
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # for benches: batches retargeted and frames in them
        self.frames = 0

    def submit(self, stream: RotationStream, frame: PoseFrame, deliver: Callable[[RotationFrame], None]) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new server's loop (tests run several): nothing of the old one carries over
            self._loop, self._pending, self._scheduled = loop, {}, False
        self._pending.setdefault(stream, []).append((frame, deliver))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Retarget what is pending, in rounds: a stream whose clock ticked twice (catching up)
        has its frames in order, one a round."""
        self._scheduled = False
        pending, self._pending = self._pending, {}
        while pending:
            streams = list(pending)
            items = [pending[s].pop(0) for s in streams]
            for s in streams:
                if not pending[s]:
                    del pending[s]
            self.batches += 1
            self.frames += len(streams)
            try:
                out = push_frames(streams, [f for f, _ in items])
            except Exception:  # a bug must not stop every stream's frames: report, go on with the next
                log.exception("retargeting a batch of %d rotation frames failed", len(streams))
                continue
            for (_, deliver), rotated in zip(items, out):
                if rotated is not None:
                    deliver(rotated)


def send_now(transport: asyncio.Transport, frame: RotationFrame, fmt: Format) -> bool:
    """Write `frame` onto a WebSocket client's socket now, as one prebuilt frame; False when it must
    queue instead (the socket is closing, or the client has not taken what was written before).

    A rotations viewer costs one write per frame this way: no task wake-up, no per-client encode,
    no per-client compression (an uncompressed message is allowed under permessage-deflate and leaves
    the compressor's state alone; ordering is kept because the caller writes only when nothing of
    its own is queued). Under load this is what lets one channel feed a thousand viewers.
    """
    if transport.is_closing() or transport.get_write_buffer_size() > _SOCKET_BUFFER:
        return False
    transport.write(frame.ws_frame(fmt))
    return True
