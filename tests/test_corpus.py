"""The bundled corpus, built for real from the lexicon recordings and word lists."""

import json
import subprocess
import sys

import numpy as np
import pytest

from engines.formats.prompt2sign import read_split
from training.corpus import SPLITS


def test_small_corpus_has_disjoint_splits_and_prompt2sign_files(small_corpus):
    manifest = json.loads((small_corpus / "manifest.json").read_text())
    assert set(manifest["languages"]) == {"ase", "fsl", "gsg"}
    assert manifest["provenance"]["poses"]["licence"] and manifest["provenance"]["words"]["licence"]
    for lang in ("ase", "fsl", "gsg"):
        words = {}
        for split in SPLITS:
            lines = (small_corpus / lang / f"{split}.skels").read_text().splitlines()
            for line in lines:
                values = np.array(line.split(), dtype=float)
                assert len(values) % 151 == 0
                assert values.reshape(-1, 151)[-1, -1] == 1.0
            words[split] = set((small_corpus / lang / f"{split}.text").read_text().splitlines())
            assert len(words[split]) == len(lines) == manifest["languages"][lang]["counts"][split]
        assert not (words["train"] & words["dev"]) and not (words["train"] & words["test"]) and not (words["dev"] & words["test"])
        assert sum(len(w) for w in words.values()) == 50
        assert len(words["train"]) > len(words["test"])
    # fsl spells with the ase recordings: a word in both sits in the same split in both.
    split_of = {lang: {w: s for s in SPLITS for w in (small_corpus / lang / f"{s}.text").read_text().splitlines()}
                for lang in ("ase", "fsl")}
    shared = set(split_of["ase"]) & set(split_of["fsl"])
    assert all(split_of["ase"][w] == split_of["fsl"][w] for w in shared)


def test_corpus_records_read_back_with_glosses(small_corpus):
    recs = read_split(small_corpus / "gsg", "train")
    assert recs and all(r.gloss.startswith("<gsg> FS:") for r in recs)
    r = recs[0]
    assert r.name == f"gsg/{r.text}" and len(r.gloss.split(":")[1].split("-")) <= len(r.text)
    assert len(r.sequence) > 10 and r.sequence.fps == 25.0


def test_build_is_deterministic_for_a_seed(small_corpus, tmp_path):
    from training.corpus import build_corpus

    build_corpus(tmp_path, ["gsg"], words_per_lang=50, seed=7, workers=1)
    assert (tmp_path / "gsg" / "test.text").read_text() == (small_corpus / "gsg" / "test.text").read_text()
    assert (tmp_path / "gsg" / "test.skels").read_text() == (small_corpus / "gsg" / "test.skels").read_text()


def test_cli_builds_and_previews(tmp_path):
    cli = [sys.executable, "-m", "server.cli"]
    run = subprocess.run(cli + ["data", "build", "--out", str(tmp_path / "c"), "--langs", "ukl", "--words-per-lang", "5"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "c" / "ukl" / "train.skels").exists()
    bad = subprocess.run(cli + ["data", "build", "--out", str(tmp_path / "d"), "--langs", "xxx"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown sign language(s) xxx" in bad.stderr
    skels = next(p for p in (tmp_path / "c" / "ukl").glob("*.skels") if p.read_text())
    gif = tmp_path / "p.gif"
    run = subprocess.run(cli + ["data", "preview", str(skels), "-o", str(gif)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    import av

    with av.open(str(gif)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) > 10 and frames[0].shape == (512, 512, 3)
    assert (frames[0] < 200).any()  # the skeleton is drawn
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])  # and it moves
    bad = subprocess.run(cli + ["data", "preview", str(skels), "-o", str(tmp_path / "p.avi")], capture_output=True, text=True)
    assert bad.returncode == 2 and "bad_argument" in bad.stderr


def test_the_manifest_counts_recording_repairs_and_names_the_depth(small_corpus):
    from engines.formats.posefile import LEXICON_DEPTH

    manifest = json.loads((small_corpus / "manifest.json").read_text())
    assert manifest["mediapipe_depth"]["body_scale"] == LEXICON_DEPTH.body_scale
    for lang in ("ase", "fsl", "gsg"):
        repairs = manifest["languages"][lang]["recording_repairs"]
        assert set(repairs) == {"hands_rescaled", "beyond_reach", "bone_outliers", "interpolated", "recordings"}
        assert repairs["recordings"] > 20
        assert manifest["languages"][lang]["letters_left_out"] == {}


def test_repair_brings_a_failed_gss_track_back_within_reach(lexicon_dir):
    from engines.formats.posefile import read_pose
    from engines.recording_repair import repair_recording

    # A Greek letter whose hand track fails: points up to 4.7 shoulder widths from the neck.
    raw = read_pose(lexicon_dir / "gss" / "fs-stsc004c81c6a4651fc5cc69151f3c30576.pose")
    seen = raw.confidence > 0
    assert np.linalg.norm(raw.frames, axis=-1)[seen].max() > 3
    fixed, repairs = repair_recording(raw)
    assert np.linalg.norm(fixed.frames, axis=-1)[fixed.confidence > 0].max() < 2.5
    assert repairs.beyond_reach + repairs.hands_rescaled > 0 and fixed.repaired == raw.repaired + repairs.total


def test_repair_fills_short_gaps_only(lexicon_dir):
    from engines.formats.posefile import read_pose
    from engines.recording_repair import repair_recording
    from engines.sequence import PoseSequence
    from engines.skeleton import RIGHT_HAND_SLICE

    clean = None
    for path in sorted((lexicon_dir / "ase").glob("*.pose")):  # an ase letter whose right hand is seen throughout
        seq = read_pose(path)
        if len(seq) >= 20 and (seq.confidence[:, RIGHT_HAND_SLICE] > 0).all():
            clean = seq
            break
    assert clean is not None
    base, _ = repair_recording(clean)
    frames, conf = base.frames.copy(), base.confidence.copy()
    conf[5:7, RIGHT_HAND_SLICE] = 0  # 2 frames: short, filled
    conf[10:19, RIGHT_HAND_SLICE] = 0  # 9 frames (> 0.2 s): stays missing
    fixed, repairs = repair_recording(PoseSequence(frames, conf, base.fps))
    assert (fixed.confidence[5:7, RIGHT_HAND_SLICE] > 0).all() and (fixed.confidence[10:19, RIGHT_HAND_SLICE] == 0).all()
    assert repairs.interpolated == 2 * 21
    # Linear between the frames either side.
    np.testing.assert_allclose(fixed.frames[5, RIGHT_HAND_SLICE],
                               base.frames[4, RIGHT_HAND_SLICE] + (base.frames[7, RIGHT_HAND_SLICE] - base.frames[4, RIGHT_HAND_SLICE]) / 3,
                               atol=1e-5)


def test_a_letter_recording_that_is_not_a_letter_is_left_out(alphabets, lexicon_dir, tmp_path):
    from engines.errors import PoseFormatError
    from engines.formats.posefile import pose_seconds, read_pose
    from engines.lexicon import CannotSpell, load_alphabets, pack_alphabets

    # Measured on the bundled lexicon: only gss ο (10.8 s) and φ (4.2 s) are over 4x their alphabet's
    # median letter; every other letter of the 20 alphabets is within 1.5x.
    assert {lang: sorted(a.left_out) for lang, a in alphabets.items() if a.left_out} == {"gss": ["ο", "φ"]}
    gss = alphabets["gss"]
    assert "ο" not in gss.letters and "α" in gss.letters
    with pytest.raises(CannotSpell, match="not a letter: 10.8 s"):
        gss.spell("το")
    assert len(gss.spell("και")) == 3
    # The duration comes from the header and frame count alone: the same as reading every frame.
    alpha = read_pose(gss.letters["α"].path)
    assert pose_seconds(gss.letters["α"].path) == pytest.approx(len(alpha) / alpha.fps)
    not_pose = tmp_path / "letter.pose"
    not_pose.write_bytes(b"not a pose file")
    with pytest.raises(PoseFormatError) as info:
        pose_seconds(not_pose)
    assert info.value.code == "bad_pose_file" and "letter.pose" in str(info.value)
    # Packed letters (an engine's letters.npz) keep what was left out, and why.
    packed = load_alphabets(pack_alphabets({"gss": gss}, tmp_path / "letters.npz"))
    assert packed["gss"].left_out == gss.left_out and "ο" not in packed["gss"].letters


def test_respell_rebuilds_a_corpus_from_its_word_lists_and_packed_letters(small_corpus, alphabets, tmp_path):
    """What a GPU box without the recordings or wordfreq does: word lists (1 MB) + letters.npz → the corpus."""
    import shutil

    from engines.lexicon import pack_alphabets

    words = tmp_path / "words"
    for lang in ("ase", "fsl", "gsg"):
        (words / lang).mkdir(parents=True)
        for split in SPLITS:
            shutil.copy(small_corpus / lang / f"{split}.text", words / lang)
    shutil.copy(small_corpus / "manifest.json", words)
    letters = pack_alphabets({k: alphabets[k] for k in ("ase", "fsl", "gsg")}, tmp_path / "letters.npz")
    cli = [sys.executable, "-m", "server.cli", "data", "respell"]
    run = subprocess.run(cli + [str(words), "--letters", str(letters), "--out", str(tmp_path / "again"), "--splits", "train,dev"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for lang in ("ase", "gsg"):
        a, b = read_split(small_corpus / lang, "dev"), read_split(tmp_path / "again" / lang, "dev")
        assert [r.gloss for r in a] == [r.gloss for r in b] and a
        for x, y in zip(a, b):
            assert len(x.sequence) == len(y.sequence)
            assert np.allclose(x.sequence.frames, y.sequence.frames, atol=1e-3)  # float16 storage of the letters
    assert not (tmp_path / "again" / "ase" / "test.skels").exists()
    # A word the letters cannot spell stops it with its code, also from a worker process.
    from engines.lexicon import CannotSpell
    from training.corpus import respell_corpus

    (words / "gsg" / "dev.text").write_text("niño\n")
    with pytest.raises(CannotSpell, match="no letter for 'ñ' in 'niño'") as info:
        respell_corpus(words, letters, tmp_path / "pooled", ("dev",), workers=2)
    assert info.value.code == "cannot_fingerspell" and info.value.missing == "ñ"
    (words / "gsg" / "dev.text").write_text((small_corpus / "gsg" / "dev.text").read_text())
    # As many gloss lines as words, or a clear error.
    (words / "ase" / "dev.gloss").write_text("<ase> FS:T-H-E\n")
    with pytest.raises(ValueError, match="1 lines for the .* words of dev.text"):
        respell_corpus(words, letters, tmp_path / "short", ("dev",), workers=1)
    (words / "ase" / "dev.gloss").unlink()
    # A word list that another alphabet spelled is refused, not silently re-spelled.
    n = len((words / "ase" / "train.text").read_text().splitlines())
    (words / "ase" / "train.gloss").write_text("<ase> FS:X-Y\n" * n)
    bad = subprocess.run(cli + [str(words), "--letters", str(letters), "--out", str(tmp_path / "bad")], capture_output=True, text=True)
    assert bad.returncode == 2 and "another alphabet" in bad.stderr
    fewer = pack_alphabets({"ase": alphabets["ase"]}, tmp_path / "ase.npz")
    bad = subprocess.run(cli + [str(words), "--letters", str(fewer), "--out", str(tmp_path / "bad")], capture_output=True, text=True)
    assert bad.returncode == 2 and "has no alphabet for fsl, gsg" in bad.stderr
