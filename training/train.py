"""The training loop: a TOML config → a SignLLM checkpoint, with dev DTW, checkpoints and resume.

Loss = regression (MSE in model space over the 150 pose values, plus the counter) over every
frame the step predicts (one, or `future` with future prediction), optionally importance-weighted
by the priority channel, plus λ_RL · the RL loss (see training/plc.py for the formulas).
Gaussian noise (GN) is added to the decoder's input frames; the model never sees it at inference.

A run folder holds `config.toml` (a copy), `train.log`, `log.jsonl` (one JSON record per log
line: step, CPU and wall seconds, losses, dev DTW), `last/` and `best/` (model.safetensors,
model.json, tokenizer.model) and `state.pt` (optimiser, priority channel, RNGs) for resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engines.formats.prompt2sign import read_split
from engines.langgloss import split_gloss
from engines.model import ModelConfig, SignLLM, count_parameters, load_model, save_model
from engines.sequence import PoseSequence
from engines.skeleton import FRAME_VALUES, LEFT_HAND, NUM_HAND, NUM_JOINTS, RIGHT_HAND, STEP_VALUES
from engines.tokenizer import Tokenizer
from engines.typed_config import ConfigError, load_toml
from training.dtw import dtw_mje
from training.plc import PriorityChannel, keypoint_quality, rloo_advantages

# --- config ---------------------------------------------------------------------------------


@dataclass
class DataSection:
    corpus: str = "data/corpus"
    languages: list[str] = field(default_factory=list)  # empty: every language of the corpus
    max_train_frames: int = 300  # longer training sequences are skipped
    fps: float = 25.0
    skels_scale: float = 1.0  # .skels units × scale = canonical units (Prompt2Sign: 9, Progressive Transformers: 3)


@dataclass
class ModelSection:
    d_model: int = 128
    n_heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 3
    d_ff: int = 256
    mlsf: bool = True
    dropout: float = 0.0  # off by default: it costs a fifth of a CPU step, and GN regularises
    tokenizer: str = "char"  # SentencePiece model type: char or unigram


@dataclass
class TrainSection:
    seed: int = 0
    threads: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_steps: int = 1_000_000
    budget_cpu_minutes: float = 0.0  # stop after this much process CPU time (0: no limit)
    # Stop after this much wall time of training steps (0: no limit); on a GPU, where process CPU time
    # says little, use this one. With both set, the first reached stops the run and shapes the schedule.
    budget_wall_minutes: float = 0.0
    device: str = "cpu"  # torch device for training ("cuda", "cuda:1"); checkpoints are saved for the CPU
    counter_weight: float = 1.0
    # Extra loss on handshape: each hand's points relative to its own wrist point, so a finger's
    # error is not hidden by the arm's (fingerspelling errors are mostly wrong handshapes). 0: off.
    handshape_weight: float = 0.0
    # A hand point missing (all zero, the .skels policy) from a hand that is otherwise seen is a tracking
    # hole, not a place: left out of the loss instead of teaching fingers to fly to the neck (gss: 11 %
    # of its hand frames). A hand missing whole stays a target (the model learns to leave it out).
    mask_hand_holes: bool = False
    log_every: int = 25
    eval_every: int = 250
    eval_items: int = 100  # dev sequences decoded for the periodic dev DTW
    max_frames: int = 400  # generation cap at evaluation
    target_dev_dtw: float = 0.0  # log when dev DTW first reaches this (PLC ablation); 0: off
    # A checkpoint folder to start from (its weights and tokenizer; [model] and augment.future are
    # taken from it), with the per-language pose normalisation refitted to this corpus. Empty: from scratch.
    init: str = ""


@dataclass
class AugmentSection:
    future: int = 1  # FP: frames predicted a step (1 = off)
    gaussian_noise: float = 0.0  # GN: input noise std, in units of each value's data std
    # Self-feeding (scheduled sampling, two-pass): this share of the decoder's input frames is the
    # model's own one-step prediction of that frame instead of the recording's (0 = off).
    self_feed: float = 0.0


@dataclass
class PLCSection:
    enabled: bool = False
    alpha: float = 0.6
    beta: float = 0.4
    quality_power: float = 1.0
    ema: float = 0.5


@dataclass
class RLSection:
    enabled: bool = False
    reward: str = "dtw"  # dtw: −DTW-MJE against the reference; reader: the reward judge's log-likelihood of the word
    judge: str = ""  # the reward judge folder (reward = "reader"); never the evaluation judge
    weight: float = 0.1
    every: int = 4  # an RL update every N steps
    prompts: int = 4
    samples: int = 2  # rollouts per prompt (≥ 2: leave-one-out baseline)
    policy_std: float = 0.1  # Gaussian policy std in model space
    start_step: int = 0


@dataclass
class TrainConfig:
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    plc: PLCSection = field(default_factory=PLCSection)
    rl: RLSection = field(default_factory=RLSection)


def load_train_config(path: str | Path) -> TrainConfig:
    """Load and validate a training config; errors name the file and the key."""
    path = Path(path)
    cfg = load_toml(TrainConfig, path)
    problems = []
    if cfg.model.d_model % cfg.model.n_heads:
        problems.append(f"'model.d_model' ({cfg.model.d_model}) must be a multiple of 'model.n_heads' ({cfg.model.n_heads})")
    if cfg.model.dec_layers < 2:
        problems.append("'model.dec_layers' must be at least 2")
    if cfg.model.tokenizer not in ("char", "unigram"):
        problems.append(f"'model.tokenizer' must be 'char' or 'unigram', got {cfg.model.tokenizer!r}")
    if cfg.augment.future < 1:
        problems.append("'augment.future' must be at least 1")
    if not 0.0 <= cfg.augment.self_feed <= 1.0:
        problems.append(f"'augment.self_feed' must be between 0 and 1, got {cfg.augment.self_feed}")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", cfg.train.device):
        problems.append(f"'train.device' must be 'cpu' or 'cuda[:N]', got {cfg.train.device!r}")
    if cfg.train.handshape_weight < 0:
        problems.append(f"'train.handshape_weight' must not be negative, got {cfg.train.handshape_weight}")
    if cfg.rl.enabled and cfg.rl.samples < 2:
        problems.append("'rl.samples' must be at least 2 (leave-one-out baseline)")
    if cfg.rl.reward not in ("dtw", "reader"):
        problems.append(f"'rl.reward' must be 'dtw' or 'reader', got {cfg.rl.reward!r}")
    if cfg.rl.enabled and cfg.rl.reward == "reader" and not cfg.rl.judge:
        problems.append("'rl.judge' must name the reward judge folder when 'rl.reward' is 'reader'")
    for key, value in (("train.batch_size", cfg.train.batch_size), ("train.lr", cfg.train.lr),
                       ("train.threads", cfg.train.threads), ("train.eval_every", cfg.train.eval_every)):
        if value <= 0:
            problems.append(f"'{key}' must be positive, got {value}")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return cfg


# --- data -----------------------------------------------------------------------------------


@dataclass
class Example:
    language: str
    text: str
    gloss: str
    steps: np.ndarray  # (T, 151): 150 canonical values + counter, float32


def corpus_languages(corpus: Path, wanted: list[str]) -> list[str]:
    manifest = corpus / "manifest.json"
    if manifest.exists():
        found = list(json.loads(manifest.read_text(encoding="utf-8"))["languages"])
    else:
        found = sorted(p.name for p in corpus.iterdir() if (p / "train.skels").exists())
    if not found:
        raise ConfigError(f"{corpus}: no language folders with train.skels (build one: signstream data build)")
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ConfigError(f"{corpus}: languages {missing} are not in the corpus (it has {found})")
    return [lang for lang in found if not wanted or lang in wanted]


def load_split(corpus: Path, languages: list[str], split: str, fps: float = 25.0,
               cache: Path | None = None, scale: float = 1.0) -> list[Example]:
    """Read one split of every language; parsed arrays are cached (keyed by file size and mtime)."""
    out: list[Example] = []
    for lang in languages:
        folder = corpus / lang
        skels = folder / f"{split}.skels"
        cached = None
        if cache is not None and skels.exists():
            st = skels.stat()
            key = hashlib.sha1(f"{skels.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{scale}".encode()).hexdigest()[:16]
            cached = cache / f"{lang}-{split}-{key}.npz"
        if cached is not None and cached.exists():
            with np.load(cached, allow_pickle=False) as z:  # each z[key] reads the file again: once each
                steps, lengths, texts, glosses = z["steps"], z["lengths"], z["text"].tolist(), z["gloss"].tolist()
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            out += [Example(lang, t, g, steps[a:b]) for t, g, a, b in zip(texts, glosses, bounds[:-1], bounds[1:])]
            continue
        examples = []
        for r in read_split(folder, split, fps=fps, scale=scale):
            seq = r.sequence
            counter = (np.arange(1, len(seq) + 1) / len(seq)).astype(np.float32)
            steps = np.concatenate([seq.frames.reshape(len(seq), FRAME_VALUES), counter[:, None]], axis=1)
            examples.append(Example(lang, r.text, r.gloss, steps.astype(np.float32)))
        if cached is not None and examples:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f"{cached.stem}.{os.getpid()}.npz")  # runs in parallel share the cache
            np.savez(partial, steps=np.concatenate([e.steps for e in examples]),
                     lengths=np.array([len(e.steps) for e in examples]),
                     text=np.array([e.text for e in examples]), gloss=np.array([e.gloss for e in examples]))
            partial.replace(cached)
        out += examples
    return out


def pad_tokens(seqs: list[list[int]], pad: int = 0) -> torch.Tensor:
    n = max(1, max(len(s) for s in seqs))
    out = torch.full((len(seqs), n), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def pad_steps(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """→ (B, T, 151) zero-padded, and the (B, T) validity mask."""
    T = max(len(s) for s in seqs)
    out = np.zeros((len(seqs), T, STEP_VALUES), dtype=np.float32)
    mask = np.zeros((len(seqs), T), dtype=bool)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
        mask[i, : len(s)] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


def fit_normalisation(model: SignLLM, examples: list[Example]) -> None:
    """Per-language, per-value mean and std of the training poses (std floored: the neck is always 0)."""
    for i, lang in enumerate(model.cfg.languages):
        values = [e.steps[:, :FRAME_VALUES] for e in examples if e.language == lang]
        if not values:
            continue
        values = np.concatenate(values)
        with torch.no_grad():
            model.pose_mean[i] = torch.from_numpy(values.mean(0, dtype=np.float64))
            model.pose_std[i] = torch.from_numpy(np.maximum(values.std(0, dtype=np.float64), 0.05))


def teacher_inputs(model: SignLLM, targets: torch.Tensor) -> torch.Tensor:
    """Decoder inputs for targets (B, T, 151): BOS, then the targets shifted by one."""
    bos = model.bos(targets.shape[0], targets.device).unsqueeze(1)
    return torch.cat([bos, targets[:, :-1]], dim=1)


# --- losses ---------------------------------------------------------------------------------


def self_fed_inputs(model: SignLLM, tokens: torch.Tensor, lang: torch.Tensor, inputs: torch.Tensor,
                    share: float) -> torch.Tensor:
    """Teacher inputs with a random `share` of frames (never BOS) replaced by the model's own
    prediction of that frame from the true frames before it: what it will feed itself at inference.
    One extra forward pass without gradients (scheduled sampling for a parallel decoder)."""
    with torch.no_grad():
        own = model.denormalise(model(tokens, lang, inputs)[:, :, 0], lang)  # own[:, t] predicts frame t
    mixed = inputs.clone()
    pick = torch.rand(inputs.shape[:2], device=inputs.device) < share
    pick[:, 0] = False
    mixed[:, 1:][pick[:, 1:]] = own[:, :-1][pick[:, 1:]]
    return mixed


# Each hand's 21 points (its wrist point first) as indices into the 150 frame values, (2, 21, 3).
_HAND_VALUES = torch.tensor([[[3 * (start + p) + c for c in range(3)] for p in range(NUM_HAND)]
                             for start in (LEFT_HAND, RIGHT_HAND)])


def hand_holes(targets: torch.Tensor) -> torch.Tensor:
    """(B, T, 150) bool: the values of hand points missing from a hand seen in that frame (canonical
    targets, (B, T, 151); a missing point is exactly zero)."""
    hands = _HAND_VALUES.to(targets.device)
    missing = (targets[..., hands] == 0).all(-1)  # (B, T, 2, 21)
    holes = missing & ~missing.all(-1, keepdim=True)
    out = torch.zeros(targets.shape[:-1] + (FRAME_VALUES,), dtype=torch.bool, device=targets.device)
    out[..., hands.flatten()] = holes[..., None].expand(*holes.shape, 3).flatten(-3)
    return out


def handshape_error(model: SignLLM, lang: torch.Tensor, pred: torch.Tensor, targets: torch.Tensor,
                    holes: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error (B, T) of the hands' shapes: every hand point relative to its hand's wrist point,
    predicted (model space, (B, T, 151)) against the recording (canonical, (B, T, 151)), in canonical
    units divided by the language's std of that value, so it is on the regression loss's scale.
    With `holes` (hand_holes), a missing point, or every point of a hand whose wrist point is missing,
    is left out."""
    mean, std = model.pose_stats(lang, pred.ndim)
    pose = pred[..., :FRAME_VALUES] * std + mean
    hands = _HAND_VALUES.to(pred.device)
    rel_pred = pose[..., hands] - pose[..., hands[:, :1]]  # (B, T, 2, 21, 3)
    rel_goal = targets[..., hands] - targets[..., hands[:, :1]]
    err = ((rel_pred - rel_goal) / std[..., hands]).pow(2).mean(-1)  # (B, T, 2, 21)
    if holes is None:
        return err.mean((-1, -2))
    seen = ~holes[..., hands[..., 0]]
    seen = seen & seen[..., :1]
    return (err * seen).sum((-1, -2)) / seen.sum((-1, -2)).clamp(min=1)


def regression_loss(model: SignLLM, tokens: torch.Tensor, lang: torch.Tensor, targets: torch.Tensor,
                    mask: torch.Tensor, counter_weight: float, noise: float, self_feed: float = 0.0,
                    handshape_weight: float = 0.0, mask_hand_holes: bool = False) -> torch.Tensor:
    """Per-example MSE (B,) in model space over every predicted future frame (FP) with GN on inputs,
    optionally on partly self-fed inputs (`self_fed_inputs`), plus handshape_weight × `handshape_error`;
    with mask_hand_holes, the values of `hand_holes` are left out of both."""
    inputs = teacher_inputs(model, targets)
    if self_feed > 0:
        inputs = self_fed_inputs(model, tokens, lang, inputs, self_feed)
    if noise > 0:
        jitter = torch.randn_like(inputs[..., :FRAME_VALUES]) * noise * model.pose_stats(lang, 3)[1]
        inputs = torch.cat([inputs[..., :FRAME_VALUES] + jitter, inputs[..., FRAME_VALUES:]], dim=-1)
    pred = model(tokens, lang, inputs)  # (B, T, F, 151) model space
    goal = model.normalise(targets, lang)
    holes = hand_holes(targets) if mask_hand_holes else None
    total = targets.new_zeros(targets.shape[0])
    count = targets.new_zeros(targets.shape[0])
    for k in range(model.cfg.future):
        # Output k at step t predicts frame t + k.
        T = targets.shape[1] - k
        err = (pred[:, :T, k] - goal[:, k:]) ** 2
        if holes is None:
            pose_err = err[..., :FRAME_VALUES].mean(-1)
        else:
            seen = (~holes[:, k:]).float()
            pose_err = (err[..., :FRAME_VALUES] * seen).sum(-1) / seen.sum(-1).clamp(min=1)
        per_frame = pose_err + counter_weight * err[..., FRAME_VALUES]
        if handshape_weight > 0:
            per_frame = per_frame + handshape_weight * handshape_error(
                model, lang, pred[:, :T, k], targets[:, k:], None if holes is None else holes[:, k:])
        valid = mask[:, k:].float()
        total = total + (per_frame * valid).sum(1)
        count = count + valid.sum(1)
    return total / count.clamp(min=1)


# A reward scores each rollout (T_i, 151) canonical steps of the example it was sampled for.
Reward = Callable[[list[Example], list[np.ndarray]], np.ndarray]


def dtw_reward(examples: list[Example], rollouts: list[np.ndarray]) -> np.ndarray:
    """r = −DTW-MJE(reference, rollout)."""
    return np.array([-dtw_mje(e.steps, r) for e, r in zip(examples, rollouts)])


class ReaderReward:
    """r = (1/|y|) Σ_t log p_J(y_t | y_<t, rollout): how well the reward judge J reads the rollout
    as the example's word y (its letters and end of text). The judge is frozen."""

    def __init__(self, folder: str | Path) -> None:
        from training.backtranslate.judge import load_judge

        self.judge = load_judge(folder)
        for p in self.judge.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, examples: list[Example], rollouts: list[np.ndarray]) -> np.ndarray:
        from training.backtranslate.evaluate import without_collapsed_hands

        seqs = [without_collapsed_hands(PoseSequence(r[:, :FRAME_VALUES].reshape(-1, NUM_JOINTS, 3),
                                                     np.ones((len(r), NUM_JOINTS), np.float32), 25.0))
                for r in rollouts]
        T = max(len(q) for q in seqs)
        frames = torch.zeros(len(seqs), T, NUM_JOINTS, 3)
        conf = torch.zeros(len(seqs), T, NUM_JOINTS)
        for i, q in enumerate(seqs):
            frames[i, : len(q)] = torch.from_numpy(q.frames)
            conf[i, : len(q)] = torch.from_numpy(q.confidence)
        lengths = torch.tensor([len(q) for q in seqs])
        ll = self.judge.log_likelihood(frames, conf, lengths, [split_gloss(e.gloss)[0] for e in examples],
                                       [e.text for e in examples])
        return ll.numpy().astype(np.float64)


def rl_loss(model: SignLLM, tokens: torch.Tensor, lang: torch.Tensor, examples: list[Example],
            samples: int, policy_std: float, reward: Reward = dtw_reward) -> tuple[torch.Tensor, float]:
    """REINFORCE with a leave-one-out baseline on the Gaussian pose policy (`samples` rollouts of
    each example); `reward` scores each rollout. Returns the loss and the mean reward of the rollouts.
    """
    tok = tokens.repeat_interleave(samples, 0)
    lng = lang.repeat_interleave(samples, 0)
    was_training = model.training
    model.eval()
    cap = int(1.5 * max(len(e.steps) for e in examples)) + 10  # a training-time cap; inference knows no reference
    rollouts = model.generate(tok, lng, max_frames=cap, noise_std=policy_std)
    model.train(was_training)
    rollouts = [r.cpu() for r in rollouts]
    rewards = reward([examples[i // samples] for i in range(len(rollouts))], [r.numpy() for r in rollouts])
    adv = torch.from_numpy(rloo_advantages(rewards.reshape(-1, samples)).reshape(-1)).float().to(tokens.device)
    actions, mask = (t.to(tokens.device) for t in pad_steps([r.numpy() for r in rollouts]))
    pred = model(tok, lng, teacher_inputs(model, actions))[:, :, 0]
    # log π per value and per frame (up to a constant), so its scale does not grow with 151 values × T frames.
    logp = -((model.normalise(actions, lng) - pred) ** 2).mean(-1) / (2 * policy_std**2)
    logp = (logp * mask).sum(1) / mask.sum(1)
    return -(adv * logp).mean(), float(rewards.mean())


# --- evaluation during training -------------------------------------------------------------


def encode_batch(tokenizer: Tokenizer, languages: list[str], examples: list[Example],
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    tokens = pad_tokens([tokenizer.encode(e.gloss) for e in examples])
    lang = torch.tensor([languages.index(e.language) for e in examples], dtype=torch.long)
    return tokens.to(device), lang.to(device)


@torch.no_grad()
def decode(model: SignLLM, tokenizer: Tokenizer, languages: list[str], examples: list[Example],
           max_frames: int, batch: int = 64) -> list[np.ndarray]:
    """Real inference (own frames, own counter) for each example: (T_i, 151) canonical steps."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(examples), batch):
        part = examples[i : i + batch]
        tokens, lang = encode_batch(tokenizer, languages, part, next(model.parameters()).device)
        out += [hyp.cpu().numpy() for hyp in model.generate(tokens, lang, max_frames=max_frames)]
    model.train(was_training)
    return out


def decode_dtw(model: SignLLM, tokenizer: Tokenizer, languages: list[str], examples: list[Example],
               max_frames: int, batch: int = 64) -> list[float]:
    """DTW-MJE of real inference (own frames, own counter) against each example."""
    return [dtw_mje(e.steps, hyp) for e, hyp in zip(examples, decode(model, tokenizer, languages, examples, max_frames, batch))]


def spread_subset(examples: list[Example], n: int) -> list[Example]:
    """Up to n examples spread evenly over languages (a fixed dev subset)."""
    by_lang: dict[str, list[Example]] = {}
    for e in examples:
        by_lang.setdefault(e.language, []).append(e)
    out, i = [], 0
    while len(out) < n and any(i < len(v) for v in by_lang.values()):
        out += [v[i] for v in by_lang.values() if i < len(v)][: n - len(out)]
        i += 1
    return out


# --- the loop -------------------------------------------------------------------------------


def train(config_path: str | Path, out: str | Path, resume: bool = True, progress: bool = True) -> dict:
    """Train from a config into a run folder; returns the final summary (also in summary.json)."""
    cfg = load_train_config(config_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    resuming = resume and state_path.exists()
    if not resuming:
        shutil.copyfile(config_path, out / "config.toml")
    torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    log_file = open(out / "train.log", "a", encoding="utf-8")
    jsonl = open(out / "log.jsonl", "a", encoding="utf-8")

    def log(line: str, record: dict | None = None) -> None:
        log_file.write(line + "\n")
        log_file.flush()
        if record is not None:
            jsonl.write(json.dumps(record) + "\n")
            jsonl.flush()

    # Data, tokenizer, model.
    corpus = Path(cfg.data.corpus)
    languages = corpus_languages(corpus, cfg.data.languages)
    cache = out.parent / "cache"
    train_set = [e for e in load_split(corpus, languages, "train", cfg.data.fps, cache, cfg.data.skels_scale)
                 if len(e.steps) <= cfg.data.max_train_frames]
    for e in train_set:  # half the memory; batches are widened to float32
        e.steps = e.steps.astype(np.float16)
    dev_set = spread_subset(load_split(corpus, languages, "dev", cfg.data.fps, cache, cfg.data.skels_scale),
                            cfg.train.eval_items)
    if not train_set:
        raise ConfigError(f"{corpus}: the train split is empty")
    if resuming:
        tokenizer = Tokenizer.load(out / "last" / "tokenizer.model")
    elif cfg.train.init:
        tokenizer = Tokenizer.load(Path(cfg.train.init) / "tokenizer.model")
    else:
        tokenizer = Tokenizer.train((e.gloss for e in train_set), languages, model_type=cfg.model.tokenizer)
    if cfg.train.init:
        model = load_model(cfg.train.init)  # its architecture; its weights (replaced by state.pt on resume)
        if model.cfg.languages != languages:
            raise ConfigError(f"train.init: {cfg.train.init} was trained on languages {model.cfg.languages}, "
                              f"the corpus has {languages}")
    else:
        m = cfg.model
        model = SignLLM(ModelConfig(vocab_size=tokenizer.vocab_size, languages=languages, d_model=m.d_model,
                                    n_heads=m.n_heads, enc_layers=m.enc_layers, dec_layers=m.dec_layers, d_ff=m.d_ff,
                                    mlsf=m.mlsf, future=cfg.augment.future, dropout=m.dropout))
    fit_normalisation(model, train_set)
    device = torch.device(cfg.train.device)
    model.to(device).train()
    reward_fn: Reward = ReaderReward(cfg.rl.judge) if cfg.rl.enabled and cfg.rl.reward == "reader" else dtw_reward
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.startswith("tok.")]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.startswith("tok."))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.train.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=cfg.train.lr)
    quality = np.array([keypoint_quality(e.steps) for e in train_set])
    channel = PriorityChannel(quality, alpha=cfg.plc.alpha if cfg.plc.enabled else 0.0, beta=cfg.plc.beta if cfg.plc.enabled else 0.0,
                              quality_power=cfg.plc.quality_power, ema=cfg.plc.ema, seed=cfg.train.seed)
    step, cpu_used, wall_used = 0, 0.0, 0.0
    best, reached = float("inf"), None
    if resuming:
        state = torch.load(state_path, weights_only=False, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        channel.load_state(state["channel"])
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it with the rest
        step, cpu_used, wall_used = state["step"], state["cpu_s"], state["wall_s"]
        best, reached = state["best"], state["reached"]
        log(f"resumed at step {step}")
    else:
        log(f"languages {len(languages)}: {' '.join(languages)}; train {len(train_set)} sequences, dev subset {len(dev_set)}; "
            f"vocabulary {tokenizer.vocab_size}; parameters {count_parameters(model)}")

    def save(folder: str) -> None:
        save_model(out / folder, model)
        tokenizer.save(out / folder / "tokenizer.model")

    def checkpoint() -> None:
        save("last")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "channel": channel.state(), "torch_rng": torch.get_rng_state(), "step": step,
                    "cpu_s": cpu_used, "wall_s": wall_used, "best": best, "reached": reached}, out / "state.tmp")
        (out / "state.tmp").replace(state_path)

    # Budgets and "time to reach" count training steps only, not the periodic dev decoding.
    cpu_budget_s, wall_budget_s = cfg.train.budget_cpu_minutes * 60, cfg.train.budget_wall_minutes * 60

    def done_share() -> float:
        """How far through the run: the larger share of a set budget, else of max_steps."""
        shares = [used / budget for used, budget in ((cpu_used, cpu_budget_s), (wall_used, wall_budget_s)) if budget]
        return max(shares) if shares else step / cfg.train.max_steps

    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        bar.start()
        task = bar.add_task("", total=1.0)
    model.train()
    running, reward = [], None
    try:
        while step < cfg.train.max_steps and done_share() < 1.0:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            # Linear warm-up, then cosine decay to a tenth over the budget (CPU or wall time, else steps).
            done = done_share()
            lr = cfg.train.lr * min(1.0, (step + 1) / cfg.train.warmup_steps) * (0.1 + 0.45 * (1 + np.cos(np.pi * min(done, 1.0))))
            for group in opt.param_groups:
                group["lr"] = lr
            idx, weights = channel.sample(cfg.train.batch_size)
            batch = [train_set[i] for i in idx]
            tokens, lang = encode_batch(tokenizer, languages, batch, device)
            targets, mask = (t.to(device) for t in pad_steps([e.steps for e in batch]))
            per_example = regression_loss(model, tokens, lang, targets, mask, cfg.train.counter_weight,
                                          cfg.augment.gaussian_noise, cfg.augment.self_feed,
                                          cfg.train.handshape_weight, cfg.train.mask_hand_holes)
            loss = (per_example * torch.from_numpy(weights).to(device)).mean()
            if cfg.rl.enabled and step >= cfg.rl.start_step and step % cfg.rl.every == 0:
                k = min(cfg.rl.prompts, len(batch))
                rl, reward = rl_loss(model, tokens[:k], lang[:k], batch[:k], cfg.rl.samples, cfg.rl.policy_std,
                                     reward_fn)
                loss = loss + cfg.rl.weight * rl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            per_example = per_example.detach().cpu()  # (waits for the step on a GPU, so wall time is honest)
            channel.update(idx, per_example.numpy())
            step += 1
            cpu_used += time.process_time() - cpu0
            wall_used += time.perf_counter() - wall0
            running.append(float(per_example.mean()))
            record = None
            if step % cfg.train.log_every == 0:
                record = {"step": step, "cpu_s": round(cpu_used, 1), "wall_s": round(wall_used, 1),
                          "loss": float(np.mean(running)), "lr": opt.param_groups[0]["lr"]}
                if reward is not None:
                    record["rl_reward"] = reward
                running = []
            if step % cfg.train.eval_every == 0:
                dev = float(np.mean(decode_dtw(model, tokenizer, languages, dev_set, cfg.train.max_frames)))
                record = (record or {"step": step, "cpu_s": round(cpu_used, 1), "wall_s": round(wall_used, 1)}) | {"dev_dtw": dev}
                if dev < best:
                    best = dev
                    save("best")
                if cfg.train.target_dev_dtw and reached is None and dev <= cfg.train.target_dev_dtw:
                    reached = {"step": step, "cpu_s": round(cpu_used, 1), "wall_s": round(wall_used, 1)}
                    record["reached_target"] = reached
                checkpoint()
            if record is not None:
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()), record)
            if bar is not None:
                bar.update(task, completed=done_share(),
                           description=f"step {step} loss {running[-1] if running else 0:.4f} best dev DTW {best:.3f}")
    finally:
        if bar is not None:
            bar.stop()
    dev = float(np.mean(decode_dtw(model, tokenizer, languages, dev_set, cfg.train.max_frames)))
    if dev < best:
        best = dev
        save("best")
    checkpoint()
    summary = {"steps": step, "cpu_s": round(cpu_used, 1), "wall_s": round(wall_used, 1), "final_dev_dtw": dev,
               "best_dev_dtw": best, "reached_target": reached, "parameters": count_parameters(model),
               "config": asdict(cfg)}
    log(f"done: step {step}, final dev DTW {dev:.4f}, best {best:.4f}", {"summary": summary})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log_file.close()
    jsonl.close()
    return summary
