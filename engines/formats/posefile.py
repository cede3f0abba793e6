"""`.pose` files (the pose-format library): MediaPipe Holistic in; our 50-joint component in and out.

Our component, SIGNSTREAM_50, stores canonical points in the image space of a 512×512 frame
(neck at (256, 192), 128 px per shoulder width) so that pose-format's own tools can draw it; the
conversion is fixed, so a round trip is exact to float32 precision.

The non-manual track (engines/nonmanual.py) rides along as a second component,
SIGNSTREAM_NON_MANUAL: one point per channel (named as `CHANNELS`), the value in x, y = z = 0,
confidence 1 (0 for a frame that had no track). Readers that do not know it load the file alike
and may ignore it; `read_pose_and_face` returns it, (T, len(CHANNELS)) in `CHANNELS` order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions
from pose_format.utils.reader import BufferReader, ConstStructs

from engines.canonical import canonical_to_image, image_to_canonical, image_to_canonical_fixed
from engines.errors import PoseFormatError
from engines.sequence import PoseSequence
from engines.skeleton import (
    JOINT_NAMES,
    LEFT_HAND,
    LIMBS,
    MEDIAPIPE_BODY,
    MEDIAPIPE_SHOULDERS,
    NECK,
    NUM_BODY,
    NUM_HAND,
    NUM_JOINTS,
    RIGHT_HAND,
)

COMPONENT = "SIGNSTREAM_50"
NON_MANUAL = "SIGNSTREAM_NON_MANUAL"
_FRAME_SIZE = 512


@dataclass(frozen=True)
class MediaPipeDepth:
    """How to turn a MediaPipe `.pose` file's z into pixels of depth.

    MediaPipe keeps z in its own normalized units; the fingerspelling lexicon stores it around
    `offset` (= width / 2). Its body depth is exaggerated ~5× relative to its hand depth, and hand
    z is relative to the hand's wrist, so each hand is hung at its body wrist's depth. The
    defaults were chosen where bone lengths are steadiest across frames (see DATA.md).
    """

    offset: float | None = None  # None: width / 2
    body_scale: float = 60.0
    hand_scale: float = 500.0


LEXICON_DEPTH = MediaPipeDepth()


_HEADER_BYTES = 1 << 16  # a MediaPipe Holistic header is ~15 kB: the count follows it


@lru_cache(maxsize=4096)
def pose_seconds(path: Path) -> float:
    """A `.pose` file's duration from its header and frame count alone: the frames are neither read
    nor parsed (a file of format 0.1, whose count can overflow, is read whole)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
        try:
            reader = BufferReader(head)
            header = PoseHeader.read(reader)
        except Exception:  # a longer header than most (or not a .pose file): the whole file says which
            reader = BufferReader(path.read_bytes())
            header = PoseHeader.read(reader)
        if header.version < 0.2:
            pose = Pose.read(path.read_bytes())
            return len(pose.body.data) / pose.body.fps
        fps, frames = reader.unpack(ConstStructs.float), reader.unpack(ConstStructs.uint)
    except FileNotFoundError:
        raise PoseFormatError(path, None, "no such file") from None
    except Exception as exc:  # pose-format raises assorted errors on a bad buffer
        raise PoseFormatError(path, "header", f"not a readable .pose file ({type(exc).__name__}: {exc})") from None
    if not fps > 0:
        raise PoseFormatError(path, "header", f"fps must be positive, got {fps}")
    return frames / fps


def read_pose(path: str | Path, depth: MediaPipeDepth = LEXICON_DEPTH) -> PoseSequence:
    """Read a `.pose` file holding our component or MediaPipe Holistic landmarks."""
    return read_pose_and_face(path, depth)[0]


def read_pose_and_face(path: str | Path,
                       depth: MediaPipeDepth = LEXICON_DEPTH) -> tuple[PoseSequence, np.ndarray | None]:
    """`read_pose`, and the file's non-manual track: (T, len(CHANNELS)) float32 in `CHANNELS`
    order (a channel the file lacks, or a frame without the track, is 0), or None without one."""
    path = Path(path)
    try:
        pose = Pose.read(path.read_bytes())
    except FileNotFoundError:
        raise PoseFormatError(path, None, "no such file") from None
    except Exception as exc:  # pose-format raises assorted errors on a bad buffer
        raise PoseFormatError(path, "header", f"not a readable .pose file ({type(exc).__name__}: {exc})") from None
    names = [c.name for c in pose.header.components]
    data = np.ma.getdata(pose.body.data).astype(np.float32)
    conf = np.asarray(pose.body.confidence, dtype=np.float32)
    if data.ndim != 4 or data.shape[1] < 1:
        raise PoseFormatError(path, "body", f"expected (frames, people, points, dims) data, got {data.shape}")
    if data.shape[-1] < 3:
        raise PoseFormatError(path, "body", f"expected 3D points, got {data.shape[-1]} dims")
    data, conf = data[:, 0, :, :3], conf[:, 0]
    fps = float(pose.body.fps)
    offsets = _offsets(pose.header)
    if COMPONENT in names:
        start = offsets[COMPONENT]
        pts = data[:, start : start + NUM_JOINTS]
        c = conf[:, start : start + NUM_JOINTS]
        return _sequence(path, image_to_canonical_fixed(pts, _FRAME_SIZE), c, fps), _face(pose.header, data, conf)
    need = ("POSE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS")
    missing = [n for n in need if n not in names]
    if missing:
        raise PoseFormatError(path, "header", f"neither {COMPONENT} nor MediaPipe Holistic: lacks {', '.join(missing)}")
    width = pose.header.dimensions.width
    pts, c = _from_holistic(data, conf, offsets, depth, width)
    try:
        canonical = image_to_canonical(pts, c)
    except ValueError as exc:
        raise PoseFormatError(path, "body", str(exc)) from None
    return _sequence(path, canonical, c, fps), _face(pose.header, data, conf)


def _face(header: PoseHeader, data: np.ndarray, conf: np.ndarray) -> np.ndarray | None:
    """The SIGNSTREAM_NON_MANUAL component's values, by channel name, or None."""
    from engines.nonmanual import CHANNELS

    comp = next((c for c in header.components if c.name == NON_MANUAL), None)
    if comp is None:
        return None
    start = _offsets(header)[NON_MANUAL]
    face = np.zeros((len(data), len(CHANNELS)), dtype=np.float32)
    for k, name in enumerate(comp.points):
        if name in CHANNELS:
            i = start + k
            face[:, CHANNELS.index(name)] = np.where(conf[:, i] > 0, np.nan_to_num(data[:, i, 0]), 0.0)
    return face


def _sequence(path: Path, pts: np.ndarray, conf: np.ndarray, fps: float) -> PoseSequence:
    if len(pts) == 0:
        raise PoseFormatError(path, "body", "no frames")
    try:
        return PoseSequence(pts, conf, fps)
    except ValueError as exc:
        raise PoseFormatError(path, "body", str(exc)) from None


def _offsets(header: PoseHeader) -> dict[str, int]:
    out, at = {}, 0
    for comp in header.components:
        out[comp.name] = at
        at += len(comp.points)
    return out


def _from_holistic(data: np.ndarray, conf: np.ndarray, offsets: dict[str, int], depth: MediaPipeDepth,
                   width: int) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe Holistic points (T, P, 3) → our 50 joints in image pixels (T, 50, 3)."""
    t = len(data)
    pts = np.zeros((t, NUM_JOINTS, 3), dtype=np.float32)
    c = np.zeros((t, NUM_JOINTS), dtype=np.float32)
    z0 = width / 2 if depth.offset is None else depth.offset
    body = data[:, offsets["POSE_LANDMARKS"] : offsets["POSE_LANDMARKS"] + 33].copy()
    body_c = conf[:, offsets["POSE_LANDMARKS"] : offsets["POSE_LANDMARKS"] + 33]
    body[..., 2] = (body[..., 2] - z0) * depth.body_scale
    for j, src in enumerate(MEDIAPIPE_BODY):
        if src is None:
            continue
        pts[:, j] = body[:, src]
        c[:, j] = body_c[:, src]
    a, b = MEDIAPIPE_SHOULDERS
    pts[:, NECK] = (body[:, a] + body[:, b]) / 2
    c[:, NECK] = np.minimum(body_c[:, a], body_c[:, b])
    for name, start, wrist in (("LEFT_HAND_LANDMARKS", LEFT_HAND, 7), ("RIGHT_HAND_LANDMARKS", RIGHT_HAND, 4)):
        hand = data[:, offsets[name] : offsets[name] + NUM_HAND].copy()
        hand_c = conf[:, offsets[name] : offsets[name] + NUM_HAND]
        # Hand z is relative to its own wrist: hang the hand at the body wrist's depth.
        rel = (hand[..., 2] - hand[:, :1, 2]) * depth.hand_scale
        hand[..., 2] = pts[:, wrist, 2][:, None] + rel
        pts[:, start : start + NUM_HAND] = hand
        c[:, start : start + NUM_HAND] = hand_c
    c = np.clip(c, 0.0, 1.0)
    return pts, c


def write_pose(seq: PoseSequence, path: str | Path, face: np.ndarray | None = None) -> None:
    """Write a sequence as a `.pose` file with our SIGNSTREAM_50 component, and with `face`
    ((T, N) values, NaN rows for frames without the track) a SIGNSTREAM_NON_MANUAL component."""
    comp = PoseHeaderComponent(
        name=COMPONENT,
        points=list(JOINT_NAMES),
        limbs=list(LIMBS),
        colors=[(255, 255, 255)] * NUM_BODY + [(0, 200, 0)] * NUM_HAND + [(200, 0, 0)] * NUM_HAND,
        point_format="XYZC",
    )
    components = [comp]
    pts = canonical_to_image(seq.frames, _FRAME_SIZE)
    conf = seq.confidence
    if face is not None:
        from engines.nonmanual import CHANNELS

        face = np.asarray(face, dtype=np.float32).reshape(len(seq), -1)
        n = face.shape[1]
        components.append(PoseHeaderComponent(
            name=NON_MANUAL, points=[CHANNELS[i] if i < len(CHANNELS) else f"channel_{i}" for i in range(n)],
            limbs=[], colors=[(255, 255, 0)] * n, point_format="XYZC"))
        known = np.isfinite(face).all(axis=1, keepdims=True)
        values = np.zeros((len(seq), n, 3), dtype=np.float32)
        values[..., 0] = np.where(known, face, 0.0)
        pts = np.concatenate([pts, values], axis=1)
        conf = np.concatenate([conf, np.broadcast_to(known, face.shape).astype(np.float32)], axis=1)
    header = PoseHeader(0.1, PoseHeaderDimensions(_FRAME_SIZE, _FRAME_SIZE, _FRAME_SIZE), components)
    pts = pts[:, None]
    mask = np.broadcast_to((conf <= 0)[:, None, :, None], pts.shape)
    body = NumPyPoseBody(fps=seq.fps, data=np.ma.masked_array(pts, mask=mask), confidence=conf[:, None])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        Pose(header, body).write(f)
