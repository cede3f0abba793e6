"""Draw a pose sequence as a 2D skeleton video (GIF or MP4), so people can look at the data."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from engines.canonical import canonical_to_image
from engines.sequence import PoseSequence
from engines.skeleton import LEFT_HAND, LIMBS, NUM_BODY, RIGHT_HAND

SIZE = 512
# Colours as the viewer sees them: signer's right (viewer's left) in orange, left in blue.
_BODY, _RIGHT, _LEFT, _BG = (60, 60, 60), (230, 120, 20), (30, 110, 220), (250, 250, 250)


def _colour(child: int) -> tuple[int, int, int]:
    if child >= RIGHT_HAND:
        return _RIGHT
    if child >= LEFT_HAND:
        return _LEFT
    return _BODY


def draw_frame(points: np.ndarray, confidence: np.ndarray, label: str = "") -> Image.Image:
    """One frame: limbs whose both ends are seen, joints as dots; depth is not drawn."""
    img = Image.new("RGB", (SIZE, SIZE), _BG)
    draw = ImageDraw.Draw(img)
    px = canonical_to_image(points, SIZE)
    for parent, child in LIMBS:
        if confidence[parent] > 0 and confidence[child] > 0:
            width = 4 if child < NUM_BODY else 2
            draw.line([tuple(px[parent, :2]), tuple(px[child, :2])], fill=_colour(child), width=width)
    for j, (x, y, _) in enumerate(px):
        if confidence[j] > 0:
            r = 3 if j < NUM_BODY else 2
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_colour(j))
    if label:
        draw.text((10, 10), label, fill=(0, 0, 0))
    return img


def write_preview(seq: PoseSequence, out: str | Path, label: str = "") -> int:
    """Write `.gif` or `.mp4`; returns the number of frames written."""
    out = Path(out)
    codecs = {".gif": ("gif", "rgb8"), ".mp4": ("libx264", "yuv420p")}
    if out.suffix not in codecs:
        raise ValueError(f"preview output must end in .gif or .mp4, got {out.name!r}")
    codec, pix_fmt = codecs[out.suffix]
    out.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(seq.fps).limit_denominator(1001)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width = stream.height = SIZE
        stream.pix_fmt = pix_fmt
        for t in range(len(seq)):
            img = draw_frame(seq.frames[t], seq.confidence[t], label)
            for packet in stream.encode(av.VideoFrame.from_image(img)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return len(seq)
