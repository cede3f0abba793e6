"""Writing rendered frames through PyAV: .mp4 (H.264), .webm (VP9, with alpha when the background
is transparent), .mov (ProRes 4444, with alpha when transparent), or a single .png.

Every file is written beside its destination under a temporary name and renamed into place only
when complete, so a failed or interrupted render never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
import numpy as np

from server.avatar.errors import RenderError


@dataclass(frozen=True)
class _Codec:
    name: str  # PyAV / FFmpeg encoder
    pix_fmt: str
    alpha_pix_fmt: str | None  # None: the format has no alpha channel
    options: dict[str, str]


_CODECS = {
    ".mp4": _Codec("libx264", "yuv420p", None, {"crf": "18", "preset": "veryfast"}),
    # realtime/cpu-used 8: VP9 is by far the slowest stage otherwise; the avatar on a flat or
    # transparent background compresses well anyway. The webm muxer marks alpha (alpha_mode=1).
    ".webm": _Codec("libvpx-vp9", "yuv420p", "yuva420p", {"crf": "30", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}),
    # ProRes 4444 is what broadcast mixers and editors take with a key (alpha) channel.
    ".mov": _Codec("prores_ks", "yuv444p10le", "yuva444p10le", {"profile": "4444"}),
}
VIDEO_SUFFIXES = tuple(_CODECS)
OUTPUT_SUFFIXES = VIDEO_SUFFIXES + (".png",)
ALPHA_SUFFIXES = tuple(s for s, c in _CODECS.items() if c.alpha_pix_fmt) + (".png",)


def check_output(path: Path, rgba: bool) -> None:
    """Fail before rendering if the output cannot be written as asked."""
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise RenderError(f"{path}: output must end in {', '.join(OUTPUT_SUFFIXES)}")
    if rgba and suffix not in ALPHA_SUFFIXES:
        raise RenderError(f"{path}: {suffix} has no alpha channel; use {', '.join(ALPHA_SUFFIXES)} for a transparent background")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so writers pick the same format) that replaces
    `path` when the block succeeds and is removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        tmp.chmod(0o666 & ~umask)  # mkstemp makes owner-only files; the result is an ordinary file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    with replacing(path) as tmp:
        Image.fromarray(image).save(tmp)


def write_video(frames: Iterable[np.ndarray], path: Path, fps: float, rgba: bool) -> int:
    """Encode frames (H, W, 3|4 uint8) to `path`; returns the number of frames written."""
    import av

    check_output(path, rgba)
    codec = _CODECS[path.suffix.lower()]
    count = 0
    with replacing(path) as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(codec.name, rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = codec.alpha_pix_fmt if (rgba and codec.alpha_pix_fmt) else codec.pix_fmt
        stream.options = dict(codec.options)
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
