"""SignLLM: gloss tokens → pose frames, one readable definition (torch lives here and in export).

Progressive-Transformers shape: a transformer encoder over gloss tokens and an autoregressive
decoder that emits one frame a step, 150 joint values plus a progress counter running 0 → 1;
generation stops when the model's own counter reaches 1 (or at a maximum length).

MLSF (Multi-Language Switching Framework). Each sign language has its own encoder–decoder group,
switched by the language id. What a group owns and what all groups share:
  per language: the feed-forward block of every encoder and decoder layer (weights stacked
      (L, ...) and gathered by a language-id tensor, so one batch — and one exported graph —
      can mix languages);
  shared: the tokenizer and token embedding (one vocabulary, the gloss carries a language
      marker), attention (how to read a spelling and keep one's place in it is not
      language-specific), layer norms, pose normalisation, pose input projection and pose head.
With `mlsf = False` there is one group: the Progressive-Transformers-style shared baseline.

Monotonic reading. Fingerspelling is letter after letter, so the decoder carries a read position
kappa (in tokens) that only moves forward: after the first decoder layer a step predicts an
increment softplus(w·h) ≥ 0, and every later layer's cross-attention adds a location bias
-(n - kappa)² / (2 σ_h²) (learned width per head) to its content logits. This is what lets the
model spell words it never saw: the alignment does not depend on the word.

Future prediction (FP): each step predicts the next `future` frames. At inference a frame is the
mean of every prediction made of it (at most `future`, from the steps t−future+1 … t): the cache
carries `ahead`, the running sums of the predictions earlier steps made of the coming frames. Same
model, same cost a step; on held-out words DTW-MJE 3.52 → 2.84 and back-translation CER 14.65 →
14.00 % for the committed continuation (issue 19, docs/model-card.md).

Incremental decoding is first-class: `step` takes and returns an explicit self-attention K/V
cache, kappa and `ahead`, and never recomputes the past; `forward` (teacher forcing) computes the same
numbers for a whole sequence at once. Real inference (`generate`) uses `step` only.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engines.counter import reached_end
from engines.manifest import NEG
from engines.skeleton import FRAME_VALUES, STEP_VALUES


@dataclass
class ModelConfig:
    vocab_size: int
    languages: list[str]
    d_model: int = 128
    n_heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 3
    d_ff: int = 256
    mlsf: bool = True  # one feed-forward group per language; False: one shared group
    future: int = 1  # frames predicted a step (future prediction, FP); at inference see fp_ensemble
    dropout: float = 0.1
    pad_id: int = 0
    # FP ensembling at inference: frame t is the mean of the predictions of it made at steps
    # t−future+1 … t (the counter stays the step's own). False: the first prediction only (the rule
    # before the fifth session; set it in an old model.json to reproduce that session's figures).
    fp_ensemble: bool = True

    @property
    def groups(self) -> int:
        return len(self.languages) if self.mlsf else 1

    def check(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.dec_layers < 2:
            raise ValueError("dec_layers must be ≥ 2 (the first layer drives the read position)")
        if not self.languages:
            raise ValueError("a model needs at least one language")
        if self.future < 1:
            raise ValueError("future must be ≥ 1")


def sinusoid(pos: Tensor, dim: int) -> Tensor:
    """Sinusoidal position code of positions `pos` (any shape) → (*pos.shape, dim)."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32, device=pos.device) * (-math.log(10000.0) / half))
    angle = pos.to(torch.float32).unsqueeze(-1) * freq
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class GroupFeedForward(nn.Module):
    """Feed-forward block with one weight set per group, gathered by group id (exportable)."""

    def __init__(self, groups: int, d: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(groups, d, d_ff) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(groups, 1, d_ff))
        self.w2 = nn.Parameter(torch.randn(groups, d_ff, d) / math.sqrt(d_ff))
        self.b2 = nn.Parameter(torch.zeros(groups, 1, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, group: Tensor) -> Tensor:  # x (B, T, d), group (B,)
        h = F.gelu(torch.bmm(x, self.w1[group]) + self.b1[group])
        return self.drop(torch.bmm(self.drop(h), self.w2[group]) + self.b2[group])


class Attention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.h, self.dh = n_heads, d // n_heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def heads(self, x: Tensor) -> Tensor:  # (B, T, d) → (B, H, T, dh)
        return x.view(x.shape[0], x.shape[1], self.h, self.dh).transpose(1, 2)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def attend(self, x: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        """Queries from x (B, Tq, d) over k, v (B, H, Tk, dh); bias (B or 1, H or 1, Tq, Tk) additive."""
        q = self.heads(self.q(x))
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + bias
        w = self.drop(torch.softmax(logits, dim=-1))
        out = (w @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], self.h * self.dh)
        return self.o(out)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.att = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ff = GroupFeedForward(cfg.groups, cfg.d_model, cfg.d_ff, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, bias: Tensor, group: Tensor) -> Tensor:
        h = self.ln1(x)
        k, v = self.att.keys_values(h)
        x = x + self.drop(self.att.attend(h, k, v, bias))
        return x + self.ff(self.ln2(x), group)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, located: bool) -> None:
        super().__init__()
        d = cfg.d_model
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_att = Attention(d, cfg.n_heads, cfg.dropout)
        self.cross = Attention(d, cfg.n_heads, cfg.dropout)
        self.ff = GroupFeedForward(cfg.groups, d, cfg.d_ff, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.located = located
        if located:
            # Window widths 1, 2, 4, 8 tokens at the start: narrow heads read a letter, wide ones its context.
            self.log_sigma = nn.Parameter(torch.log(2.0 ** torch.arange(cfg.n_heads, dtype=torch.float32)))

    def location_bias(self, kappa: Tensor, n_tokens: int) -> Tensor:
        """kappa (B, T) → (B, H, T, N): -(n - kappa)² / (2 σ_h²)."""
        n = torch.arange(n_tokens, dtype=torch.float32, device=kappa.device)
        dist2 = (n.view(1, 1, 1, -1) - kappa.unsqueeze(1).unsqueeze(-1)) ** 2
        return -dist2 / (2 * torch.exp(2 * self.log_sigma).view(1, -1, 1, 1))

    def forward(self, x: Tensor, self_k: Tensor, self_v: Tensor, self_bias: Tensor,
                cross_k: Tensor, cross_v: Tensor, cross_bias: Tensor, kappa: Tensor | None, group: Tensor) -> Tensor:
        """self_k/v: keys/values of this layer's self-attention for every visible frame (cache + new)."""
        x = x + self.drop(self.self_att.attend(self.ln1(x), self_k, self_v, self_bias))
        bias = cross_bias
        if self.located:
            bias = bias + self.location_bias(kappa, cross_k.shape[2])
        x = x + self.drop(self.cross.attend(self.ln2(x), cross_k, cross_v, bias))
        return x + self.ff(self.ln3(x), group)


@dataclass
class Memory:
    """What the encoder hands the decoder: per-layer cross-attention keys/values and the mask."""

    cross_k: Tensor  # (Ld, B, H, N, dh)
    cross_v: Tensor
    bias: Tensor  # (B, 1, 1, N) additive: 0 for tokens, NEG for padding
    n_tokens: Tensor  # (B,) float
    group: Tensor  # (B,) long: the language index of each item (MLSF groups and pose statistics are gathered by it)


@dataclass
class Cache:
    """Decoder state between steps: self-attention keys/values of the past frames, and kappa."""

    k: Tensor  # (Ld, B, H, T, dh)
    v: Tensor
    bias: Tensor  # (B, 1, 1, T) additive: NEG marks cache slots a stream does not have
    kappa: Tensor  # (B,)
    pos: Tensor  # (B,) long: frames emitted so far
    # (B, A, 151) canonical, A = max(future − 1, 1): ahead[:, j] sums the predictions earlier steps
    # made of frame pos + j (FP ensembling; zeros when the model predicts one frame).
    ahead: Tensor


class SignLLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.check()
        self.cfg = cfg
        d = cfg.d_model
        self.tok = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_id)
        self.enc = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.enc_ln = nn.LayerNorm(d)
        self.pose_in = nn.Linear(STEP_VALUES, d)
        self.dec = nn.ModuleList(DecoderLayer(cfg, located=i > 0) for i in range(cfg.dec_layers))
        self.advance = nn.Linear(d, 1)  # read-position increment, from the first decoder layer
        self.where = nn.Linear(1, d)  # tells later layers kappa / (number of tokens)
        # Where reading starts: the first letter follows the language marker and "FS:" (learned).
        self.kappa0 = nn.Parameter(torch.tensor(3.0))
        self.dec_ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, STEP_VALUES * cfg.future)
        # Poses are normalised per language and value (statistics of the training data; languages'
        # recordings differ in scale, and one language's spread must not drown another's detail).
        # The counter is not normalised.
        self.register_buffer("pose_mean", torch.zeros(len(cfg.languages), FRAME_VALUES))
        self.register_buffer("pose_std", torch.ones(len(cfg.languages), FRAME_VALUES))
        with torch.no_grad():
            self.advance.weight.mul_(0.1)
            # ≈ 2 tokens (letter + '-') per ~14 frames: softplus(b) ≈ 0.14.
            self.advance.bias.fill_(math.log(math.expm1(0.14)))

    # --- normalisation --------------------------------------------------------------------

    def pose_stats(self, lang: Tensor, ndim: int) -> tuple[Tensor, Tensor]:
        """Mean and std of each item's language, shaped to broadcast over (B, [T,] 150)."""
        shape = (lang.shape[0],) + (1,) * (ndim - 2) + (FRAME_VALUES,)
        return self.pose_mean[lang].view(shape), self.pose_std[lang].view(shape)

    def normalise(self, x: Tensor, lang: Tensor) -> Tensor:
        """(B, [T,] 151) canonical + counter → model space."""
        mean, std = self.pose_stats(lang, x.ndim)
        return torch.cat([(x[..., :FRAME_VALUES] - mean) / std, x[..., FRAME_VALUES:]], dim=-1)

    def denormalise(self, y: Tensor, lang: Tensor) -> Tensor:
        mean, std = self.pose_stats(lang, y.ndim)
        return torch.cat([y[..., :FRAME_VALUES] * std + mean, y[..., FRAME_VALUES:]], dim=-1)

    def group_of(self, lang: Tensor) -> Tensor:
        return lang if self.cfg.mlsf else torch.zeros_like(lang)

    # --- encoder --------------------------------------------------------------------------

    def encode(self, tokens: Tensor, lang: Tensor) -> Memory:
        """tokens (B, N) long, padded with pad_id; lang (B,) long language index."""
        group = self.group_of(lang)
        pad = tokens == self.cfg.pad_id
        bias = torch.where(pad, NEG, 0.0).view(tokens.shape[0], 1, 1, -1)
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tok(tokens) + sinusoid(pos, self.cfg.d_model)
        for layer in self.enc:
            x = layer(x, bias, group)
        x = self.enc_ln(x)
        ks, vs = zip(*(layer.cross.keys_values(x) for layer in self.dec))
        return Memory(torch.stack(ks), torch.stack(vs), bias, (~pad).sum(1).to(torch.float32), lang)

    # --- decoder --------------------------------------------------------------------------

    def _decode(self, frames: Tensor, pos: Tensor, mem: Memory, past: Cache | None,
                causal: Tensor) -> tuple[Tensor, Cache]:
        """Decoder over new frames (B, T, 151) in model space at positions pos (B, T).

        `past` holds the earlier frames' keys/values; `causal` (T, T) is the additive mask among
        the new frames. Returns model-space outputs (B, T, 151·future) and the grown cache.
        """
        x = self.pose_in(frames) + sinusoid(pos, self.cfg.d_model)
        B, T = frames.shape[:2]
        past_bias = past.bias if past is not None else x.new_zeros(B, 1, 1, 0)
        self_bias = torch.cat([past_bias.expand(B, 1, T, -1), causal.view(1, 1, T, T).expand(B, 1, T, T)], dim=-1)
        new_k, new_v, kappa = [], [], None
        group = self.group_of(mem.group)
        for i, layer in enumerate(self.dec):
            if i == 1:
                # Read position: a non-negative increment a frame, summed over the sequence.
                start = past.kappa if past is not None else self.kappa0.expand(B)
                kappa = start.unsqueeze(1) + torch.cumsum(F.softplus(self.advance(x)).squeeze(-1), dim=1)
                x = x + self.where((kappa / mem.n_tokens.unsqueeze(1)).unsqueeze(-1))
            k, v = layer.self_att.keys_values(layer.ln1(x))
            if past is not None:
                k, v = torch.cat([past.k[i], k], dim=2), torch.cat([past.v[i], v], dim=2)
            new_k.append(k)
            new_v.append(v)
            x = layer(x, k, v, self_bias, mem.cross_k[i], mem.cross_v[i], mem.bias, kappa, group)
        out = self.head(self.dec_ln(x))
        ahead = past.ahead if past is not None else x.new_zeros(B, self.ahead_slots, STEP_VALUES)
        cache = Cache(torch.stack(new_k), torch.stack(new_v),
                      torch.cat([past_bias, x.new_zeros(B, 1, 1, T)], dim=-1), kappa[:, -1], pos[:, -1] + 1, ahead)
        return out, cache

    def forward(self, tokens: Tensor, lang: Tensor, frames_in: Tensor) -> Tensor:
        """Teacher forcing: frames_in (B, T, 151) canonical (BOS first) → predictions (B, T, future, 151)
        in model space (normalised poses, raw counter), where the losses are computed."""
        mem = self.encode(tokens, lang)
        T = frames_in.shape[1]
        causal = torch.triu(frames_in.new_full((T, T), NEG), diagonal=1)
        pos = torch.arange(T, device=frames_in.device).expand(frames_in.shape[0], T)
        out, _ = self._decode(self.normalise(frames_in, lang), pos, mem, None, causal)
        return out.view(*out.shape[:2], self.cfg.future, STEP_VALUES)

    def start(self, mem: Memory) -> Cache:
        """An empty cache for a batch of new units."""
        B = mem.group.shape[0]
        L, H, dh = self.cfg.dec_layers, self.cfg.n_heads, self.cfg.d_model // self.cfg.n_heads
        empty = mem.cross_k.new_zeros(L, B, H, 0, dh)
        return Cache(empty, empty.clone(), mem.cross_k.new_zeros(B, 1, 1, 0), self.kappa0.detach().expand(B).clone(),
                     torch.zeros(B, dtype=torch.long, device=mem.group.device),
                     mem.cross_k.new_zeros(B, self.ahead_slots, STEP_VALUES))

    @property
    def ahead_slots(self) -> int:
        """Frames beyond the current one whose earlier predictions the cache sums (at least 1 slot,
        so the graphs' I/O does not depend on `future`)."""
        return max(self.cfg.future - 1, 1)

    def step(self, frame: Tensor, mem: Memory, cache: Cache) -> tuple[Tensor, Cache]:
        """One decoder step: the previous frame (B, 151) canonical → the next frame (B, 151) canonical
        (with FP ensembling, the mean of this step's prediction and the earlier ones of that frame)."""
        t = cache.pos  # the index of the frame this step emits
        out, cache = self._decode(self.normalise(frame, mem.group).unsqueeze(1), t.unsqueeze(1), mem, cache,
                                  frame.new_zeros(1, 1))
        F_ = self.cfg.future
        if F_ == 1 or not self.cfg.fp_ensemble:
            return self.denormalise(out[:, 0, :STEP_VALUES], mem.group), cache
        preds = self.denormalise(out[:, 0].view(-1, F_, STEP_VALUES), mem.group)  # frames t … t+F−1
        earlier = torch.clamp(t, max=F_ - 1).to(preds.dtype).unsqueeze(1)  # predictions of frame t made before
        mean = (preds[:, 0] + cache.ahead[:, 0]) / (1.0 + earlier)
        # The counter stays this step's own: the stopping rule reads the model's latest estimate.
        frame = torch.cat([mean[:, :FRAME_VALUES], preds[:, 0, FRAME_VALUES:]], dim=-1)
        cache.ahead = torch.cat([cache.ahead[:, 1:], torch.zeros_like(cache.ahead[:, :1])], dim=1) + preds[:, 1:]
        return frame, cache

    @staticmethod
    def bos(batch: int, device: torch.device | None = None) -> Tensor:
        """The first decoder input: the origin pose with counter 0 (as Progressive Transformers)."""
        return torch.zeros(batch, STEP_VALUES, device=device)

    @torch.no_grad()
    def generate(self, tokens: Tensor, lang: Tensor, max_frames: int = 400,
                 noise_std: float = 0.0) -> list[Tensor]:
        """Real inference: feed back own frames and own counter; each item stops when its
        counter reaches 1 (engines.counter.reached_end) or at max_frames. Returns one (T_i, 151) canonical tensor per item.

        noise_std > 0 samples from the Gaussian pose policy (std in model space) instead of
        taking its mean; this is the RL rollout.
        """
        mem = self.encode(tokens, lang)
        cache = self.start(mem)
        B = tokens.shape[0]
        frame = self.bos(B, tokens.device)
        outs: list[Tensor] = []
        length = torch.full((B,), max_frames, dtype=torch.long, device=tokens.device)
        done = torch.zeros(B, dtype=torch.bool, device=tokens.device)
        for t in range(max_frames):
            previous = frame[:, FRAME_VALUES]
            frame, cache = self.step(frame, mem, cache)
            if noise_std > 0:
                noise = torch.randn_like(frame) * noise_std
                noise[:, :FRAME_VALUES] *= self.pose_std[lang]
                frame = frame + noise
            outs.append(frame)
            stop = reached_end(frame[:, FRAME_VALUES], previous) & ~done
            length[stop] = t + 1
            done |= stop
            if bool(done.all()):
                break
        seq = torch.stack(outs, dim=1)
        return [seq[i, : int(length[i])] for i in range(B)]


# --- checkpoints ----------------------------------------------------------------------------

WEIGHTS = "model.safetensors"
CONFIG = "model.json"


def save_model(folder: str | Path, model: SignLLM, half: bool = False) -> None:
    """Weights as safetensors (fp16 storage if `half`) and the model config as JSON."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(asdict(model.cfg), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_model(folder: str | Path) -> SignLLM:
    """Rebuild a model from `model.json` and `model.safetensors` (fp16 storage is widened to fp32)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        raw = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder}: no {CONFIG} (not a SignLLM checkpoint folder)") from None
    known = {f.name for f in fields(ModelConfig)}
    model = SignLLM(ModelConfig(**{k: v for k, v in raw.items() if k in known}))
    state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS)).items()}
    model.load_state_dict(state)
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


