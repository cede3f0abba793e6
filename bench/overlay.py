"""Broadcast overlay benchmark: how fast `signstream render --captions` turns a caption file into an
alpha overlay. Prints JSON.

    .venv/bin/python bench/overlay.py [--seconds 60] [--size 512x512] [--format webm|mov]

The captions are made here: a cue every 3 s with three everyday words, which fingerspelling
cannot keep up with, so the backlog policy is part of what is timed. Two figures: the live path
alone (session, engine, motion timeline on the simulated clock: pose frames/s) and the whole
render (that, plus retargeting, skinning, drawing offscreen and encoding: video frames/s, and how
many times faster than real time). Wall times depend on what else runs: the load average is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.loader import open_scheduler  # noqa: E402
from engines.formats.captions import read_captions  # noqa: E402
from server.config import load_config  # noqa: E402
from server.overlay import CuePlayer, render_overlay  # noqa: E402

_WORDS = "good morning everyone the news today weather is cold and windy in the north later".split()


def caption_file(path: Path, seconds: float) -> None:
    cues, t, i = [], 0.5, 0
    while t + 2.5 <= seconds:
        words = " ".join(_WORDS[(i + k) % len(_WORDS)] for k in range(3))
        cues.append(f"{len(cues) + 1}\n00:{int(t // 60):02d}:{t % 60:06.3f} --> 00:{int((t + 2.5) // 60):02d}:{(t + 2.5) % 60:06.3f}\n{words}\n")
        t, i = t + 3.0, i + 3
    path.write_text("\n".join(cues).replace(".", ","), encoding="utf-8")  # SRT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--size", default="512x512")
    ap.add_argument("--format", choices=("webm", "mov"), default="webm")
    args = ap.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    cfg = load_config()
    cfg = replace(cfg, video=replace(cfg.video, width=width, height=height))
    fps = float(cfg.video.fps)
    with tempfile.TemporaryDirectory() as tmp:
        captions = Path(tmp) / "bench.srt"
        caption_file(captions, args.seconds)
        cues = read_captions(captions).cues

        start = time.perf_counter()
        player = CuePlayer(cfg, cues, cfg.live.default_language, open_scheduler(cfg.engine, fps))
        poses = sum(1 for _ in player.frames())
        live_s = time.perf_counter() - start

        out = Path(tmp) / f"overlay.{args.format}"
        start = time.perf_counter()
        report = render_overlay(cfg, captions, out, None, None)
        render_s = time.perf_counter() - start
        size_mb = out.stat().st_size / 1e6
    w = report["words"]
    print(json.dumps({
        "benchmark": "overlay", "format": args.format, "size": f"{width}x{height}", "fps": fps,
        "cues": len(cues), "video_s": report["duration_s"], "frames": report["frames"],
        "words": w, "file_mb": round(size_mb, 2),
        "live_path_frames_per_s": round(poses / live_s, 1),
        "render_frames_per_s": round(report["frames"] / render_s, 1),
        "render_wall_s": round(render_s, 2),
        "x_real_time": round(report["duration_s"] / render_s, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
