"""Readers and writers: .pose, .skels and friends, round trips and malformed input."""

from __future__ import annotations

import numpy as np
import pytest

from engines import skeleton as sk
from engines.errors import PoseFormatError
from engines.formats.anyfile import load_sequence
from engines.formats.posefile import read_pose, write_pose
from engines.formats.prompt2sign import Record, format_skels, parse_skels, read_split, write_split
from engines.sequence import PoseSequence


@pytest.fixture(scope="module")
def recording(alphabets) -> PoseSequence:
    """A real MediaPipe Holistic recording: the ASL letter B."""
    return read_pose(alphabets["ase"].letters["b"].path)


def test_real_recording_in_canonical_space(recording):
    seen = (recording.confidence[:, sk.R_SHOULDER] > 0) & (recording.confidence[:, sk.L_SHOULDER] > 0)
    assert np.abs(recording.frames[:, sk.NECK]).max() < 1e-6
    width = np.linalg.norm(recording.frames[seen, sk.L_SHOULDER] - recording.frames[seen, sk.R_SHOULDER], axis=-1)
    assert abs(np.median(width) - 1.0) < 1e-5
    # As the viewer sees the signer: the signer's left shoulder on the right (x > 0), the nose up.
    assert recording.frames[seen, sk.L_SHOULDER, 0].mean() > 0.3
    assert recording.frames[:, sk.NOSE, 1].mean() > 0.2
    # Fingerspelling is done with the right hand, in front of the body (z towards the viewer).
    right = recording.confidence[:, sk.RIGHT_HAND] > 0
    assert right.mean() > 0.5
    assert recording.frames[right, sk.RIGHT_HAND, 2].mean() > 0


def test_hand_depth_is_steady(recording):
    """Hand bones keep their length across frames with the declared depth scale (DATA.md)."""
    lengths = sk.bone_lengths(recording.frames)
    hand_limbs = [i for i, (p, c) in enumerate(sk.LIMBS) if p >= sk.RIGHT_HAND]
    seen = recording.confidence[:, sk.RIGHT_HAND] > 0
    cv = lengths[seen][:, hand_limbs].std(axis=0) / lengths[seen][:, hand_limbs].mean(axis=0)
    assert np.median(cv) < 0.2


def test_pose_round_trip(recording, tmp_path):
    write_pose(recording, tmp_path / "b.pose")
    back = read_pose(tmp_path / "b.pose")
    assert back.fps == recording.fps
    assert np.abs(back.frames - recording.frames).max() <= 1e-4
    assert (back.confidence == recording.confidence).all()


def test_pose_skels_pose_round_trip(recording, tmp_path):
    for scale in (1.0, 3.0, 9.0):
        line = format_skels(recording, scale)
        values = np.array(line.split(), dtype=float).reshape(len(recording), 151)
        assert values[-1, -1] == 1.0 and np.all(np.diff(values[:, -1]) > 0)
        seq, count = parse_skels(line, recording.fps, scale)
        assert np.abs(seq.frames - recording.frames).max() <= 1e-4
        write_pose(seq, tmp_path / "x.pose")
        assert np.abs(read_pose(tmp_path / "x.pose").frames - recording.frames).max() <= 1e-4
    # Missing points stay missing through .skels (zeros), the neck does not.
    assert ((seq.confidence > 0) == (recording.confidence > 0)).all()


def test_split_round_trip_and_any_file(recording, tmp_path):
    recs = [Record("ase/b", "b", "<ase> FS:B", recording), Record("ase/b2", "bee", "<ase> FS:B-E-E", recording.slice(0, 5))]
    write_split(tmp_path, "dev", recs)
    back = read_split(tmp_path, "dev")
    assert [r.name for r in back] == ["ase/b", "ase/b2"] and back[1].gloss == "<ase> FS:B-E-E"
    assert len(back[1].sequence) == 5
    assert np.abs(load_sequence(tmp_path / "dev.skels", index=1).frames - recording.frames[:5]).max() <= 1e-4


def test_nan_points_become_missing_and_are_counted(recording):
    frames = recording.frames.copy()
    frames[2, 30] = np.nan
    seq = PoseSequence(frames, recording.confidence, recording.fps)
    assert seq.repaired == 1 and seq.confidence[2, 30] == 0 and seq.frames[2, 30].tolist() == [0, 0, 0]
    line = format_skels(recording).split()
    line[5] = "nan"
    assert parse_skels(" ".join(line), 25.0)[0].repaired == 1


@pytest.mark.parametrize(
    "content, where, problem",
    [
        (b"\x00\x01garbage", "header", "not a readable .pose file"),
        (b"", "header", "not a readable .pose file"),
    ],
)
def test_malformed_pose_file(tmp_path, content, where, problem):
    path = tmp_path / "bad.pose"
    path.write_bytes(content)
    with pytest.raises(PoseFormatError) as err:
        read_pose(path)
    assert err.value.path == str(path) and err.value.where == where and problem in err.value.problem
    assert err.value.code == "bad_pose_file"


def test_pose_file_of_another_skeleton(recording, tmp_path):
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    comp = PoseHeaderComponent("OTHER", ["a", "b"], [(0, 1)], [(0, 0, 0)], "XYZC")
    data = np.zeros((3, 1, 2, 3), dtype=np.float32)
    pose = Pose(PoseHeader(0.1, PoseHeaderDimensions(10, 10, 10), [comp]),
                NumPyPoseBody(25, np.ma.masked_array(data), np.ones((3, 1, 2), dtype=np.float32)))
    with open(tmp_path / "other.pose", "wb") as f:
        pose.write(f)
    with pytest.raises(PoseFormatError, match="lacks POSE_LANDMARKS"):
        read_pose(tmp_path / "other.pose")
    with pytest.raises(PoseFormatError, match="no such file"):
        read_pose(tmp_path / "missing.pose")


@pytest.mark.parametrize(
    "line, problem",
    [
        ("", "empty sequence"),
        ("1 2 3", "not a multiple of 151"),
        (" ".join(["0.5"] * 150 + ["x"]), "not a list of numbers"),
    ],
)
def test_malformed_skels_line_names_file_and_line(tmp_path, line, problem):
    for kind in ("text", "gloss", "files"):
        (tmp_path / f"test.{kind}").write_text("a\nb\n")
    good = " ".join(["0.5"] * 150 + ["1.0"])
    (tmp_path / "test.skels").write_text(f"{good}\n{line}\n")
    with pytest.raises(PoseFormatError) as err:
        read_split(tmp_path, "test")
    assert err.value.where == "line 2" and err.value.path.endswith("test.skels") and problem in err.value.problem


def test_split_files_must_agree(tmp_path):
    good = " ".join(["0.5"] * 150 + ["1.0"])
    (tmp_path / "train.skels").write_text(f"{good}\n{good}\n")
    (tmp_path / "train.text").write_text("a\nb\n")
    (tmp_path / "train.files").write_text("a\nb\n")
    with pytest.raises(PoseFormatError, match="missing split file"):
        read_split(tmp_path, "train")
    (tmp_path / "train.gloss").write_text("A\n")
    with pytest.raises(PoseFormatError, match="disagree on the number of sequences"):
        read_split(tmp_path, "train")
    (tmp_path / "train.gloss").write_bytes(b"\xff\xfe\n\n")
    with pytest.raises(PoseFormatError, match="not UTF-8"):
        read_split(tmp_path, "train")


def test_any_file_errors(tmp_path):
    (tmp_path / "a.skels").write_text(" ".join(["0.5"] * 150 + ["1.0"]) + "\n")
    with pytest.raises(PoseFormatError, match="holds only 1 sequences"):
        load_sequence(tmp_path / "a.skels", index=3)
    with pytest.raises(PoseFormatError, match="unknown pose file type"):
        load_sequence(tmp_path / "a.csv")
