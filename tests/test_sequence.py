import numpy as np
import pytest

from engines import skeleton as sk
from engines.lexicon import fingerspell, letter_clip
from engines.sequence import PoseSequence, concatenate


def _ramp(t: int, fps: float) -> PoseSequence:
    frames = np.zeros((t, 50, 3), np.float32)
    frames[:, :, 0] = np.linspace(0, 1, t)[:, None]
    return PoseSequence(frames, np.ones((t, 50)), fps)


def test_resample_keeps_duration_and_interpolates():
    seq = _ramp(30, 30.0)
    out = seq.resample(25.0)
    assert len(out) == 25 and out.fps == 25.0
    assert out.frames[0, 0, 0] == 0
    # Frame k of the output sits at k * 30/25 input frames, i.e. x = k * 1.2 / 29.
    assert np.allclose(out.frames[:, 0, 0], np.arange(25) * 1.2 / 29, atol=1e-6)


def test_resample_does_not_interpolate_towards_missing_points():
    seq = _ramp(10, 10.0)
    seq.confidence[5:, 3] = 0
    seq = PoseSequence(seq.frames, seq.confidence, 10.0)
    out = seq.resample(20.0)
    seen = out.confidence[:, 3] > 0
    assert (out.frames[seen, 3, 0] <= seq.frames[4, 3, 0] + 1e-6).all()  # never pulled towards zero elsewhere
    assert not seen[-1]


def test_trim_drops_frames_without_hands():
    seq = _ramp(10, 25.0)
    seq.confidence[:3, sk.LEFT_HAND_SLICE] = 0
    seq.confidence[:3, sk.RIGHT_HAND_SLICE] = 0
    seq.confidence[8:, sk.LEFT_HAND_SLICE] = 0
    seq.confidence[8:, sk.RIGHT_HAND_SLICE] = 0
    assert len(PoseSequence(seq.frames, seq.confidence, 25.0).trim()) == 5


def test_concatenate_inserts_smooth_transitions():
    a, b = _ramp(10, 25.0), _ramp(10, 25.0)
    b.frames[:, :, 0] += 5.0  # a jump of 4 units between the clips
    out = concatenate([a, b], 25.0, transition=0.2)
    assert len(out) == 10 + 5 + 10
    steps = np.abs(np.diff(out.frames[:, 0, 0]))
    assert steps.max() < 4.0 / 5 * 1.6  # spread over the transition, no jump
    with pytest.raises(ValueError, match="every part is empty"):
        concatenate([a.slice(0, 0)], 25.0)


def test_fingerspelled_word_from_real_recordings(alphabets):
    entries = alphabets["ssp"].spell("Llama")
    assert [e.name for e in entries] == ["LL", "A", "M", "A"]  # digraph first
    seq = fingerspell(entries, 25.0)
    clips = [letter_clip(e.path, 25.0) for e in entries]
    assert len(seq) == sum(len(c) for c in clips) + 3 * 3
    assert seq.fps == 25.0 and (seq.confidence[:, sk.RIGHT_HAND] > 0).mean() > 0.8
    # Joins are smooth: no frame-to-frame jump of the right wrist bigger than within the clips.
    wrist = seq.frames[:, sk.RIGHT_HAND]
    inside = max(np.linalg.norm(np.diff(c.frames[:, sk.RIGHT_HAND], axis=0), axis=1).max() for c in clips)
    assert np.linalg.norm(np.diff(wrist, axis=0), axis=1).max() <= inside * 1.5 + 0.05
