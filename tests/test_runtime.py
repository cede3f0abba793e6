"""The SignLLM backend in the scheduler: batching, joins/leaves, cancellation, routing, runtimes."""

import importlib.util

import numpy as np
import pytest

from engines.engine import Scheduler
from engines.lexicon_backend import LexiconBackend
from engines.manifest import RuntimeUnavailable
from engines.signllm_backend import SignLLMBackend, open_runtime


@pytest.fixture(scope="module")
def backend(tiny_engine) -> SignLLMBackend:
    return SignLLMBackend.open(tiny_engine, "onnxruntime")


def _run(sched: Scheduler, joins: dict[int, list[tuple[str, str, str]]], cancels: dict[int, str] | None = None,
         ticks: int = 400) -> dict[str, np.ndarray]:
    """Tick a scheduler, submitting units (id, text, language) and cancelling ids at given ticks;
    returns each unit's frames in order."""
    frames: dict[str, list[np.ndarray]] = {}
    for t in range(ticks):
        for uid, text, lang in joins.get(t, []):
            sched.submit(uid, text, lang)
        if cancels and t in cancels:
            assert sched.cancel(cancels[t])
        if not sched.live and t > max(joins):
            break
        got, _ = sched.tick()
        for f in got:
            frames.setdefault(f.key, []).append(f.points)
    return {k: np.stack(v) for k, v in frames.items()}


UNITS = [("a", "hello world", "ase"), ("b", "haus", "gsg"), ("c", "quiz", "ase"), ("d", "vex bold", "gsg")]


def test_batched_output_equals_unbatched_per_unit_with_joins_and_leaves(backend):
    alone = {uid: _run(Scheduler([backend]), {0: [(uid, text, lang)]})[uid] for uid, text, lang in UNITS}
    # Units join at different ticks, so the batch mixes ages, cache lengths and token counts, and
    # words finish (leave) while others go on.
    batched = _run(Scheduler([backend]), {0: [UNITS[0]], 7: [UNITS[1], UNITS[2]], 31: [UNITS[3]]})
    assert batched.keys() == alone.keys()
    for uid in alone:
        assert batched[uid].shape == alone[uid].shape
        np.testing.assert_allclose(batched[uid], alone[uid], atol=1e-5)
    assert backend.live == 0


def test_cancelled_unit_stops_and_the_others_are_unaffected(backend):
    alone = _run(Scheduler([backend]), {0: [UNITS[1]]})["b"]
    sched = Scheduler([backend])
    got = _run(sched, {0: [UNITS[0], UNITS[1]]}, cancels={5: "a"})
    assert len(got["a"]) == 5 and not sched.cancel("a")
    np.testing.assert_allclose(got["b"], alone, atol=1e-5)
    assert backend.live == 0


def test_what_signllm_cannot_sign_goes_to_the_lexicon_path(tiny_engine, backend):
    sched = Scheduler([backend, LexiconBackend(25.0, tiny_engine / "letters.npz")])
    lexicon = sched.backends[1]
    segs = sched.submit("u", "hello kiwi", "ase")  # K is in the ASL alphabet, not in the tiny vocabulary
    assert [(s.path, s.kind) for s in segs] == [("signllm", "fingerspelling"), ("lexicon", "fingerspelling")]
    assert backend.plan("kiwi", "ase") == "characters outside the SignLLM vocabulary: K"
    fsl = sched.submit("v", "hola", "fsl")  # a language the model was not trained on
    assert [(s.path, s.gloss) for s in fsl] == [("lexicon", "<fsl> FS:H-O-L-A")]
    assert backend.plan("hola", "fsl") == "the SignLLM engine was not trained on fsl"
    frames = _run(sched, {0: []})
    assert len(frames["u"]) == segs[0].frames + segs[1].frames and segs[1].frames == len(lexicon.sequence("kiwi", "ase"))
    assert len(frames["v"]) == len(lexicon.sequence("hola", "fsl"))


def test_torch_runtime_gives_the_onnxruntime_frames(tiny_engine, backend):
    torch_backend = SignLLMBackend(open_runtime(tiny_engine, "torch"))
    joins = {0: [UNITS[0]], 3: [UNITS[1]]}
    ref, got = _run(Scheduler([backend]), joins), _run(Scheduler([torch_backend]), joins)
    for uid in ref:
        np.testing.assert_allclose(got[uid], ref[uid], atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed here")
def test_tensorrt_runtime_matches_onnxruntime(tiny_engine, tmp_path, backend):
    import shutil

    from engines.manifest import read_manifest, write_manifest
    from engines.runtime_tensorrt import build_plans

    folder = tmp_path / "trt"
    shutil.copytree(tiny_engine, folder)
    body = __import__("json").loads((folder / "engine.json").read_text())
    body["tensorrt"] = build_plans(folder)
    write_manifest(folder, {k: v for k, v in body.items() if k not in ("format", "skeleton")})
    trt_backend = SignLLMBackend(open_runtime(read_manifest(folder), "tensorrt"))
    joins = {0: [UNITS[0]], 3: [UNITS[1]]}
    ref, got = _run(Scheduler([backend]), joins), _run(Scheduler([trt_backend]), joins)
    for uid in ref:
        np.testing.assert_allclose(got[uid], ref[uid], atol=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_a_runtime_that_is_not_installed_says_what_to_install(tiny_engine):
    with pytest.raises(RuntimeUnavailable, match="pip install tensorrt") as err:
        open_runtime(tiny_engine, "tensorrt")
    assert err.value.code == "runtime_unavailable"
    with pytest.raises(RuntimeUnavailable, match="choose one of onnxruntime, tensorrt, torch"):
        open_runtime(tiny_engine, "tflite")


@pytest.mark.parametrize("fps", [50.0, 12.5, 30.0])
def test_a_model_at_another_frame_rate_is_retimed_to_the_output_clock(backend, fps):
    from engines.retime import Retimed

    words = [UNITS[1], UNITS[2]]  # one word each: a word's clock restarts at its first frame
    source = _run(Scheduler([backend]), {0: words})
    retimed = _run(Scheduler([Retimed(backend, backend.fps, fps)]), {0: words})
    ratio = backend.fps / fps
    for uid, frames in source.items():
        out = retimed[uid]
        # The same signing time on the new clock (each word loses at most a final partial frame).
        assert abs(len(out) * ratio - len(frames)) <= 2 * ratio + 1
        for k in range(len(out)):  # frame k shows source time k × ratio, interpolated
            pos = k * ratio
            i = int(np.floor(pos))
            if i + 1 < len(frames) and abs(pos - round(pos)) < 1e-9:
                np.testing.assert_allclose(out[k], frames[i], atol=1e-5)
        assert not np.allclose(out[1], out[0])  # it moves: no frame simply repeated at the start
    assert backend.live == 0


def test_the_loader_retimes_the_bundled_model_to_the_configured_fps():
    from types import SimpleNamespace

    from engines.loader import open_scheduler
    from engines.retime import Retimed

    def model(fps: float):  # the notation backend (sgg) comes first; the model is the next path
        backends = open_scheduler(SimpleNamespace(path="engines/default", backend="onnxruntime"), fps).backends
        return next(b for b in backends if b.name == "signllm")

    assert isinstance(model(30.0), Retimed)
    assert not isinstance(model(25.0), Retimed)
