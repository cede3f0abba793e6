"""2D → 3D lifting: the stages, accuracy on real sign motion, and `signstream data lift` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pose_format import Pose
from typer.testing import CliRunner

from engines.formats.openpose import Keypoints2D, write_openpose_folder
from engines.formats.posefile import read_pose
from engines.formats.prompt2sign import read_split
from engines.sequence import PoseSequence
from engines.skeleton import LIMBS, MIRROR, NUM_JOINTS, R_SHOULDER, R_WRIST, RIGHT_HAND
from server.cli import app
from training.lift import lift_keypoints
from training.lift_eval import bone_length_error, flat, lexicon_clips, mpjpe, project, select
from training.lift_stages import (
    BONE_GROUP,
    NUM_BONES,
    LiftError,
    forward_kinematics,
    initialize,
    interpolate,
    normalize,
    prune,
)


@pytest.fixture(scope="module")
def lexicon_2d() -> list[tuple[PoseSequence, Keypoints2D]]:
    """Real 3D sign motion and its noisy, gappy 2D projection."""
    rng = np.random.default_rng(1)
    return [(seq, project(seq, name, rng)) for name, seq in lexicon_clips(8, seed=0)]


# --- stages ------------------------------------------------------------------------------------


def test_normalize_uses_seen_points_and_guards_degenerate_clips() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(300, 40, size=(10, NUM_JOINTS, 2)).astype(np.float32)
    conf = np.ones((10, NUM_JOINTS), np.float32)
    conf[0, :5] = 0
    pts[0, :5] = 1e6  # missing points must not count
    out, _, _ = normalize(pts, conf)
    seen = out[conf > 0]
    assert np.allclose(seen.mean(axis=0), 0, atol=1e-4)
    assert np.isclose(np.sqrt((seen**2).mean()), 1.0, atol=1e-4)  # one pooled deviation for x and y
    assert (out[0, :5] == 0).all()
    with pytest.raises(LiftError, match="degenerate"):
        normalize(np.full_like(pts, 5.0), conf)
    with pytest.raises(LiftError, match="no point is seen"):
        normalize(pts, np.zeros_like(conf))


def test_prune_drops_frames_with_a_weak_body() -> None:
    conf = np.ones((4, NUM_JOINTS), np.float32)
    conf[1, :8] = 0.29
    conf[2, :8] = 0.3
    assert prune(conf).tolist() == [0, 2, 3]
    with pytest.raises(LiftError, match="every frame is below confidence 0.3"):
        prune(conf * 0.1)


def test_interpolation_fills_gaps_within_its_window_only() -> None:
    t = 30
    pts = np.zeros((t, NUM_JOINTS, 2), np.float32)
    pts[..., 0] = np.arange(t, dtype=np.float32)[:, None]
    conf = np.ones((t, NUM_JOINTS), np.float32)
    conf[10, 0] = 0  # one frame lost: the mean of its neighbours
    conf[20:, 1] = 0  # lost for good: filled near the last sighting, missing further on
    conf[5, 2] = 0.5  # a doubtful point blends with its neighbours
    out, c = interpolate(np.where(conf[..., None] > 0, pts, 0), conf, max_half_window=3)
    assert out[10, 0, 0] == pytest.approx(10.0) and c[10, 0] == 1.0
    assert out[11, 0, 0] == pytest.approx(11.0)  # a confident point keeps its value
    assert c[22, 1] > 0 and out[22, 1, 0] == pytest.approx(19.0)
    assert c[23, 1] == 0 and c[29, 1] == 0
    assert out[5, 2, 0] == pytest.approx(5.0) and c[5, 2] == 1.0


def test_left_and_right_share_bone_lengths() -> None:
    assert NUM_BONES == 25 and len(BONE_GROUP) == len(LIMBS) == 49
    for k, (p, c) in enumerate(LIMBS):
        mirror = LIMBS.index((MIRROR[p], MIRROR[c]))
        assert BONE_GROUP[k] == BONE_GROUP[mirror]


def test_initialization_recovers_a_rigid_skeleton_seen_flat() -> None:
    """A skeleton lying in the image plane: median lengths are its lengths, depths are zero."""
    _, seq = next(iter(_lexicon(1)))
    pts = seq.frames[:1].copy()
    pts[..., 2] = 0
    pts = np.repeat(pts, 5, axis=0)
    conf = np.repeat((seq.confidence[:1] > 0).astype(np.float32), 5, axis=0)
    xy = pts[..., :2] * np.array([1, -1], np.float32)  # canonical y up → image y down
    init = initialize(xy, conf)
    pos = forward_kinematics(torch.from_numpy(init.log_lengths)[None], torch.from_numpy(init.root)[None],
                             torch.from_numpy(init.directions)[None])[0].numpy()
    seen = conf > 0
    assert np.abs(pos[..., :2][seen] - xy[seen]).max() < 0.02
    assert np.abs(pos[..., 2][seen]).max() < 0.05


def _lexicon(n: int) -> list[tuple[str, PoseSequence]]:
    return list(lexicon_clips(n, seed=0))


# --- accuracy on real motion -------------------------------------------------------------------


def test_lifting_real_sign_motion(lexicon_2d: list[tuple[PoseSequence, Keypoints2D]]) -> None:
    """Known 3D → 2D (perspective, 2 px noise, 10% of points lost) → lift → compare.

    Measured on these 8 clips: PA-MPJPE ≈ 0.08 shoulder widths against 0.12 for the 2D points with
    zero depth, bone lengths within ≈ 12%.
    """
    results = lift_keypoints([kp for _, kp in lexicon_2d])
    lifted, baseline, bones = [], [], []
    for (gt, kp), res in zip(lexicon_2d, results):
        ref = select(gt, res.kept)
        lifted.append(mpjpe(res.sequence, ref))
        baseline.append(mpjpe(select(flat(kp), res.kept), ref))
        bones.append(bone_length_error(res.sequence, ref)[1])
    assert np.mean(lifted) < 0.11
    assert np.mean(lifted) < 0.85 * np.mean(baseline)
    assert np.mean(bones) < 0.2
    # Depth sign: signing hands are in front of the body (canonical z points at the viewer).
    for res in results:
        seq = res.sequence
        both = (seq.confidence[:, R_WRIST] > 0) & (seq.confidence[:, R_SHOULDER] > 0)
        assert (seq.frames[both, RIGHT_HAND, 2] > seq.frames[both, R_SHOULDER, 2]).mean() > 0.8


def test_output_is_canonical(lexicon_2d: list[tuple[PoseSequence, Keypoints2D]]) -> None:
    res = lift_keypoints([lexicon_2d[0][1]])[0]
    seq = res.sequence
    assert np.abs(seq.frames[:, 1]).max() < 1e-5  # the neck is the origin
    width = np.linalg.norm(seq.frames[:, 5] - seq.frames[:, 2], axis=-1)
    assert np.median(width) == pytest.approx(1.0, abs=1e-4)  # the unit is the shoulder width
    # x to the viewer's right: the signer's right shoulder is on the viewer's left.
    assert (seq.frames[:, 2, 0] < 0).all()


# --- the command -------------------------------------------------------------------------------


def _bad_clips(root: Path, good: Keypoints2D) -> dict[str, str]:
    """One folder per kind of bad input → the words its error must contain."""
    (root / "empty_json").mkdir()
    (root / "empty_json" / "f0.json").write_text("")
    (root / "nobody").mkdir()
    for i in range(3):
        (root / "nobody" / f"f{i}.json").write_text('{"people": []}')
    (root / "coco18").mkdir()
    (root / "coco18" / "f0.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 54}]}))
    dim = Keypoints2D(good.points, np.minimum(good.confidence, 0.2), good.fps, "dim")
    write_openpose_folder(dim, root / "dim")
    return {
        "empty_json": "f0.json: frame 0: empty file",
        "nobody": "no person detected in any of its 3 frames",
        "coco18": "pose_keypoints_2d has 54 values, expected 75",
        "dim": "every frame is below confidence 0.3",
    }


def test_data_lift_command(tmp_path: Path, lexicon_2d: list[tuple[PoseSequence, Keypoints2D]],
                           lexicon_dir: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    good = [kp for _, kp in lexicon_2d[:2]]
    for kp in good:
        write_openpose_folder(kp, src / kp.source)
    mp3d = sorted(lexicon_dir.glob("ase/*.pose"))[0]
    shutil.copy(mp3d, src / "mp3d.pose")
    # MediaPipe without world landmarks: its x and y are lifted.
    holistic = Pose.read(mp3d.read_bytes())
    with open(src / "mp2d.pose", "wb") as f:
        holistic.get_components(["POSE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"]).write(f)
    bad = _bad_clips(src, good[0])
    names = [kp.source for kp in good] + ["mp2d", "mp3d"]
    transcripts = tmp_path / "t.tsv"
    transcripts.write_text("".join(f"{n}\ttext of {n}\tGLOSS-{i}\n" for i, n in enumerate(names))
                           + "".join(f"{n}\tx\n" for n in bad))

    runner = CliRunner()
    res = runner.invoke(app, ["data", "lift", str(src), "--out", str(out), "--text", str(transcripts),
                              "--keep-stages", "--pose"])
    assert res.exit_code == 1, res.output  # some clips failed; the others were written
    summary = json.loads((out / "lift_summary.json").read_text())
    assert summary["lifted"] == 3 and summary["normalized"] == 1
    assert set(summary["failed"]) == set(bad)
    for name, words in bad.items():
        assert words in summary["failed"][name]
        assert name in res.output

    records = {r.name: r for r in read_split(out, "train")}
    assert set(records) == set(names)
    assert records["mp3d"].text == "text of mp3d" and records["mp3d"].gloss == "GLOSS-3"
    # 3D input is only normalized: exactly what the reader gives, in canonical space.
    np.testing.assert_allclose(records["mp3d"].sequence.frames, read_pose(mp3d).frames, atol=1e-5)
    lifted = records[good[0].source].sequence
    assert len(lifted) <= len(good[0]) and np.abs(lifted.frames[..., 2]).max() > 0.1
    assert np.abs(records["mp2d"].sequence.frames[..., 2] - read_pose(mp3d).frames[..., 2]).max() > 1e-3
    for name in names:
        assert read_pose(out / "pose" / f"{name}.pose").frames.shape[1:] == (NUM_JOINTS, 3)
    stage_files = sorted(p.name for p in (out / "stages" / good[0].source).iterdir())
    assert stage_files == ["1_normalization.txt", "2_prune.txt", "3_interpolation.txt",
                           "4_initialization.txt", "5_filtering.txt"]
    assert np.loadtxt(out / "stages" / good[0].source / "5_filtering.txt").shape == (len(lifted), NUM_JOINTS * 3)

    # Resumable: finished clips are skipped; a removed result is lifted again.
    before = (out / "train.skels").read_text()
    (out / "clips" / f"{good[1].source}.npz").unlink()
    res = runner.invoke(app, ["data", "lift", str(src), "--out", str(out), "--text", str(transcripts)])
    summary = json.loads((out / "lift_summary.json").read_text())
    assert summary["skipped"] == 3 and summary["lifted"] == 1
    assert (out / "train.skels").read_text() == before  # the lift is deterministic


def test_data_lift_without_transcripts_writes_no_text(tmp_path: Path,
                                                      lexicon_2d: list[tuple[PoseSequence, Keypoints2D]]) -> None:
    kp = lexicon_2d[2][1]
    write_openpose_folder(kp, tmp_path / "in" / kp.source)
    res = CliRunner().invoke(app, ["data", "lift", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").glob("train.*")) == ["train.files", "train.skels"]
    assert (tmp_path / "out" / "train.files").read_text() == kp.source + "\n"


def test_clip_without_transcript_is_reported(tmp_path: Path, lexicon_2d: list[tuple[PoseSequence, Keypoints2D]]) -> None:
    kp = lexicon_2d[3][1]
    write_openpose_folder(kp, tmp_path / "in" / kp.source)
    (tmp_path / "t.tsv").write_text("someone_else\thello\n")
    res = CliRunner().invoke(app, ["data", "lift", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                                   "--text", str(tmp_path / "t.tsv")])
    assert res.exit_code == 1
    summary = json.loads((tmp_path / "out" / "lift_summary.json").read_text())
    assert "no line for" in summary["failed"][kp.source]
