"""The one pose-frame type, from an engine backend to the transports, and the one way a stage
hands a frame on.

A frame's fields are filled in as it travels: a backend makes it (points, confidence, counter,
done: `generated`); the scheduler (engines/engine.py) tags it with its unit's key, its segment and
kind, and whether it is the unit's last; the engine loop (server/engine_loop.py) with the session's
unit; the motion timeline (server/motion.py) buffers it, eases between units, adds the non-manual
face values and gives out each output frame with its index and time in the stream; the protocol
(server/protocol.py) encodes those, and the video stream (server/transports/video.py) draws them.
Torch-free: serving imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class PoseFrame:
    """One frame of a pose stream, in canonical space (the positional fields are the wire's)."""

    unit: int  # the session's unit id; 0: no unit (rest pose)
    segment: int  # index into the unit's segments; -1: between segments
    frame: int  # index in the session's output stream
    t: float  # stream time in seconds = frame / fps
    kind: str  # rest, transition, sign, fingerspelling (server/protocol.py _FRAME_KINDS)
    points: np.ndarray  # (50, 3) float32
    confidence: np.ndarray  # (50,) float32
    face: np.ndarray | None = None  # (len(engines.nonmanual.CHANNELS),) the non-manual track; None: not sent
    counter: float = field(default=0.0, kw_only=True)  # progress of its sign, in (0, 1]
    done: bool = field(default=False, kw_only=True)  # the backend's generation of its sign ends with it
    key: str = field(default="", kw_only=True)  # its unit's id in the scheduler
    last: bool = field(default=False, kw_only=True)  # its unit's last frame
    # Server messages that happen right after it is shown (the timeline's unit statuses).
    events: list[Any] = field(default_factory=list, kw_only=True, repr=False, compare=False)


def generated(points: np.ndarray, confidence: np.ndarray, counter: float, done: bool) -> PoseFrame:
    """A backend's frame: not yet placed in a unit nor in a stream."""
    return PoseFrame(0, -1, 0, 0.0, "sign", points, confidence, counter=counter, done=done)


class FrameSink(Protocol):
    """A stage that takes pose frames: the session (from the engine loop), its timeline, a video stream."""

    def push(self, frame: PoseFrame) -> None:
        """Take the next frame; never blocks."""
