"""The synthesizer's geometry on real DSGS lexicon signs: straight flat-hand fingers, a chin sign at
the chin, an upward movement ending higher, a mirrored symmetric sign; determinism; the backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.notation.reader import read_hamnosys
from engines.notation.synthesizer import synthesize
from engines.skeleton import L_WRIST, LEFT_HAND_SLICE, NOSE, R_WRIST, RIGHT_HAND_SLICE
from tests.test_notation import ham

LETTERS = Path(__file__).resolve().parent.parent / "engines" / "default" / "letters.npz"
FPS = 25.0


def frames(gloss: str) -> np.ndarray:
    seq = synthesize(read_hamnosys(ham(gloss)), FPS, LETTERS)
    assert seq.fps == FPS and np.all(seq.confidence == 1.0) and np.isfinite(seq.frames).all()
    return seq.frames


def straightness(hand: np.ndarray, chain: list[int]) -> float:
    pts = hand[chain]
    return float(np.linalg.norm(pts[-1] - pts[0]) / np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def test_flat_hand_fingers_are_straight():
    f = frames("KIND")  # hamflathand …: the B recording's fingers
    hand = f[0, RIGHT_HAND_SLICE]
    for chain in ([5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]):
        assert straightness(hand, chain) > 0.97
    fist = frames("ÄTHIOPIEN")[0, RIGHT_HAND_SLICE]  # hamfist: curled fingers, for contrast
    assert straightness(fist, [9, 10, 11, 12]) < 0.6


def test_chin_sign_hand_is_at_the_chin():
    f = frames("ENGLAND")  # finger2 … chin touch twisting
    hand, nose = f[0, RIGHT_HAND_SLICE], f[0, NOSE]
    nearest = hand[np.argmin(np.abs(hand[:, 0]) + np.abs(hand[:, 1] - 0.34))]
    assert abs(nearest[0]) < 0.1  # at the midline
    assert 0.25 < nearest[1] < nose[1] - 0.1  # below the nose, above the neck (0): the chin
    assert nearest[2] > 0.2  # at the face's front, not inside the head


def test_upward_movement_ends_higher():
    f = frames("MONDAUFGANG")  # pinchall extfingerul palmd chest lrat moveu slow
    assert f[-1, R_WRIST, 1] - f[0, R_WRIST, 1] > 0.2
    assert abs(f[-1, R_WRIST, 0] - f[0, R_WRIST, 0]) < 0.05


def test_symmetric_sign_moves_both_hands_mirrored():
    f = frames("HEUTE")  # symmlr … moved smallmod repeatfromstart
    mirror = np.array([-1.0, 1.0, 1.0])
    assert np.allclose(f[:, LEFT_HAND_SLICE], f[:, RIGHT_HAND_SLICE] * mirror, atol=1e-4)
    assert np.allclose(f[:, L_WRIST], f[:, R_WRIST] * mirror, atol=1e-4)
    assert np.ptp(f[:, R_WRIST, 1]) > 0.08  # it moves (down and back, twice)


def test_parallel_symmetry_moves_both_hands_the_same_way():
    f = frames("FÜHRER")  # symmpar … mover: both hands to the signer's right
    assert f[-1, R_WRIST, 0] - f[0, R_WRIST, 0] < -0.2
    assert f[-1, L_WRIST, 0] - f[0, L_WRIST, 0] < -0.2


def test_synthesis_is_deterministic():
    assert np.array_equal(frames("REGEN"), frames("REGEN"))


def test_backend_plans_german_words_with_the_gloss_rules():
    from engines.loader import notation_lexicons
    from engines.notation_backend import NotationBackend

    lexicons, lemmas = notation_lexicons(LETTERS.parent, {})
    backend = NotationBackend(FPS, LETTERS, lexicons, lemmas)
    assert backend.plan("Häuser", "sgg") == ("<sgg> HAUS", "sign")  # lemma
    assert backend.plan("der", "sgg") == ("not signed in sgg: article (German gloss rules, docs/notation.md)", "text")
    assert backend.plan("3", "sgg") == ("<sgg> DREI", "sign")  # digits → number word
    assert isinstance(backend.plan("Xaver", "sgg"), str)  # no sign: refused, with the reason
    compound = backend.plan("Familienhaus", "sgg")
    assert compound == ("<sgg> FAMILIE HAUS", "sign")  # a compound split into known glosses
    backend.begin(1, "Familienhaus", "sgg")
    n = 0
    while True:
        out = backend.step([1])[1]
        n += 1
        if out.done:
            break
    backend.end(1)
    assert n > len(frames("FAMILIE")) + len(frames("HAUS"))  # both signs and the transition


def test_a_deployers_lexicon_from_config_signs_in_front_and_bad_entries_are_logged(tmp_path, caplog):
    import logging
    from types import SimpleNamespace

    from engines.loader import open_scheduler

    mine = tmp_path / "mine.csv"
    mine.write_text("gloss,hamnosys\n"
                    f"XAVER,{ham('KIND')}\n"  # a name sign of our own, written with a real entry's notation
                    f"KAPUTT,\ue001\ue0e1\n", encoding="utf-8")
    cfg = SimpleNamespace(path=str(LETTERS.parent), backend="onnxruntime", notation={"sgg": str(mine)})
    with caplog.at_level(logging.WARNING, logger="engines.loader"):
        scheduler = open_scheduler(cfg, FPS)
    assert any("KAPUTT" in r.getMessage() and "notation_syntax" in r.getMessage() for r in caplog.records)
    segs = scheduler.plan("Xaver im Haus", "sgg")
    assert [(s.path, s.kind, s.gloss) for s in segs] == [("notation", "sign", "<sgg> XAVER"),
                                                         ("notation", "sign", "<sgg> IM"),
                                                         ("notation", "sign", "<sgg> HAUS")]


def test_german_gloss_rules():
    from engines.german_glosses import dropped, glosses

    known = {"haus", "familie", "drei", "regen"}.__contains__
    lemmas = {"Häuser": "haus", "Familien": "familie"}
    assert glosses("das", known, lemmas) == [] and dropped("das") == "article"
    assert glosses("ist", known, lemmas) == [] and dropped("ist") == "copula"
    assert glosses("Häuser", known, lemmas) == ["haus"]
    assert glosses("3", known, lemmas) == ["drei"]
    assert glosses("Regenhaus", known, lemmas) == ["regen", "haus"]
    assert glosses("Familienhäuser", known, lemmas) == ["familie", "haus"]  # linking -n-, lemma of the tail
    assert glosses("Xaver", known, lemmas) is None


def test_hands_that_touch_each_other_meet_at_the_midline():
    f = frames("HAUS")  # symmlr flathand … touch shoulders: the roof's fingertips touch
    right, left = f[1, RIGHT_HAND_SLICE], f[1, LEFT_HAND_SLICE]
    gap = np.min(np.linalg.norm(right[:, None] - left[None], axis=-1))
    assert gap < 0.03
    assert abs(right[np.argmax(right[:, 0]), 0]) < 0.03  # the right hand reaches the midline, not past it


def test_a_point_between_two_hand_parts_is_placed_at_the_site_and_the_other_hand_rests():
    f = frames("VATER")  # the point between thumb side and index finger side, close to the chin
    hand = f[0, RIGHT_HAND_SLICE]
    between = (0.5 * (hand[5] + hand[2]) + hand[7]) / 2  # thumb side (knuckles 2, 5), index side (7)
    assert abs(between[0]) < 0.1 and 0.25 < between[1] < 0.45  # at the chin (y 0.34), at the midline
    assert 0.3 < between[2] < 0.45  # close in front of the face (z 0.29 + 0.07), not inside it
    assert np.all(f[:, L_WRIST, 1] < -1.0)  # one-handed: the left hand stays at rest
