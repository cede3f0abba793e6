"""The non-manual track: rules from the text, life at rest, its place in the timeline and the
wire formats, and the real avatar's face and head in rendered pixels (pyrender, no mocks)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from engines import nonmanual
from engines.nonmanual import CHANNELS, INDEX, Life, plan, visemes, word_values
from server.motion import Timeline, rest_pose
from server.protocol import (SERVER_SCHEMAS, PoseFrame, RotationFrame, decode_binary_pose,
                             decode_binary_rotations, encode, schema_errors)


def _words(text: str) -> list[str]:
    return [w.strip("?.!,") for w in text.split()]


def _cues(text: str, spoken: str):
    return plan(text, spoken, _words(text))


# --- rules --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, spoken", [("Are you coming tomorrow?", "en"), ("Kommst du morgen?", "de")])
def test_yes_no_question_raises_the_brows_over_the_sentence(text, spoken):
    cues = _cues(text, spoken)
    assert all(c.brow_raise == 1.0 and c.brow_furrow == 0.0 for c in cues)


@pytest.mark.parametrize("text, spoken", [("Where do you live?", "en"), ("Wo wohnst du?", "de"),
                                          ("Warum kommt er nicht?", "de")])
def test_wh_question_furrows_the_brows(text, spoken):
    cues = _cues(text, spoken)
    assert all(c.brow_furrow == 1.0 and c.brow_raise == 0.0 for c in cues)


def test_a_statement_moves_no_brows_and_only_its_question_sentence_does():
    assert all(c.brow_raise == 0 and c.brow_furrow == 0 for c in _cues("I live in Bern.", "en"))
    cues = _cues("I live in Bern. Do you?", "en")
    assert [c.brow_raise for c in cues] == [0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize("text, spoken, shaken", [
    ("I do not like rain.", "en", [False, False, True, True, False]),
    ("Ich komme nicht heute.", "de", [False, False, True, True]),
    ("Er hat kein Auto.", "de", [False, False, True, True]),
    ("I never lie", "en", [False, True, True]),
    ("It rains. Nie.", "en", [False, False, True]),  # the shake stays in its sentence
])
def test_negation_shakes_the_head_across_the_negated_sign(text, spoken, shaken):
    assert [c.shake for c in _cues(text, spoken)] == shaken


def test_the_head_shake_swings_both_ways_and_a_plain_word_not_at_all():
    cue = nonmanual.WordCues(shake=True)
    shake = [word_values(cue, k, 20, 25.0, k)[INDEX["head_shake"]] for k in range(20)]
    assert max(shake) > 0.9 and min(shake) < -0.9
    assert not word_values(nonmanual.WordCues(), 5, 20, 25.0, 5).any()


def test_visemes_follow_the_german_graphemes():
    assert visemes("Haus") == [nonmanual._CONSONANT, dict(nonmanual.VISEMES)["au"], nonmanual._CONSONANT]
    assert visemes("Mama")[0] == (0.0, 0.0, 0.0)  # lips closed for m
    assert visemes("Schule")[0] == dict(nonmanual.VISEMES)["sch"]


def test_mouthing_is_timed_across_the_sign():
    cue = plan("Bub", "de", ["Bub"], [True])[0]  # closed, round u, closed
    n = 30
    mouth = np.array([word_values(cue, k, n, 25.0, k)[[INDEX["mouth_open"], INDEX["mouth_round"]]] for k in range(n)])
    assert mouth[0].tolist() == [0.0, 0.0] and mouth[-1].tolist() == [0.0, 0.0]
    assert mouth[n // 2, 1] == pytest.approx(1.0, abs=0.02)  # the u in the middle of the sign
    assert plan("Bub", "de", ["Bub"], [False])[0].mouthing == []  # only mouthed signs


# --- life -----------------------------------------------------------------------------------------

def test_blinks_come_every_three_to_five_seconds_the_same_each_run():
    def onsets(seed: int) -> list[int]:
        life = Life(25.0, seed)
        blink = [life.values(i, False)[INDEX["blink"]] for i in range(25 * 60)]
        return [i for i in range(1, len(blink)) if blink[i] > 0 and blink[i - 1] == 0]
    a = onsets(3)
    assert a == onsets(3) and a != onsets(4)
    gaps = np.diff(a) / 25.0
    assert len(a) >= 11 and gaps.min() >= 3.0 - 0.05 and gaps.max() <= 5.0 + 0.05


def test_breath_and_sway_fade_out_while_signing():
    life = Life(25.0)
    rest = [life.values(i, False) for i in range(100)]
    signing = [life.values(i, True) for i in range(100, 200)]
    assert max(abs(v[INDEX["breath"]]) for v in rest) > 0.5
    assert all(v[INDEX["breath"]] == 0 and v[INDEX["sway"]] == 0 for v in signing[15:])


# --- the timeline ---------------------------------------------------------------------------------

def _play(text: str, language: str = "ase", frames_per_word: int = 12) -> list[PoseFrame]:
    """Frames of one unit of `text` through the timeline, as a session plays them."""
    tl = Timeline(25.0, 0.2, 0.3, 0.2)
    words = _words(text)
    segments = [SimpleNamespace(word=w, path="notation", frames=frames_per_word) for w in words]
    tl.cue_unit(1, text, language, segments)
    points, conf = rest_pose()
    pushed = []
    for s in range(len(words)):
        for k in range(frames_per_word):
            p = points + np.float32(0.01 * k)
            pushed.append(p)
            tl.push(PoseFrame(1, s, 0, 0.0, "sign", p, conf))
    out = []
    while tl.queued:
        out.append(tl.next()[0])
    signed = [f for f in out if f.segment >= 0]
    # The track never moves the hands: every signed frame is the engine's own.
    assert len(signed) == len(pushed) and all(np.array_equal(f.points, p) for f, p in zip(signed, pushed))
    return out


def test_timeline_frames_carry_the_track():
    question = [f for f in _play("Are you coming?") if f.segment >= 0]
    statement = [f for f in _play("You are coming.") if f.segment >= 0]
    assert all(f.face is not None and f.face.shape == (len(CHANNELS),) for f in question)
    assert all(f.face[INDEX["brow_raise"]] == 1.0 for f in question)
    assert all(f.face[INDEX["brow_raise"]] == 0.0 for f in statement)
    negated = [f for f in _play("I do not like rain.") if f.segment in (2, 3)]
    assert max(abs(f.face[INDEX["head_shake"]]) for f in negated) > 0.9
    mouthed = [f for f in _play("Haus", "sgg") if f.segment == 0]
    assert max(f.face[INDEX["mouth_open"]] for f in mouthed) > 0.6  # the "au"
    assert all(f.face[INDEX["mouth_open"]] == 0 for f in _play("Haus", "gsg") if f.segment == 0)  # DSGS only


# --- the wire ------------------------------------------------------------------------------------

def test_the_track_travels_in_json_and_binary_and_old_frames_still_decode():
    rng = np.random.default_rng(1)
    face = nonmanual.combine(rng.uniform(-1, 1, len(CHANNELS)).astype(np.float32), np.zeros(len(CHANNELS), np.float32))
    frame = PoseFrame(3, 1, 40, 1.6, "sign", rng.normal(size=(50, 3)).astype(np.float32),
                      rng.uniform(size=50).astype(np.float32), face)
    data = encode(frame, "binary")
    assert len(data) == 28 + 50 * 4 * 2 + (1 + len(CHANNELS)) * 2
    back = decode_binary_pose(data)
    assert back.face is not None and np.allclose(back.face, face, atol=1e-3)
    as_json = json.loads(encode(frame, "json"))
    assert schema_errors(SERVER_SCHEMAS["pose"], as_json) == [] and np.allclose(as_json["face"], face, atol=1e-3)
    frame.face = None
    assert decode_binary_pose(encode(frame, "binary")).face is None and "face" not in json.loads(encode(frame, "json"))
    rot = RotationFrame(3, 1, 40, 1.6, "sign", np.tile([0, 0, 0, 1.0], (38, 1)).astype(np.float32),
                        np.zeros(3, np.float32), face)
    assert np.allclose(decode_binary_rotations(rot.wire("binary")).face, face, atol=1e-3)
    assert schema_errors(SERVER_SCHEMAS["rotations"], json.loads(rot.wire("json"))) == []


# --- the real avatar, rendered -------------------------------------------------------------------

@pytest.fixture(scope="module")
def stage():
    from tools.avatar_build import ASSET
    from server.avatar.face import FaceRig
    from server.avatar.gltf import load_avatar
    from server.avatar.render import AvatarRenderer
    from server.avatar.retarget import Retargeter, RetargetSettings

    avatar = load_avatar(ASSET)
    face = FaceRig.of_avatar(avatar)
    with AvatarRenderer(avatar, 512, 512, (0.20, 0.60, 0.30, 1.0)) as renderer:
        yield SimpleNamespace(avatar=avatar, face=face, renderer=renderer,
                              settings=RetargetSettings(smoothing=False), Retargeter=Retargeter)


def _draw(stage, frame: PoseFrame) -> np.ndarray:
    """What the video path draws for a frame: retarget, the track on the rig, render."""
    local = stage.Retargeter(stage.avatar.rig, 25.0, stage.settings).solve(frame.points.astype(np.float64), frame.confidence)
    return stage.renderer.render(stage.face.world(local, frame.face)).astype(np.int16)


def _region(stage, joints: list[str], half: int) -> tuple[slice, slice]:
    """A square around the projection of the (bind) joints' mean, in pixels."""
    rig = stage.avatar.rig
    centre = np.mean([rig.bind[stage.face.bones[j], :3, 3] for j in joints], axis=0)
    x, y = np.round(stage.renderer.camera.project(centre)).astype(int)
    return slice(y - half, y + half), slice(x - half, x + half)


def test_a_yes_no_question_raises_the_brows_in_rendered_pixels(stage):
    def middle(text: str) -> PoseFrame:
        frames = [f for f in _play(text) if f.segment >= 0]
        return frames[len(frames) // 2]
    question, statement, other = middle("Are you coming?"), middle("You are coming."), middle("She is coming.")
    brows = _region(stage, ["browLeft", "browRight"], 24)
    q, s, o = (_draw(stage, f)[brows] for f in (question, statement, other))
    changed = np.abs(q - s).max(axis=-1) > 40
    assert changed.sum() > 30, changed.sum()  # the brows moved
    assert np.abs(s - o).max() <= 2  # two statements: the same brows (no blink in either frame)
    # Up, not elsewhere: where the question's brows are dark and the statement's are not lies above
    # where the statement's brows are and the question's are not.
    dark_q, dark_s = q.sum(axis=-1) < 200, s.sum(axis=-1) < 200
    came, left = np.nonzero(dark_q & ~dark_s)[0], np.nonzero(dark_s & ~dark_q)[0]
    assert len(came) > 10 and len(left) > 10
    assert came.mean() < left.mean() - 2.0


def test_a_negation_turns_the_head_in_rendered_pixels(stage):
    negated = [f for f in _play("I do not like rain.") if f.segment in (2, 3)]
    plain = [f for f in _play("I do like rain.") if f.segment in (2, 3)]
    turned = max(negated, key=lambda f: f.face[INDEX["head_shake"]])
    assert turned.face[INDEX["head_shake"]] > 0.9
    # The eyes (their dark irises) move towards the signer's left, the viewer's right: +x in the picture.
    eyes = _region(stage, ["browLeft", "browRight"], 30)
    eyes = slice(eyes[0].start + 20, eyes[0].stop + 10), eyes[1]  # below the brows, above the nose
    a, b = _draw(stage, turned)[eyes], _draw(stage, plain[negated.index(turned)])[eyes]
    assert np.abs(a - b).max(axis=-1).__gt__(40).sum() > 50

    def iris_x(img: np.ndarray) -> float:
        _, cols = np.nonzero(img.sum(axis=-1) < 120)
        assert len(cols) > 10
        return float(cols.mean())
    assert iris_x(a) > iris_x(b) + 3.0


def test_a_blink_closes_the_eyelids_in_rendered_pixels(stage):
    """The bundled avatar's upper lids: hidden while the eyes are open (the open face is the face
    without lids), over the eyes in a blink, over their upper half in a squint; nothing else moves."""
    from server.avatar.retarget import Retargeter

    local = Retargeter(stage.avatar.rig).rest

    def draw(**values: float) -> np.ndarray:
        face = np.zeros(len(CHANNELS), np.float32)
        for k, x in values.items():
            face[INDEX[k]] = x
        return stage.renderer.render(stage.face.world(local, face)).astype(np.int16)
    open_, blink, squint = draw(), draw(blink=1.0), draw(squint=1.0)
    assert np.array_equal(open_, stage.renderer.render(stage.face.world(local, None)))  # no lid shows when open
    eyes = [_region(stage, [lid], 16) for lid in ("eyelidLeft", "eyelidRight")]
    eyes = [(slice(r.start + 6, r.stop - 6), c) for r, c in eyes]  # 20 rows: below the brows
    changed = np.abs(blink - open_).max(axis=-1) > 40
    inside = sum(int(changed[e].sum()) for e in eyes)
    assert inside > 100, inside  # the lids came down
    assert changed.sum() == inside  # and nothing outside the eyes changed
    for e in eyes:
        iris = lambda img: int((img[e].sum(axis=-1) < 120).sum())  # noqa: E731  dark iris pixels
        assert iris(open_) > 20 and iris(blink) == 0 and 0 < iris(squint) < iris(open_), (iris(open_), iris(blink), iris(squint))


def test_mouthing_follows_the_engines_counter_not_a_guess():
    """Pushed with the engine's progress counter, a 17-frame sign mouths its last grapheme at its
    end (the timeline does not know a sign's length in advance)."""
    tl = Timeline(25.0, 0.0, 0.0, 0.2)
    tl.cue_unit(1, "Bub", "sgg", [SimpleNamespace(word="Bub", path="notation", frames=0)])
    points, conf = rest_pose()
    for k in range(17):
        tl.push(PoseFrame(1, 0, 0, 0.0, "sign", points, conf, counter=(k + 1) / 17))
    faces = []
    while tl.queued:
        f = tl.next()[0]
        if f.segment == 0:
            faces.append(f.face[INDEX["mouth_round"]])
    assert len(faces) == 17 and faces[0] == 0 and faces[-1] == 0 and max(faces[6:11]) > 0.95


def test_a_live_session_sends_the_track_with_its_frames():
    """Over a real /ws socket (binary frames): a DSGS yes/no question raises the brows and mouths
    the word; the rest pose after it breathes."""
    import aiohttp
    from test_server_live import live_server, run

    from server.client_cli import LiveClient

    async def main() -> list:
        async with live_server() as (url, _), aiohttp.ClientSession() as http:
            client = await LiveClient.connect(http, url, language="sgg", fmt="binary")
            await client.caption("c1", "Haus?", final=True)
            got: list = []
            while not (got and isinstance(got[-1], dict) and got[-1]["type"] == "unit_status"):
                got.append(await client.recv(timeout=20))
            while sum(isinstance(m, PoseFrame) and m.unit == 0 for m in got) < 40:  # then at rest again
                got.append(await client.recv(timeout=20))
            await client.close()
            return got
    got = run(main())
    unit = next(m for m in got if isinstance(m, dict) and m["type"] == "unit")
    assert unit["segments"][0]["path"] == "notation"
    frames = [m for m in got if isinstance(m, PoseFrame)]
    assert all(f.face is not None and len(f.face) == len(CHANNELS) for f in frames)
    signed = [f for f in frames if f.unit == unit["unit"] and f.segment == 0]
    assert signed and all(f.face[INDEX["brow_raise"]] == 1.0 for f in signed)
    assert max(f.face[INDEX["mouth_open"]] for f in signed) > 0.6  # "au"
    rest = [f for f in frames if f.unit == 0]
    assert rest and max(abs(f.face[INDEX["breath"]]) for f in rest) > 0.01


def test_avatar_check_says_which_channels_an_avatar_shows(tmp_path):
    """The bundled avatar shows every channel (brows, eyelids, mouth, head, life); a file's VRM
    expressions are listed."""
    import pygltflib
    from typer.testing import CliRunner

    from tools.avatar_build import ASSET
    from server.cli import app

    out = CliRunner().invoke(app, ["avatar", "check", str(ASSET), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    shown = report["non_manual"]
    assert all(shown[c] for c in CHANNELS), shown
    assert report["vrm_expressions"] == []
    gltf = pygltflib.GLTF2.load(str(ASSET))
    gltf.extensions = {"VRMC_vrm": {"expressions": {"preset": {"blink": {}, "aa": {}}, "custom": {"smirk": {}}}}}
    vrm = tmp_path / "with-expressions.glb"
    gltf.save(str(vrm))
    out = CliRunner().invoke(app, ["avatar", "check", str(vrm)])
    assert out.exit_code == 0, out.output
    assert f"non-manual channels shown by bones: {', '.join(CHANNELS)}" in out.output
    assert "cannot show" not in out.output
    assert "VRM expressions in the file: blink, aa, smirk" in out.output  # bones show them already
