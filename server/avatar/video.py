"""Writing rendered frames: .mp4 (H.264), .webm (VP9, with alpha when the background is
transparent) through PyAV, or a single .png."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from server.avatar.errors import RenderError

VIDEO_SUFFIXES = (".mp4", ".webm")
OUTPUT_SUFFIXES = VIDEO_SUFFIXES + (".png",)


def check_output(path: Path, rgba: bool) -> None:
    """Fail before rendering if the output cannot be written as asked."""
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise RenderError(f"{path}: output must end in {', '.join(OUTPUT_SUFFIXES)}")
    if rgba and suffix == ".mp4":
        raise RenderError(f"{path}: H.264 .mp4 has no alpha channel; use .webm or .png for a transparent background")


def write_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def write_video(frames: Iterable[np.ndarray], path: Path, fps: float, rgba: bool) -> int:
    """Encode frames (H, W, 3|4 uint8) to `path`; returns the number of frames written."""
    import av

    check_output(path, rgba)
    path.parent.mkdir(parents=True, exist_ok=True)
    webm = path.suffix.lower() == ".webm"
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libvpx-vp9" if webm else "libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuva420p" if (webm and rgba) else "yuv420p"
        if not webm:
            stream.options = {"crf": "18", "preset": "veryfast"}
        else:
            stream.options = {"crf": "30", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
        for image in frames:
            if count == 0:
                h, w = image.shape[:2]
                if h % 2 or w % 2:
                    raise RenderError(f"{path}: video needs even width and height, got {w}×{h}")
                stream.width, stream.height = w, h
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgba" if image.shape[2] == 4 else "rgb24")
            container.mux(stream.encode(frame))
            count += 1
        if count == 0:
            raise RenderError(f"{path}: nothing to write (no frames)")
        container.mux(stream.encode(None))
    return count
