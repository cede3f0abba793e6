"""Training the back-translation judge: pseudo-gloss pretraining of the sign encoder, then
translation through the frozen LM (LoRA + gated cross-attention). The output folder is a judge:

    judge.json          encoder/decoder config, the LM folder, languages, provenance
    judge.safetensors   the trained parameters only (encoder, cross-attention, LoRA), float16
    lm/                 the frozen LM + tokenizer (save_pretrained), when we pretrained it here
    config.toml         the training config; log.jsonl: one JSON record per log line
    state.pt            while training: parameters, optimiser, RNG, stage and step for `--resume`
                        (written atomically every `checkpoint_every` steps or `checkpoint_minutes`)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engines.langgloss import language_marker, marker_language
from engines.typed_config import ConfigError, load_toml
from training.backtranslate.data import PoseExample, batch_at, batch_tensors, corpus_languages, load_examples, spread
from training.backtranslate.decoder import DecoderConfig, SignTranslator
from training.backtranslate.encoder import EncoderConfig
from training.backtranslate.evaluate import evaluate_examples
from training.backtranslate.judge import load_judge, save_judge
from training.backtranslate.lm import LMConfig, corpus_spoken, load_lm, pretrain_lm
from training.backtranslate.pseudogloss import GlossVocab, PseudoGlossHead, lm_prototypes, pseudo_glosses


# --- config ---------------------------------------------------------------------------------


@dataclass
class DataSection:
    corpus: str = "data/corpus"
    languages: list[str] = field(default_factory=list)  # empty: every language of the corpus
    train_per_language: int = 0  # training words a language (0: all)
    max_frames: int = 300  # longer training sequences are skipped


@dataclass
class LMSection(LMConfig):
    path: str = ""  # a saved causal LM to freeze; empty: pretrain ours into OUT/lm


@dataclass
class PretrainSection:
    enabled: bool = True
    steps: int = 600
    lr: float = 1e-3
    min_count: int = 2  # word pseudo-glosses seen fewer times are dropped (letters always kept)
    temperature: float = 0.1


@dataclass
class TrainSection:
    seed: int = 0
    threads: int = 1
    batch_size: int = 32
    steps: int = 1500  # translation steps
    lr: float = 1e-3
    warmup_steps: int = 100
    gate_lr_scale: float = 10.0  # the zero-initialised gates learn this much faster (else they stay shut)
    ctc_weight: float = 1.0  # auxiliary CTC on the encoder (0: off); without it the judge did not learn to read
    log_every: int = 50
    checkpoint_every: int = 250  # steps between resumable checkpoints (state.pt)
    checkpoint_minutes: float = 5.0  # ... or wall minutes, whichever comes first
    eval_items: int = 200  # dev sequences decoded at the end
    # A judge folder to start from (its trained weights; same LM and sizes): a judge re-fitted to a
    # rebuilt corpus in a fraction of a fresh run's steps. Empty: from scratch.
    init: str = ""


@dataclass
class BacktranslateConfig:
    data: DataSection = field(default_factory=DataSection)
    lm: LMSection = field(default_factory=LMSection)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    pretrain: PretrainSection = field(default_factory=PretrainSection)
    train: TrainSection = field(default_factory=TrainSection)


def load_config(path: str | Path) -> BacktranslateConfig:
    """Load and validate a back-translation config; errors name the file and the key."""
    path = Path(path)
    cfg = load_toml(BacktranslateConfig, path)
    for key, value in (("train.batch_size", cfg.train.batch_size), ("train.steps", cfg.train.steps),
                       ("train.lr", cfg.train.lr), ("train.threads", cfg.train.threads),
                       ("train.checkpoint_every", cfg.train.checkpoint_every),
                       ("pretrain.min_count", cfg.pretrain.min_count), ("data.max_frames", cfg.data.max_frames)):
        if value <= 0:
            raise ConfigError(f"{path}: '{key}' must be positive, got {value}")
    if cfg.train.ctc_weight and not cfg.decoder.ctc_head:
        raise ConfigError(f"{path}: 'train.ctc_weight' needs 'decoder.ctc_head = true' (or set ctc_weight = 0)")
    return cfg


# --- judge folder ---------------------------------------------------------------------------


def init_from_judge(model: SignTranslator, folder: Path) -> None:
    """Copy a trained judge's weights into `model` (every trained tensor must fit)."""
    source = load_judge(folder)
    state = trainable_state(source)
    if set(state) != set(model.trainable_names()):
        raise ConfigError(f"train.init: {folder} does not fit this judge config (trained tensors differ)")
    model.load_state_dict(state, strict=False)


# --- training -------------------------------------------------------------------------------

STATE = "state.pt"
STAGE_KEYS = ("stage", "step", "loss", "head", "opt")  # a state's own stage; the next stage starts without them


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    return lr * min(1.0, step / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


class Checkpointer:
    """Atomic, periodic `state.pt` writes (every N steps or M minutes) and their reading back;
    `common()` adds what every state carries (time spent, summary so far)."""

    def __init__(self, folder: Path, every: int = 1, minutes: float = 0.0, common=dict) -> None:
        self.path, self.every, self.seconds, self.common = folder / STATE, every, 60 * minutes, common
        self.last = time.perf_counter()

    def due(self, step: int, steps: int) -> bool:
        return step == steps or step % self.every == 0 or time.perf_counter() - self.last >= self.seconds

    def save(self, state: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        torch.save(state | self.common(), tmp)
        os.replace(tmp, self.path)  # a run killed mid-write leaves the previous state intact
        self.last = time.perf_counter()

    def load(self) -> dict | None:
        return torch.load(self.path, weights_only=False) if self.path.exists() else None


def run_stage(stage: str, steps: int, lr: float, params: list[torch.nn.Parameter], opt: torch.optim.Optimizer,
              step_loss, cfg: BacktranslateConfig, ckpt: Checkpointer, snapshot, start: int, log) -> float:
    """Steps start+1..steps of one stage: lr schedule, loss, clipped update, log, checkpoint.
    `snapshot["state"](stage, step, loss)` is what a checkpoint holds; returns the last loss."""
    t = cfg.train
    if start >= steps:  # resumed after the stage's last checkpoint
        return snapshot["loss"]
    for step in range(start + 1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = group.get("scale", 1.0) * lr_at(step, steps, lr, t.warmup_steps)
        loss = step_loss(step)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % t.log_every == 0 or step == steps:
            log({"stage": stage, "step": step, "loss": round(loss.item(), 4)} | snapshot.get("extra", lambda: {})())
        if ckpt.due(step, steps):
            ckpt.save(snapshot["state"](stage, step, round(loss.item(), 4)))
    return round(loss.item(), 4)


def trainable_state(model: SignTranslator) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def pretrain_encoder(model: SignTranslator, examples: list[PoseExample], spoken: dict[str, str],
                     cfg: BacktranslateConfig, ckpt: Checkpointer, state: dict, log) -> dict:
    """Stage 1: the sign encoder learns to localise pseudo-glosses against frozen LM prototypes."""
    p = cfg.pretrain
    glosses = [pseudo_glosses(e.text, e.gloss, spoken[marker_language(e.marker)]) for e in examples]
    vocab = GlossVocab.build(glosses, p.min_count)
    prototypes = lm_prototypes(model.lm.get_base_model(), model.tokenizer, vocab.items)
    head = PseudoGlossHead(model.enc_cfg.d_model, prototypes, p.temperature)
    index = {id(e): g for e, g in zip(examples, glosses)}
    params = list(model.encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=0.01)
    start = 0
    if state.get("stage") == "pseudogloss":
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        start = state["step"]

    def step_loss(step: int) -> torch.Tensor:
        batch = batch_at(examples, cfg.train.batch_size, cfg.train.seed, step)
        feats, pad = model.encoder(*batch_tensors(batch))
        return head.loss(feats, pad, vocab.targets([index[id(e)] for e in batch]))

    snapshot = {"loss": state.get("loss"),
                "state": lambda stage, step, loss: state | {"stage": stage, "step": step, "loss": loss,
                                                            "model": trainable_state(model), "head": head.state_dict(),
                                                            "opt": opt.state_dict(), "torch_rng": torch.get_rng_state()}}
    model.encoder.train()
    final = run_stage("pseudogloss", p.steps, p.lr, params, opt, step_loss, cfg, ckpt, snapshot, start, log)
    return {"classes": len(vocab.items), "letters": sum(len(g) == 1 for g in vocab.items), "final_loss": final}


def train_translation(model: SignTranslator, examples: list[PoseExample], cfg: BacktranslateConfig,
                      ckpt: Checkpointer, state: dict, log) -> dict:
    """Stage 2: encoder, gated cross-attention and LoRA learn to make the frozen LM read poses."""
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    gates = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith((".gate", ".gate_ff"))]
    rest = [p for p in params if all(p is not g for g in gates)]
    opt = torch.optim.AdamW([{"params": rest, "scale": 1.0},
                             {"params": gates, "scale": t.gate_lr_scale, "weight_decay": 0.0}],
                            lr=t.lr, weight_decay=0.01)
    start = 0
    if state.get("stage") == "translate":
        opt.load_state_dict(state["opt"])
        start = state["step"]

    def step_loss(step: int) -> torch.Tensor:
        batch = batch_at(examples, t.batch_size, t.seed, step)
        return model.loss(*batch_tensors(batch), [e.marker for e in batch], [e.text for e in batch], t.ctc_weight)

    snapshot = {"loss": state.get("loss"),
                "state": lambda stage, step, loss: state | {"stage": stage, "step": step, "loss": loss,
                                                            "model": trainable_state(model), "opt": opt.state_dict(),
                                                            "torch_rng": torch.get_rng_state()},
                "extra": lambda: {"gate": round(float(torch.tanh(model.xattn[0].gate.detach())), 4)}}
    model.train()
    final = run_stage("translate", t.steps, t.lr, params, opt, step_loss, cfg, ckpt, snapshot, start, log)
    model.eval()
    return {"final_loss": final}


def train(config_path: str | Path, out: str | Path, lm_override: str | Path | None = None, progress=None,
          resume: bool = False) -> dict:
    """Train a judge into `out`. Fresh (the default): an existing judge there is replaced. `resume`:
    continue from `out/state.pt` with the config saved in `out` (a fresh run when there is none)."""
    out = Path(out)
    ckpt_state = Checkpointer(out).load() if resume else None
    if ckpt_state is not None:
        config_path = out / "config.toml"  # the run's own config: a resumed run keeps its schedule
    cfg = load_config(config_path)
    torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    corpus = Path(cfg.data.corpus)
    spoken = corpus_spoken(corpus)
    languages = corpus_languages(corpus, cfg.data.languages)
    out.mkdir(parents=True, exist_ok=True)
    if ckpt_state is None:
        shutil.copyfile(config_path, out / "config.toml")
    log_file = (out / "log.jsonl").open("a" if ckpt_state else "w", encoding="utf-8")
    spent = ckpt_state["spent"] if ckpt_state else {"cpu_s": 0.0, "wall_s": 0.0}
    cpu0, wall0 = time.process_time() - spent["cpu_s"], time.perf_counter() - spent["wall_s"]

    def elapsed() -> dict:
        return {"cpu_s": round(time.process_time() - cpu0, 1), "wall_s": round(time.perf_counter() - wall0, 1)}

    def log(record: dict) -> None:
        record |= elapsed()
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        if progress:
            progress(record)

    if ckpt_state:
        lm_path = ckpt_state["lm_path"]
        log({"stage": "resume", "from": ckpt_state["stage"], "step": ckpt_state["step"]})
    elif lm_override or cfg.lm.path:  # stored relative to the judge folder, so a judge and its LM can move together
        lm_path = os.path.relpath(Path(lm_override or cfg.lm.path).resolve(), out.resolve())
    else:
        lm_summary = pretrain_lm(corpus, out / "lm", cfg.lm, log=lambda line: log(json.loads(line)))
        lm_path = "lm"
        log({"stage": "lm", "done": lm_summary})
    lm, tokenizer = load_lm(out / lm_path)
    model = SignTranslator(lm, tokenizer, cfg.encoder, cfg.decoder)
    train_ex = load_examples(corpus, languages, "train", cfg.data.train_per_language, cfg.data.max_frames)
    dev_ex = spread(load_examples(corpus, languages, "dev"), cfg.train.eval_items)
    summary: dict = {"train_examples": len(train_ex)}
    state: dict = {"lm_path": lm_path, "summary": summary}
    if ckpt_state:
        model.load_state_dict(ckpt_state["model"], strict=False)
        torch.set_rng_state(ckpt_state["torch_rng"])
        summary |= ckpt_state["summary"]
        state |= {k: ckpt_state[k] for k in STAGE_KEYS if k in ckpt_state}
    else:
        if cfg.train.init:
            init_from_judge(model, Path(cfg.train.init))
        log({"stage": "data", "train": len(train_ex), "dev_eval": len(dev_ex), "languages": languages,
             "init": cfg.train.init})
    ckpt = Checkpointer(out, cfg.train.checkpoint_every, cfg.train.checkpoint_minutes,
                        common=lambda: {"spent": elapsed(), "summary": summary})
    if cfg.pretrain.enabled and state.get("stage", "pseudogloss") == "pseudogloss":
        summary["pretrain"] = pretrain_encoder(model, train_ex, spoken, cfg, ckpt, state, log)
        state = {k: v for k, v in state.items() if k not in STAGE_KEYS}
    summary["translate"] = train_translation(model, train_ex, cfg, ckpt, state, log)
    summary |= {"cpu_seconds": elapsed()["cpu_s"], "wall_seconds": elapsed()["wall_s"]}
    save_judge(out, model, lm_path, {language_marker(k): v for k, v in spoken.items() if k in languages},
               {"trained_on": {"corpus": str(corpus), "languages": languages, "summary": summary}})
    judge = load_judge(out)  # score what was saved (float16 weights), not what is in memory
    summary["dev"] = evaluate_examples(judge, dev_ex)
    log({"stage": "done", "summary": summary})
    log_file.close()
    ckpt.path.unlink(missing_ok=True)  # the judge is complete; its training state is not part of it
    return summary
