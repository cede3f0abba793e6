"""`signstream data lift`: keypoints of one's own videos (OpenPose JSON, MediaPipe `.pose`) → Prompt2Sign.

A clip is a folder of OpenPose JSON frames or a `.pose` file. 2D clips go through the five stages of
`training.lift_stages` (batched over clips in stage 5) and come out in canonical space; `.pose` files
that already carry 3D (MediaPipe world landmarks, or our own component) are only normalized.

Output folder:
- `clips/<name>.npz`: each finished clip (written atomically; a rerun skips the clips found here);
- `<split>.skels`, `<split>.files` (and `.text`, `.gloss` with transcripts): the Prompt2Sign split,
  rebuilt from `clips/` at the end of every run, in input order;
- `pose/<name>.pose` with `--pose`; `stages/<name>/` with `--keep-stages`;
- `lift_summary.json`: counts, and each failed clip with its reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pose_format.pose_header import PoseHeader
from pose_format.utils.reader import BufferReader

from engines.canonical import image_to_canonical
from engines.errors import PoseFormatError, SignStreamError
from engines.formats.openpose import Keypoints2D, frame_files, natural_key, read_openpose_folder
from engines.formats.posefile import COMPONENT, read_pose, write_pose
from engines.formats.prompt2sign import Record, write_split
from engines.sequence import PoseSequence
from training.lift_stages import (
    Init,
    LiftError,
    RefineSettings,
    forward_kinematics,
    initialize,
    interpolate,
    normalize,
    prune,
    refine,
)

STAGE_NAMES = ("1_normalization", "2_prune", "3_interpolation", "4_initialization", "5_filtering")
_STAGE_VALUES = ("x y confidence",) * 3 + ("x y z",) * 2  # 2D stages carry confidence, 3D ones depth
_WORLD = "POSE_WORLD_LANDMARKS"


@dataclass
class LiftResult:
    """A clip in canonical space; `kept` indexes the input frames it keeps (pruning drops some)."""

    name: str
    sequence: PoseSequence
    kept: np.ndarray
    lifted: bool  # False: the input carried 3D and was only normalized
    notes: dict[str, int] = field(default_factory=dict)
    stages: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Prepared:
    """A 2D clip after stages 1-4, waiting for stage 5."""

    kp: Keypoints2D
    kept: np.ndarray
    target: np.ndarray  # stage-1 points of the kept frames: what stage 5 reprojects onto
    weight: np.ndarray  # their detector confidence
    confidence: np.ndarray  # stage-3 confidence: the output's
    init: Init
    stages: dict[str, np.ndarray]


def prepare(kp: Keypoints2D, max_half_window_s: float = 0.5) -> Prepared:
    """Stages 1-4 for one clip. Raises LiftError with the reason when it cannot be lifted."""
    if len(kp) and kp.empty_frames == len(kp):
        raise LiftError(f"no person detected in any of its {len(kp)} frames")
    points, _, _ = normalize(kp.points, kp.confidence)
    kept = prune(kp.confidence)
    target, weight = points[kept], kp.confidence[kept]
    filled, conf = interpolate(target, weight, max(1, round(max_half_window_s * kp.fps)))
    init = initialize(filled, conf)
    stages = {
        STAGE_NAMES[0]: np.concatenate([points, kp.confidence[..., None]], axis=-1),
        STAGE_NAMES[1]: np.concatenate([target, weight[..., None]], axis=-1),
        STAGE_NAMES[2]: np.concatenate([filled, conf[..., None]], axis=-1),
    }
    return Prepared(kp, kept, target, weight, conf, init, stages)


def _initial_positions(init: Init) -> np.ndarray:
    with torch.no_grad():
        pos = forward_kinematics(torch.from_numpy(init.log_lengths)[None], torch.from_numpy(init.root)[None],
                                 torch.from_numpy(init.directions)[None])
    return pos[0].numpy()


def finish(batch: list[Prepared], settings: RefineSettings = RefineSettings()) -> list[LiftResult]:
    """Stage 5 for a batch of prepared clips, then into canonical space."""
    joints = refine([p.init for p in batch], [p.target for p in batch], [p.weight for p in batch], settings)
    results = []
    for p, pos in zip(batch, joints):
        try:
            canonical = image_to_canonical(pos, p.confidence)
        except ValueError as exc:
            raise LiftError(str(exc)) from None
        seq = PoseSequence(canonical, p.confidence, p.kp.fps)
        notes = {"frames_in": len(p.kp), "frames_pruned": len(p.kp) - len(p.kept), "empty_frames": p.kp.empty_frames,
                 "repaired": p.kp.repaired, "points_missing": int((p.confidence <= 0).sum())}
        stages = dict(p.stages)
        stages[STAGE_NAMES[3]] = _initial_positions(p.init)
        stages[STAGE_NAMES[4]] = pos
        results.append(LiftResult(p.kp.source, seq, p.kept, True, notes, stages))
    return results


def lift_keypoints(clips: list[Keypoints2D], settings: RefineSettings = RefineSettings()) -> list[LiftResult]:
    """Lift 2D clips in one batch (every clip must be liftable; see `prepare`)."""
    return finish([prepare(kp) for kp in clips], settings)


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path


def find_clips(folder: Path) -> list[Clip]:
    """Clips in a folder: sub-folders of OpenPose JSON frames and `.pose` files, natural order.

    A folder that itself holds JSON frames is one clip.
    """
    if not folder.is_dir():
        raise PoseFormatError(folder, None, "input is not a folder")
    if frame_files(folder):
        return [Clip(folder.name, folder)]
    found = [Clip(p.name if p.is_dir() else p.stem, p) for p in folder.iterdir()
             if p.is_dir() or p.suffix == ".pose"]
    return sorted(found, key=lambda c: natural_key(c.path.name))


def _carries_3d(path: Path) -> bool:
    try:
        header = PoseHeader.read(BufferReader(path.read_bytes()))
    except Exception:  # read_pose reports the bad file properly
        return True
    names = {c.name for c in header.components}
    return _WORLD in names or COMPONENT in names


def load_clip(clip: Clip, fps: float) -> LiftResult | Keypoints2D:
    """A 3D `.pose` clip as a finished result; anything else as 2D keypoints to lift."""
    if clip.path.is_dir():
        return read_openpose_folder(clip.path, fps)
    seq = read_pose(clip.path)
    if _carries_3d(clip.path):
        notes = {"frames_in": len(seq), "frames_pruned": 0, "empty_frames": 0, "repaired": seq.repaired,
                 "points_missing": int((seq.confidence <= 0).sum())}
        return LiftResult(clip.name, seq, np.arange(len(seq)), False, notes)
    # MediaPipe without world landmarks: its z is a guess, so lift from x and y alone (y back down).
    return Keypoints2D(seq.frames[..., :2] * np.array([1.0, -1.0]), seq.confidence, seq.fps, clip.name,
                       repaired=seq.repaired)


def read_transcripts(path: Path) -> dict[str, tuple[str, str]]:
    """`name<TAB>text[<TAB>gloss]` lines (blank lines and `#` comments skipped) → name → (text, gloss)."""
    out: dict[str, tuple[str, str]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) not in (2, 3):
            raise PoseFormatError(path, f"line {lineno}", "expected name<TAB>text or name<TAB>text<TAB>gloss")
        if parts[0] in out:
            raise PoseFormatError(path, f"line {lineno}", f"second transcript for {parts[0]!r}")
        out[parts[0]] = (parts[1], parts[2] if len(parts) == 3 else "")
    return out


# --- outputs -----------------------------------------------------------------------------------


def _save_clip(out: Path, result: LiftResult, keep_stages: bool, pose: bool) -> None:
    clips = out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    if keep_stages and result.stages:
        folder = out / "stages" / result.name
        folder.mkdir(parents=True, exist_ok=True)
        for name, values in result.stages.items():
            header = f"{name}: one frame a line, 50 joints × ({_STAGE_VALUES[STAGE_NAMES.index(name)]}), normalized units"
            if name == STAGE_NAMES[1]:
                header += f"; kept input frames {result.kept.tolist()}"
            np.savetxt(folder / f"{name}.txt", values.reshape(len(values), -1), fmt="%.5g", header=header)
    if pose:
        write_pose(result.sequence, out / "pose" / f"{result.name}.pose")
    tmp = clips / f"{result.name}.tmp.npz"
    np.savez(tmp, frames=result.sequence.frames, confidence=result.sequence.confidence,
             fps=result.sequence.fps, kept=result.kept, lifted=result.lifted)
    os.replace(tmp, clips / f"{result.name}.npz")  # a clip is finished only once this lands


def _load_finished(path: Path) -> PoseSequence | None:
    try:
        with np.load(path) as f:
            return PoseSequence(f["frames"], f["confidence"], float(f["fps"]))
    except (OSError, KeyError, ValueError):
        return None  # a damaged file: lift the clip again


@dataclass
class Summary:
    lifted: int = 0
    normalized: int = 0  # 3D input, only normalized
    skipped: int = 0  # finished by an earlier run
    failed: dict[str, str] = field(default_factory=dict)
    written: int = 0


def run_lift(input_dir: Path, out: Path, transcripts: Path | None = None, keep_stages: bool = False,
             pose: bool = False, fps: float = 25.0, split: str = "train", batch_size: int = 8,
             settings: RefineSettings = RefineSettings(),
             on_start: Callable[[int], None] = lambda total: None,
             on_clip: Callable[[str, str | None], None] = lambda name, error: None) -> Summary:
    """Lift every clip of `input_dir` into `out`; a failing clip is recorded and the others go on.

    `on_start(total)` is called once, `on_clip(name, error or None)` once per clip.
    """
    clips = find_clips(input_dir)
    texts = read_transcripts(transcripts) if transcripts else None
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    on_start(len(clips))
    names = [c.name for c in clips]
    dupes = {n for n in names if names.count(n) > 1}

    def fail(name: str, reason: str) -> None:
        summary.failed[name] = reason
        on_clip(name, reason)

    def store(results: list[LiftResult]) -> None:
        for r in results:
            _save_clip(out, r, keep_stages, pose)
            if r.lifted:
                summary.lifted += 1
            else:
                summary.normalized += 1
            on_clip(r.name, None)

    def flush(batch: list[Prepared]) -> None:
        try:
            store(finish(batch, settings))
        except (LiftError, SignStreamError) as exc:
            if len(batch) == 1:
                fail(batch[0].kp.source, str(exc))
            else:  # find the culprit: the others still deserve their result
                for p in batch:
                    flush([p])
        batch.clear()

    pending: list[Prepared] = []
    for clip in clips:
        if clip.name in dupes:
            fail(clip.name, f"two clips are named {clip.name!r} ({clip.path.name}); rename one")
            continue
        if texts is not None and clip.name not in texts:
            fail(clip.name, f"no line for {clip.name!r} in {transcripts}")
            continue
        if _load_finished(out / "clips" / f"{clip.name}.npz") is not None:
            summary.skipped += 1
            on_clip(clip.name, None)
            continue
        try:
            loaded = load_clip(clip, fps)
            if isinstance(loaded, LiftResult):
                store([loaded])
                continue
            pending.append(prepare(loaded))
        except (LiftError, SignStreamError) as exc:
            fail(clip.name, getattr(exc, "message", str(exc)))
            continue
        if len(pending) >= batch_size:
            flush(pending)
    if pending:
        flush(pending)
    summary.written = _write_split(out, split, [c.name for c in clips if c.name not in summary.failed], texts)
    (out / "lift_summary.json").write_text(json.dumps(summary.__dict__, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    return summary


def _write_split(out: Path, split: str, names: list[str], texts: dict[str, tuple[str, str]] | None) -> int:
    records = []
    for name in names:
        seq = _load_finished(out / "clips" / f"{name}.npz")
        if seq is not None:
            text, gloss = texts[name] if texts is not None else ("", "")
            records.append(Record(name, text, gloss, seq))
    write_split(out, split, records)
    if texts is None:
        # write_split always writes all four files; without transcripts, empty lines would pose as text.
        for kind in ("text", "gloss"):
            (out / f"{split}.{kind}").unlink()
    return len(records)

