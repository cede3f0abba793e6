"""Lifting benchmark: speed of `signstream data lift` and accuracy on real sign motion; prints JSON.

    python bench/lift.py [--clips 24] [--frames 100] [--accuracy-clips 64] [--batch 8]

speed:    clips of `--frames` frames (fingerspelled letters of the bundled lexicon joined into one
          motion, projected to 2D with noise and lost points) written as OpenPose JSON folders, then
          the whole command path (read JSON, five stages, write .npz and the split): clips/minute.
accuracy: `--accuracy-clips` lexicon recordings projected the same way and lifted: PA-MPJPE and
          MPJPE in shoulder widths, bone-length error, against the 2D points with zero depth; also
          against the reference read with the lexicon's default body depth scale (see lift_eval).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.formats.openpose import write_openpose_folder  # noqa: E402
from engines.formats.posefile import LEXICON_DEPTH  # noqa: E402
from engines.sequence import PoseSequence, concatenate  # noqa: E402
from training.lift import lift_keypoints, run_lift  # noqa: E402
from training.lift_eval import bone_length_error, flat, lexicon_clips, mpjpe, project, select  # noqa: E402


def long_clips(n: int, frames: int, rng: np.random.Generator) -> list[PoseSequence]:
    letters = [seq for _, seq in lexicon_clips(200, seed=1)]
    out = []
    for _ in range(n):
        parts: list[PoseSequence] = []
        while sum(len(p) for p in parts) < frames:
            parts.append(letters[rng.integers(len(letters))])
        out.append(concatenate(parts, fps=25.0).slice(0, frames))
    return out


def speed(n: int, frames: int, batch: int) -> dict:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        for i, seq in enumerate(long_clips(n, frames, rng)):
            write_openpose_folder(project(seq, f"clip{i:03d}", rng), src / f"clip{i:03d}")
        start = time.perf_counter()
        summary = run_lift(src, out, batch_size=batch)
        seconds = time.perf_counter() - start
    return {"clips": n, "frames_per_clip": frames, "batch": batch, "seconds": round(seconds, 2),
            "clips_per_minute": round(60 * summary.lifted / seconds, 1), "failed": summary.failed}


def accuracy(n: int) -> dict:
    rng = np.random.default_rng(1)
    pairs = [(seq, project(seq, name, rng)) for name, seq in lexicon_clips(n, seed=0)]
    default_ref = {name: seq for name, seq in lexicon_clips(n, seed=0, depth=LEXICON_DEPTH)}
    rows = []
    results = []
    for i in range(0, n, 8):
        results += lift_keypoints([kp for _, kp in pairs[i:i + 8]])
    for (gt, kp), res in zip(pairs, results):
        ref = select(gt, res.kept)
        ref_default = select(default_ref[kp.source], res.kept)
        bone_abs, bone_rel = bone_length_error(res.sequence, ref)
        rows.append([mpjpe(res.sequence, ref), mpjpe(res.sequence, ref, align=False), mpjpe(select(flat(kp), res.kept), ref),
                     bone_abs, bone_rel, mpjpe(res.sequence, ref_default), len(kp) - len(res.kept), len(kp)])
    m = np.nanmean(np.array(rows, dtype=np.float64), axis=0)
    s = np.nansum(np.array(rows, dtype=np.float64), axis=0)
    return {
        "clips": n,
        "pa_mpjpe_shoulder_widths": round(m[0], 4),
        "mpjpe_shoulder_widths_unaligned": round(m[1], 4),
        "pa_mpjpe_flat_baseline": round(m[2], 4),
        "bone_length_error_shoulder_widths": round(m[3], 4),
        "bone_length_error_relative": round(m[4], 4),
        "pa_mpjpe_vs_default_depth_reference": round(m[5], 4),
        "frames_pruned": int(s[6]),
        "frames": int(s[7]),
        "noise": {"pixel_sigma": 2.0, "shoulder_width_px": 150, "points_lost": 0.1},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--accuracy-clips", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    report = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
              "speed": speed(args.clips, args.frames, args.batch)}
    if args.accuracy_clips:
        report["accuracy"] = accuracy(args.accuracy_clips)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
