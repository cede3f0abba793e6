"""OpenPose JSON folders: round trip, natural order, stated policies and one error per malformed class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines.errors import PoseFormatError
from engines.formats.openpose import Keypoints2D, natural_key, read_openpose_folder, write_openpose_folder
from engines.skeleton import LEFT_HAND, NUM_JOINTS, R_WRIST, RIGHT_HAND


def _clip(frames: int = 12, seed: int = 0) -> Keypoints2D:
    rng = np.random.default_rng(seed)
    points = rng.uniform(10, 500, size=(frames, NUM_JOINTS, 2)).astype(np.float32)
    conf = rng.uniform(0.2, 1.0, size=(frames, NUM_JOINTS)).astype(np.float32)
    conf[frames // 2, LEFT_HAND : LEFT_HAND + 21] = 0  # a hand not found in one frame
    return Keypoints2D(points, conf, 25.0, "clip")


def _frame(body: int = 75, left: int = 63, right: int = 63) -> dict:
    return {"version": 1.3, "people": [{
        "pose_keypoints_2d": [1.0] * body,
        "hand_left_keypoints_2d": [1.0] * left,
        "hand_right_keypoints_2d": [1.0] * right,
    }]}  # fmt: skip


def _folder(tmp_path: Path, texts: list[str]) -> Path:
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"clip_{i:012d}_keypoints.json").write_text(text)
    return folder


def test_round_trip(tmp_path: Path) -> None:
    kp = _clip()
    write_openpose_folder(kp, tmp_path / "clip")
    back = read_openpose_folder(tmp_path / "clip", fps=25.0)
    assert back.source == "clip" and len(back) == len(kp)
    np.testing.assert_allclose(back.confidence, kp.confidence, atol=1e-4)
    seen = kp.confidence > 0
    np.testing.assert_allclose(back.points[seen], kp.points[seen], atol=1e-3)
    assert (back.points[~seen] == 0).all()
    assert back.empty_frames == 0 and back.repaired == 0


def test_frames_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in (1, 2, 10):  # lexical order would put f10 before f2
        doc = _frame()
        doc["people"][0]["pose_keypoints_2d"] = [float(i), 0.0, 1.0] * 25
        (folder / f"f{i}.json").write_text(json.dumps(doc))
    kp = read_openpose_folder(folder)
    assert kp.points[:, 0, 0].tolist() == [1.0, 2.0, 10.0]
    assert sorted(["a10", "a9", "a100"], key=natural_key) == ["a9", "a10", "a100"]


def test_no_people_is_a_counted_empty_frame(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [json.dumps(_frame()), json.dumps({"people": []}), json.dumps(_frame())])
    kp = read_openpose_folder(folder)
    assert kp.empty_frames == 1
    assert (kp.confidence[1] == 0).all() and (kp.confidence[0] > 0).all()


def test_nan_becomes_missing_and_is_counted(tmp_path: Path) -> None:
    doc = _frame()
    doc["people"][0]["pose_keypoints_2d"][R_WRIST * 3] = float("nan")  # json writes NaN, OpenPose can too
    kp = read_openpose_folder(_folder(tmp_path, [json.dumps(doc)]))
    assert kp.repaired == 1
    assert kp.confidence[0, R_WRIST] == 0 and kp.points[0, R_WRIST].tolist() == [0.0, 0.0]
    assert kp.confidence[0, RIGHT_HAND] == 1


def test_untracked_hands_are_missing(tmp_path: Path) -> None:
    doc = _frame(left=0)
    del doc["people"][0]["hand_right_keypoints_2d"]
    kp = read_openpose_folder(_folder(tmp_path, [json.dumps(doc)]))
    assert (kp.confidence[0, LEFT_HAND:] == 0).all() and (kp.confidence[0, :8] == 1).all()


def test_empty_frame_is_written_without_people(tmp_path: Path) -> None:
    kp = _clip(frames=3)
    kp.confidence[1] = 0
    paths = write_openpose_folder(kp, tmp_path / "out", prefix="x")
    assert json.loads(paths[1].read_text())["people"] == []
    assert read_openpose_folder(tmp_path / "out").empty_frames == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file"),
        ("   \n", "empty file"),
        ('{"people": [', "invalid JSON"),
        ('[1, 2]', "expected an object with a `people` list"),
        ('{"version": 1.3}', "expected an object with a `people` list"),
        ('{"people": [7]}', "people[0] is not an object"),
        (json.dumps(_frame(body=54)), "pose_keypoints_2d has 54 values, expected 75"),
        (json.dumps(_frame(left=42)), "hand_left_keypoints_2d has 42 values, expected 63"),
        (json.dumps(_frame(right=66)), "hand_right_keypoints_2d has 66 values, expected 63"),
        (json.dumps({"people": [{"hand_left_keypoints_2d": []}]}), "pose_keypoints_2d is missing"),
        (json.dumps({"people": [{"pose_keypoints_2d": ["a"] * 75}]}), "not a number"),
    ],
)
def test_malformed_frame_names_file_and_frame(tmp_path: Path, text: str, problem: str) -> None:
    good = json.dumps(_frame())
    folder = _folder(tmp_path, [good, good, text])
    with pytest.raises(PoseFormatError) as info:
        read_openpose_folder(folder)
    err = info.value
    assert err.where == "frame 2"
    assert err.path.endswith("clip_000000000002_keypoints.json")
    assert problem in err.problem


def test_folder_without_frames(tmp_path: Path) -> None:
    (tmp_path / "clip").mkdir()
    with pytest.raises(PoseFormatError, match="no .json frame files"):
        read_openpose_folder(tmp_path / "clip")
    with pytest.raises(PoseFormatError, match="not a folder"):
        read_openpose_folder(tmp_path / "missing")


def test_keypoints_validate_shapes() -> None:
    with pytest.raises(ValueError, match="points must be"):
        Keypoints2D(np.zeros((3, 50, 3)), np.zeros((3, 50)), 25.0, "x")
    with pytest.raises(ValueError, match="fps"):
        Keypoints2D(np.zeros((3, 50, 2)), np.zeros((3, 50)), 0.0, "x")
