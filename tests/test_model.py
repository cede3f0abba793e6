"""SignLLM model: incremental step = teacher forcing, MLSF routing, counter stopping, checkpoints, tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.langgloss import format_gloss, prompt_text, prompt_to_glosses
from engines.model import ModelConfig, SignLLM, load_model, save_model
from engines.skeleton import STEP_VALUES
from engines.tokenizer import Tokenizer

LANGS = ["ase", "gsg", "gss"]


def tiny(mlsf: bool = True, future: int = 1, seed: int = 0) -> SignLLM:
    torch.manual_seed(seed)
    return SignLLM(ModelConfig(vocab_size=20, languages=LANGS, d_model=32, n_heads=2, enc_layers=1, dec_layers=2,
                               d_ff=48, mlsf=mlsf, future=future, dropout=0.0)).eval()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, 20, (3, 7), generator=g)
    tokens[1, 5:] = 0  # padding
    lang = torch.tensor([0, 1, 2])
    frames = torch.randn(3, 9, STEP_VALUES, generator=g)
    return tokens, lang, frames


def stepped(model: SignLLM, tokens: torch.Tensor, lang: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced predictions (B, T, future, 151) and the frames `step` gives on the same inputs (B, T, 151)."""
    with torch.no_grad():
        full = model.denormalise(model(tokens, lang, frames), lang)
        mem = model.encode(tokens, lang)
        cache = model.start(mem)
        steps = []
        for t in range(frames.shape[1]):
            out, cache = model.step(frames[:, t], mem, cache)
            steps.append(out)
    assert cache.k.shape[3] == frames.shape[1]  # the cache grew one slot a step
    return full, torch.stack(steps, 1)


@pytest.mark.parametrize("future", [1, 2, 3])
def test_incremental_steps_equal_teacher_forcing(future: int) -> None:
    model = tiny(future=future)
    full, steps = stepped(model, *batch())
    # FP ensembling: frame t is the mean of the predictions of it made at steps t−future+1 … t;
    # the counter is the step's own.
    want = torch.stack([torch.stack([full[:, t - k, k] for k in range(min(t, future - 1) + 1)]).mean(0)
                        for t in range(full.shape[1])], 1)
    want[..., -1] = full[:, :, 0, -1]
    torch.testing.assert_close(steps, want, atol=1e-4, rtol=1e-4)
    if future > 1:  # the ensemble is not the first prediction alone
        assert not torch.allclose(want, full[:, :, 0], atol=1e-3)


def test_without_fp_ensembling_a_step_is_its_first_prediction() -> None:
    model = tiny(future=3)
    model.cfg.fp_ensemble = False
    full, steps = stepped(model, *batch())
    torch.testing.assert_close(steps, full[:, :, 0], atol=1e-4, rtol=1e-4)


def test_read_position_only_moves_forward() -> None:
    model = tiny()
    tokens, lang, frames = batch()
    with torch.no_grad():
        mem = model.encode(tokens, lang)
        cache = model.start(mem)
        kappas = [cache.kappa.clone()]
        for t in range(frames.shape[1]):
            _, cache = model.step(frames[:, t], mem, cache)
            kappas.append(cache.kappa.clone())
    assert (torch.diff(torch.stack(kappas), dim=0) >= 0).all()


def test_mlsf_routes_each_language_to_its_group() -> None:
    model = tiny(mlsf=True)
    tokens, lang, frames = batch()
    with torch.no_grad():
        before = model(tokens, lang, frames)
        model.dec[1].ff.w2[1].add_(torch.randn_like(model.dec[1].ff.w2[1]))  # change only group 1 (gsg)
        after = model(tokens, lang, frames)
    changed = (before - after).abs().flatten(1).amax(1)
    assert changed[1] > 1e-3 and changed[0] == 0 and changed[2] == 0
    # Pose statistics are per language too.
    with torch.no_grad():
        model.pose_std[2].mul_(2.0)
        rescaled = model(tokens, lang, frames)
    changed = (after - rescaled).abs().flatten(1).amax(1)
    assert changed[2] > 1e-3 and changed[0] == 0 and changed[1] == 0
    after = rescaled
    # A batch mixing languages computes what each language computes alone.
    with torch.no_grad():
        alone = torch.cat([model(tokens[i : i + 1], lang[i : i + 1], frames[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(after, alone, atol=1e-5, rtol=1e-5)


def test_shared_baseline_has_one_group_for_all_languages() -> None:
    model = tiny(mlsf=False)
    assert model.dec[0].ff.w1.shape[0] == 1
    tokens, lang, frames = batch()
    with torch.no_grad():
        a = model(tokens, lang, frames)
        model.dec[1].ff.w2[0].add_(torch.randn_like(model.dec[1].ff.w2[0]))
        b = model(tokens, lang, frames)
    assert ((a - b).abs().flatten(1).amax(1) > 1e-3).all()


def test_generation_stops_on_own_counter_or_cap() -> None:
    model = tiny()
    tokens, lang, _ = batch()
    with torch.no_grad():
        model.head.weight[STEP_VALUES - 1].zero_()
        model.head.bias[STEP_VALUES - 1] = 0.3  # counter never reaches 1: the cap ends generation
        capped = model.generate(tokens, lang, max_frames=7)
        model.head.bias[STEP_VALUES - 1] = 1.2  # counter ≥ 1 at once: one frame each
        stopped = model.generate(tokens, lang, max_frames=7)
    assert [len(s) for s in capped] == [7, 7, 7]
    assert [len(s) for s in stopped] == [1, 1, 1]


def test_checkpoint_round_trip(tmp_path) -> None:
    model = tiny(future=2)
    with torch.no_grad():
        model.pose_mean.fill_(0.25)
        model.pose_std.fill_(0.5)
    tokens, lang, frames = batch()
    save_model(tmp_path / "full", model)
    save_model(tmp_path / "half", model, half=True)
    with torch.no_grad():
        want = model(tokens, lang, frames)
        got = load_model(tmp_path / "full")(tokens, lang, frames)
        half = load_model(tmp_path / "half")(tokens, lang, frames)
    torch.testing.assert_close(got, want)
    assert (half - want).abs().max() < 0.05  # fp16 storage
    assert load_model(tmp_path / "full").cfg == model.cfg


def test_load_model_names_a_folder_that_is_not_a_checkpoint(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a SignLLM checkpoint"):
        load_model(tmp_path)


def test_tokenizer_is_char_level_with_whole_markers(tmp_path) -> None:
    glosses = [format_gloss("ase", list("HOUSE")), format_gloss("gsg", ["S", "T", "R", "A", "ß", "E"]),
               format_gloss("gss", list("ΚΑΙ"))]
    tok = Tokenizer.train(glosses, LANGS)
    pieces = tok.pieces("<gsg> FS:S-T-R-A-ß-E")
    assert pieces[0] == "<gsg>" and "FS:" in pieces and "ß" in pieces
    assert all(len(p) == 1 for p in pieces if p not in ("<gsg>", "FS:"))
    tok.save(tmp_path / "t.model")
    again = Tokenizer.load(tmp_path / "t.model")
    assert again.encode(glosses[2]) == tok.encode(glosses[2]) and 0 not in tok.encode(glosses[0])
    assert again.decode(again.encode(glosses[0])) == glosses[0]


def test_prompt2langgloss_reads_questions_and_spells_with_the_alphabet(alphabets) -> None:
    assert prompt_text('How do you sign "house" in ASL?') == "house"
    assert prompt_text("spell cat") == "cat"
    assert prompt_to_glosses("How do you sign 'house'?", alphabets["ase"]) == ["<ase> FS:H-O-U-S-E"]
    assert prompt_to_glosses("Straße", alphabets["gsg"]) == ["<gsg> FS:S-T-R-A-ß-E"]
    assert prompt_to_glosses("dog cat", alphabets["ase"]) == ["<ase> FS:D-O-G", "<ase> FS:C-A-T"]


def test_group_weights_are_stacked_per_language() -> None:
    model = tiny()
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if ".ff." in n}
    assert all(s[0] == len(LANGS) for s in shapes.values())
    assert np.prod(shapes["dec.0.ff.w1"]) == len(LANGS) * 32 * 48
