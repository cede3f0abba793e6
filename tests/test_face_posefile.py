"""The non-manual track in `.pose` files: `signstream say --out` writes it (a SIGNSTREAM_NON_MANUAL
component beside SIGNSTREAM_50), pose-format itself reads the file, `read_pose_and_face` gives it
back, and `signstream render` drives the avatar's face from it (real server, real files, pyrender)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pose_format import Pose
from test_server_live import live_server, run
from typer.testing import CliRunner

from engines.formats.posefile import COMPONENT, NON_MANUAL, read_pose, read_pose_and_face, write_pose
from engines.nonmanual import CHANNELS, INDEX
from engines.sequence import PoseSequence
from server.cli import app
from server.client_cli import lines_of, say


@pytest.fixture(scope="module")
def said(tmp_path_factory):
    """`say` a question then a statement against a real server, saved to a .pose file."""
    out = tmp_path_factory.mktemp("say") / "question.pose"

    async def main():
        async with live_server() as (url, _):
            return await say(url, lines_of("Kommst du morgen?", "Ich komme morgen."), "gsg", out, None)
    return run(main()), out


def test_say_writes_the_track_and_a_question_raises_the_brows_in_the_file(said):
    seen, out = said
    pose = Pose.read(out.read_bytes())  # pose-format's own reader loads it, both components
    assert [c.name for c in pose.header.components] == [COMPONENT, NON_MANUAL]
    assert pose.header.components[1].points == list(CHANNELS)
    assert pose.get_components([COMPONENT]).body.data.shape[2] == 50
    seq, face = read_pose_and_face(out)
    assert len(read_pose(out)) == len(seq) == len(seen.frames) and face.shape == (len(seq), len(CHANNELS))
    assert np.array_equal(face, np.stack([f.face for f in seen.frames]).astype(np.float32))  # as sent
    question, statement = sorted(seen.units)
    units = np.array([f.unit for f in seen.frames])
    segments = np.array([f.segment for f in seen.frames])
    brows = face[:, INDEX["brow_raise"]]
    assert (units == question).sum() > 20 and (brows[units == question] == 1.0).mean() > 0.5
    last = (units == statement) & (segments == segments[units == statement].max())  # past the ease out
    assert last.any() and (brows[last] == 0.0).all() and (face[units == statement, INDEX["brow_furrow"]] == 0).all()


def test_a_file_without_the_track_reads_as_none_and_frames_without_it_as_zero(tmp_path):
    rng = np.random.default_rng(1)
    seq = PoseSequence(rng.uniform(-1, 1, (4, 50, 3)), np.ones((4, 50)), 25.0)
    write_pose(seq, tmp_path / "plain.pose")
    assert read_pose_and_face(tmp_path / "plain.pose")[1] is None
    face = rng.uniform(0, 1, (4, len(CHANNELS))).astype(np.float32)
    face[2] = np.nan  # a frame the server sent without a track
    write_pose(seq, tmp_path / "face.pose", face)
    back, got = read_pose_and_face(tmp_path / "face.pose")
    assert np.allclose(back.frames, read_pose(tmp_path / "plain.pose").frames)
    assert np.array_equal(got[[0, 1, 3]], face[[0, 1, 3]]) and (got[2] == 0).all()


def test_render_drives_the_face_from_the_file(said, tmp_path):
    """The same clip rendered with and without its track: the question's frame differs only on
    the head (raised brows), not on the body or hands."""
    seen, out = said
    seq, face = read_pose_and_face(out)
    units = np.array([f.unit for f in seen.frames])
    index = int(np.flatnonzero(units == min(seen.units))[len(np.flatnonzero(units == min(seen.units))) // 2])
    assert face[index, INDEX["brow_raise"]] == 1.0 and face[index, INDEX["breath"]] == 0 == face[index, INDEX["sway"]]
    plain = tmp_path / "plain.pose"
    write_pose(seq, plain)
    config = tmp_path / "video.toml"
    config.write_text("[video]\nwidth = 256\nheight = 256\nfps = 25\n")
    images = []
    for clip in (out, plain):
        png = tmp_path / f"{clip.stem}.png"
        result = CliRunner().invoke(app, ["render", str(clip), "-o", str(png), "--frame", str(index),
                                          "--config", str(config)])
        assert result.exit_code == 0, result.output
        from PIL import Image
        images.append(np.asarray(Image.open(png).convert("RGB")).astype(np.int16))
    changed = np.abs(images[0] - images[1]).sum(axis=2) > 24
    ys, _ = np.nonzero(changed)
    assert changed.sum() > 10, "the track did not change the picture"
    assert ys.max() < 256 * 0.35, f"pixels changed below the head (down to row {ys.max()})"
