"""Training: overfitting, counter stopping after training, DTW-MJE, priority channel, configs, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from engines.formats.prompt2sign import Record, write_split
from engines.langgloss import format_gloss
from engines.model import ModelConfig, SignLLM
from engines.sequence import PoseSequence
from engines.tokenizer import Tokenizer
from server.cli import app
from server.config import ConfigError
from training.dtw import cut_at_counter, dtw_cost, dtw_mje
from training.plc import PriorityChannel, keypoint_quality, rloo_advantages
from engines.skeleton import LEFT_HAND, RIGHT_HAND
from training.train import (Example, train, encode_batch, fit_normalisation, hand_holes, handshape_error, load_train_config,
                            pad_steps,
                            regression_loss, rl_loss, self_fed_inputs, teacher_inputs)

torch.set_num_threads(1)  # small tensors: more threads only spin on a shared 2-core machine


def letter_pose(letter: str) -> np.ndarray:
    """A fixed (50, 3) pose per letter, so a word is its letters' poses in a row."""
    return np.random.default_rng(ord(letter)).normal(0, 0.5, (50, 3)).astype(np.float32)


def word_record(lang: str, word: str, hold: int = 3) -> Record:
    frames = np.concatenate([np.repeat(letter_pose(c)[None], hold, 0) for c in word])
    seq = PoseSequence(frames, np.ones(frames.shape[:2], np.float32), 25.0)
    return Record(f"{lang}/{word}", word.lower(), format_gloss(lang, list(word)), seq)


def as_example(r: Record) -> Example:
    n = len(r.sequence)
    steps = np.concatenate([r.sequence.frames.reshape(n, 150), (np.arange(1, n + 1) / n)[:, None]], 1)
    return Example(r.name.split("/")[0], r.text, r.gloss, steps.astype(np.float32))


@pytest.fixture
def synthetic_corpus(tmp_path) -> Path:
    words = {"train": ["ABC", "BAD", "CAFE", "FACE", "HEAD", "BEAD", "DECA", "ACHE"], "dev": ["CAB", "FADE"],
             "test": ["BEACH", "ADD"]}
    for lang in ("ase", "gsg"):
        for split, ws in words.items():
            write_split(tmp_path / lang, split, [word_record(lang, w) for w in ws])
    return tmp_path


def tiny_model(words: tuple[str, ...], hold: int = 3, **cfg) -> tuple[SignLLM, list[Example], torch.Tensor, torch.Tensor,
                                                                 torch.Tensor, torch.Tensor]:
    """A small ase model normalised to `words` (one pose per letter), with the words as a batch:
    (model, examples, tokens, lang, targets, mask)."""
    examples = [as_example(word_record("ase", w, hold=hold)) for w in words]
    tok = Tokenizer.train([e.gloss for e in examples], ["ase"])
    model = SignLLM(ModelConfig(vocab_size=tok.vocab_size, languages=["ase"], **{
        "d_model": 16, "n_heads": 2, "enc_layers": 1, "dec_layers": 2, "d_ff": 16, "dropout": 0.0, **cfg}))
    fit_normalisation(model, examples)
    tokens, lang = encode_batch(tok, ["ase"], examples)
    targets, mask = pad_steps([e.steps for e in examples])
    return model, examples, tokens, lang, targets, mask


def test_tiny_model_overfits_and_stops_on_its_own_counter() -> None:
    torch.manual_seed(0)
    model, examples, tokens, lang, targets, mask = tiny_model(("AB", "CADE", "HEAD"), hold=2, d_model=32, d_ff=64)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(200):
        loss = regression_loss(model, tokens, lang, targets, mask, counter_weight=1.0, noise=0.0).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
    model.eval()
    generated = model.generate(tokens, lang, max_frames=30)
    # Own frames, own counter: each stops within a frame of its length (4, 8, 8), far below the cap,
    # and is far closer to its word than a still zero pose is.
    for e, g in zip(examples, generated):
        still = np.zeros_like(e.steps)
        still[:, -1] = e.steps[:, -1]
        assert abs(len(g) - len(e.steps)) <= 1
        assert dtw_mje(e.steps, g.numpy()) < 0.3 * dtw_mje(e.steps, still)


def test_dtw_mje_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 4)), rng.normal(size=(5, 4))
    cost = np.abs(a[:, None] - b[None]).sum(-1)
    acc = np.full((8, 6), np.inf)
    acc[0, 0] = 0
    for i in range(7):
        for j in range(5):
            acc[i + 1, j + 1] = cost[i, j] + min(acc[i, j], acc[i, j + 1], acc[i + 1, j])
    assert dtw_cost(a, b) == pytest.approx(acc[-1, -1])
    ref = np.concatenate([rng.normal(size=(6, 150)), (np.arange(1, 7) / 6)[:, None]], 1)
    assert dtw_mje(ref, ref) == 0.0
    # Cut before the counter's maximum, counter dropped, divided by the reference's cut length (5).
    assert cut_at_counter(ref).shape == (5, 150)
    shifted = ref.copy()
    shifted[:, :150] += 0.01
    assert dtw_mje(ref, shifted) == pytest.approx(150 * 0.01 * 5 / 5)


def test_priority_channel_prefers_high_loss_and_quality() -> None:
    channel = PriorityChannel(np.array([1.0, 1.0, 0.2, 1.0]), alpha=1.0, beta=0.5, seed=0)
    p0 = channel.probabilities()
    assert p0[2] < p0[0]  # low keypoint quality is sampled less
    channel.update(np.arange(4), np.array([0.1, 2.0, 2.0, 0.1]))
    p = channel.probabilities()
    assert p[1] > p[0] and p[1] > p[2]
    idx, w = channel.sample(2000)
    assert np.bincount(idx, minlength=4)[1] > np.bincount(idx, minlength=4)[0] * 5
    assert w.max() == 1.0 and w[idx == 1].max() < w[idx == 0].min()  # importance weights undo the bias
    uniform = PriorityChannel(np.array([1.0, 0.1]), alpha=0.0, beta=0.0)
    uniform.update(np.arange(2), np.array([5.0, 0.0]))
    np.testing.assert_allclose(uniform.probabilities(), [0.5, 0.5])


def test_keypoint_quality_counts_missing_hand_points() -> None:
    steps = np.ones((4, 151), np.float32)
    assert keypoint_quality(steps) == 1.0
    hand = steps[:, :150].reshape(4, 50, 3)
    hand[:, 30:35] = 0  # 5 of the right hand's 21 points missing
    assert keypoint_quality(steps) == pytest.approx((42 - 5) / 42)


def test_rl_loss_has_gradients_and_uses_leave_one_out() -> None:
    adv = rloo_advantages(np.array([[1.0, 3.0], [2.0, 2.0]]))
    assert adv[0, 0] < 0 < adv[0, 1] and adv[1, 0] == adv[1, 1] == 0
    examples = [as_example(word_record("ase", w, hold=2)) for w in ("AB", "CAB")]
    tok = Tokenizer.train([e.gloss for e in examples], ["ase"])
    torch.manual_seed(0)
    model = SignLLM(ModelConfig(vocab_size=tok.vocab_size, languages=["ase"], d_model=32, n_heads=2, enc_layers=1,
                                dec_layers=2, d_ff=48))
    tokens, lang = encode_batch(tok, ["ase"], examples)
    loss, reward = rl_loss(model, tokens, lang, examples, samples=2, policy_std=0.1)
    loss.backward()
    assert reward < 0 and model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_teacher_inputs_start_with_bos() -> None:
    model = SignLLM(ModelConfig(vocab_size=10, languages=["ase"], d_model=16, n_heads=2, enc_layers=1, dec_layers=2, d_ff=16))
    targets = torch.randn(2, 4, 151)
    inputs = teacher_inputs(model, targets)
    assert torch.equal(inputs[:, 0], torch.zeros(2, 151)) and torch.equal(inputs[:, 1:], targets[:, :3])


def test_self_fed_inputs_are_the_models_own_one_step_predictions() -> None:
    torch.manual_seed(0)
    model, _, tokens, lang, targets, mask = tiny_model(("AB", "CADE"), future=2)
    inputs = teacher_inputs(model, targets)
    assert torch.equal(self_fed_inputs(model, tokens, lang, inputs, 0.0), inputs)
    fed = self_fed_inputs(model, tokens, lang, inputs, 1.0)
    with torch.no_grad():
        own = model.denormalise(model(tokens, lang, inputs)[:, :, 0], lang)
    # BOS stays; every later input is the prediction made one step earlier from the true frames.
    assert torch.equal(fed[:, 0], inputs[:, 0])
    assert torch.allclose(fed[:, 1:], own[:, :-1]) and not torch.allclose(fed[:, 1:], inputs[:, 1:])
    half = self_fed_inputs(model, tokens, lang, inputs, 0.5)
    replaced = ~(half == inputs).all(-1)
    assert 0 < replaced[:, 1:].float().mean() < 1 and not replaced[:, 0].any()
    # The loss on self-fed inputs still trains (gradients reach the weights).
    loss = regression_loss(model, tokens, lang, targets, mask, counter_weight=1.0, noise=0.1, self_feed=0.5).mean()
    loss.backward()
    assert model.pose_in.weight.grad is not None and model.pose_in.weight.grad.abs().sum() > 0


def test_handshape_error_sees_fingers_not_where_the_hand_is() -> None:
    model, _, tokens, lang, targets, mask = tiny_model(("AB", "CADE"))
    exact = model.normalise(targets, lang)
    assert handshape_error(model, lang, exact, targets).abs().max() < 1e-6

    def moved(values: torch.Tensor) -> torch.Tensor:
        return model.normalise(values, lang)

    # The whole right hand 0.3 units to the side: the arm is wrong, the handshape is not.
    shifted = targets.clone()
    shifted[..., 3 * RIGHT_HAND: 3 * (RIGHT_HAND + 21): 3] += 0.3
    assert handshape_error(model, lang, moved(shifted), targets).abs().max() < 1e-5
    # One fingertip of the left hand moved: the shape is wrong, on every frame, by the same amount.
    bent = targets.clone()
    bent[..., 3 * (LEFT_HAND + 8) + 1] += 0.3
    err = handshape_error(model, lang, moved(bent), targets)
    assert (err > 1e-3).all()
    # It adds to the regression loss only when weighted, and it trains.
    plain = regression_loss(model, tokens, lang, targets, mask, counter_weight=1.0, noise=0.0)
    weighted = regression_loss(model, tokens, lang, targets, mask, counter_weight=1.0, noise=0.0, handshape_weight=2.0)
    assert (weighted > plain).all()
    weighted.mean().backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_hand_holes_are_left_out_of_the_loss_and_a_missing_hand_is_not() -> None:
    torch.manual_seed(0)
    model, _, tokens, lang, targets, mask = tiny_model(("AB", "CADE"))
    targets = targets.clone()
    tip = 3 * (RIGHT_HAND + 8)  # the right index fingertip's x
    targets[0, 2, tip: tip + 3] = 0.0  # a tracking hole in a seen hand
    targets[1, 3, 3 * LEFT_HAND: 3 * (LEFT_HAND + 21)] = 0.0  # the left hand missing whole
    holes = hand_holes(targets)
    assert holes[0, 2, tip: tip + 3].all() and holes.sum() == 3  # nothing else is a hole

    def loss(t: torch.Tensor, masked: bool) -> torch.Tensor:
        return regression_loss(model, tokens, lang, t, mask, counter_weight=1.0, noise=0.0, handshape_weight=1.0,
                               mask_hand_holes=masked)

    masked = loss(targets, True)
    assert torch.allclose(masked[1], loss(targets, False)[1])  # no hole in example 1: the same loss
    assert not torch.allclose(masked[0], loss(targets, False)[0])
    # Whatever the model predicts at a hole does not move the handshape error; the seen points do.
    pred = (model.normalise(targets, lang) + 0.1).requires_grad_()
    handshape_error(model, lang, pred, targets, holes).sum().backward()
    assert pred.grad is not None and pred.grad[0, 2, tip: tip + 3].abs().max() == 0
    assert pred.grad[0, 2, tip + 3: tip + 6].abs().max() > 0
    pred.grad = None
    handshape_error(model, lang, pred, targets).sum().backward()
    assert pred.grad[0, 2, tip: tip + 3].abs().max() > 0


@pytest.mark.parametrize("body, message", [
    ("[model]\nd_modle = 64\n", "unknown key 'model.d_modle'"),
    ("[train]\nlr = 'fast'\n", "'train.lr' must be float"),
    ("[model]\nd_model = 30\nn_heads = 4\n", "must be a multiple of 'model.n_heads'"),
    ("[rl]\nenabled = true\nsamples = 1\n", "'rl.samples' must be at least 2"),
    ("[augment]\nself_feed = 1.5\n", "'augment.self_feed' must be between 0 and 1"),
    ("[train]\nhandshape_weight = -1.0\n", "'train.handshape_weight' must not be negative"),
    ("[train]\ndevice = 'gpu'\n", "'train.device' must be 'cpu' or 'cuda"),
    ("[train]\ndevice = 'cuda:x'\n", "'train.device' must be 'cpu' or 'cuda"),
    ("[train\n", "not valid TOML"),
])
def test_bad_config_is_a_clear_error(tmp_path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_train_config(path)
    assert str(path) in info.value.message


def test_cli_rejects_a_bad_config_with_its_code(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nwidth = 3\n")
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "error [bad_config]" in result.output and "model.width" in result.output


def test_cli_trains_resumes_and_evaluates(tmp_path, synthetic_corpus) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(f"""
[data]
corpus = "{synthetic_corpus}"
[model]
d_model = 32
n_heads = 2
enc_layers = 1
dec_layers = 2
d_ff = 32
[train]
batch_size = 4
max_steps = 6
eval_every = 3
eval_items = 2
max_frames = 40
log_every = 2
[augment]
future = 2
gaussian_noise = 0.1
[plc]
enabled = true
""")
    run = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["train", "--config", str(config), "--out", str(run), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output.strip().splitlines()[-1])["steps"] == 6
    for name in ("model.safetensors", "model.json", "tokenizer.model"):
        assert (run / "last" / name).exists() and (run / "best" / name).exists()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "dev_dtw" in r] == [3, 6]
    # Resume with a larger step budget continues from step 6.
    config.write_text(config.read_text().replace("max_steps = 6", "max_steps = 8"))
    second = runner.invoke(app, ["train", "--config", str(config), "--out", str(run), "--no-progress"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.output.strip().splitlines()[-1])["steps"] == 8
    assert "resumed at step 6" in (run / "train.log").read_text()
    result = runner.invoke(app, ["eval", "--checkpoint", str(run / "best"), "--corpus", str(synthetic_corpus),
                                 "--split", "test", "--json", "--max-frames", "40", "--baseline", "--per-language", "1",
                                 "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["n"] == 2 and set(metrics["per_language"]) == {"ase", "gsg"}
    assert metrics["dtw"] > 0 and metrics["mean_baseline"]["n"] == 2


def test_init_starts_from_a_checkpoint_and_refits_only_the_normalisation(tmp_path, synthetic_corpus) -> None:
    from engines.model import load_model

    base = f'[data]\ncorpus = "{synthetic_corpus}"\n[model]\nd_model = 32\nn_heads = 2\nenc_layers = 1\ndec_layers = 2\n' \
           'd_ff = 32\n[train]\nbatch_size = 4\neval_every = 2\neval_items = 2\nmax_frames = 40\n'
    first = tmp_path / "first.toml"
    first.write_text(base + "max_steps = 2\n")
    runner = CliRunner()
    assert runner.invoke(app, ["train", "--config", str(first), "--out", str(tmp_path / "a"), "--no-progress"]).exit_code == 0
    # No training steps: the warm start must hand back the checkpoint it started from.
    second = tmp_path / "second.toml"
    second.write_text(base + f'max_steps = 0\ninit = "{tmp_path / "a" / "last"}"\n')
    res = runner.invoke(app, ["train", "--config", str(second), "--out", str(tmp_path / "b"), "--no-progress"])
    assert res.exit_code == 0, res.output
    a, b = load_model(tmp_path / "a" / "last").state_dict(), load_model(tmp_path / "b" / "last").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "b" / "last" / "tokenizer.model").read_bytes() == (tmp_path / "a" / "last" / "tokenizer.model").read_bytes()


def test_reader_reward_needs_its_judge(tmp_path) -> None:
    path = tmp_path / "rl.toml"
    path.write_text("[rl]\nenabled = true\nreward = \"reader\"\n")
    with pytest.raises(ConfigError, match="'rl.judge' must name the reward judge"):
        load_train_config(path)
    path.write_text("[rl]\nreward = \"bleu\"\n")
    with pytest.raises(ConfigError, match="'rl.reward' must be 'dtw' or 'reader'"):
        load_train_config(path)


def _wall_budget_config(tmp_path, corpus, device: str) -> Path:
    path = tmp_path / f"{device.replace(':', '')}.toml"
    path.write_text(f'[data]\ncorpus = "{corpus}"\n[model]\nd_model = 32\nn_heads = 2\nenc_layers = 1\ndec_layers = 2\n'
                    f'd_ff = 32\n[train]\nbatch_size = 4\neval_every = 1000\neval_items = 2\nmax_frames = 40\n'
                    f'budget_wall_minutes = 0.02\ndevice = "{device}"\n[augment]\nfuture = 2\n')
    return path


def test_a_wall_clock_budget_stops_the_run(tmp_path, synthetic_corpus) -> None:
    summary = train(_wall_budget_config(tmp_path, synthetic_corpus, "cpu"), tmp_path / "run", progress=False)
    # Stopped by the 1.2 s budget (max_steps is a million), within one step of it.
    assert 0 < summary["steps"] < 1_000_000 and 1.2 <= summary["wall_s"] < 1.2 + 5
    assert summary["best_dev_dtw"] < float("inf")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (training on a GPU: train.device)")
def test_training_on_a_gpu_saves_a_checkpoint_the_cpu_loads(tmp_path, synthetic_corpus) -> None:
    from engines.model import load_model

    summary = train(_wall_budget_config(tmp_path, synthetic_corpus, "cuda"), tmp_path / "run", progress=False)
    assert summary["steps"] > 0
    model = load_model(tmp_path / "run" / "best")  # saved on the CPU side: no map_location needed
    assert next(model.parameters()).device.type == "cpu"
    # Resume on the GPU from state.pt.
    config = tmp_path / "cuda.toml"
    config.write_text(config.read_text().replace("budget_wall_minutes = 0.02", "budget_wall_minutes = 0.04"))
    assert train(config, tmp_path / "run", progress=False)["steps"] > summary["steps"]
