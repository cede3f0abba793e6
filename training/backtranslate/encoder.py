"""The sign encoder: a per-frame pose embedding (our stand-in for Sign2GPT's spatial backbone,
since our input is 50-joint poses, not video), then transformer stages with local self-attention
(each frame sees a window of 7 frames) and a temporal downsampling (conv, kernel 3, stride 2)
between stages."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from engines.model import NEG, sinusoid
from engines.skeleton import FRAME_VALUES, LEFT_HAND_SLICE, NUM_JOINTS, RIGHT_HAND_SLICE

POSE_FEATURES = FRAME_VALUES + 2 * (RIGHT_HAND_SLICE.stop - RIGHT_HAND_SLICE.start) * 3 + NUM_JOINTS
# Canonical coordinates are soft-clipped to ±POSITION_CLIP shoulder widths: some recordings (gss)
# put the hand up to 26 shoulder widths away, which would swamp the embedding's first layer.
POSITION_CLIP = 3.0


@dataclass
class EncoderConfig:
    d_model: int = 128
    n_heads: int = 4
    stages: list[int] | None = None  # layers per stage; a downsampling sits between stages
    window: int = 7  # local attention: a frame attends to frames within ±window//2
    d_ff: int = 256
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.stages = list(self.stages or [2, 2])
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"window must be a positive odd number, got {self.window}")
        if not self.stages or min(self.stages) < 1:
            raise ValueError(f"stages must be a non-empty list of positive layer counts, got {self.stages}")


def pose_features(frames: Tensor, confidence: Tensor) -> Tensor:
    """(B, T, 50, 3), (B, T, 50) → (B, T, POSE_FEATURES).

    Soft-clipped canonical coordinates, plus each hand relative to its own wrist and divided by
    its own size (fingerspelling is read from handshape, which the body-centred coordinates bury
    under arm motion, and hand sizes differ between recordings), plus confidence so a missing
    point (zeros) is not mistaken for a point at the neck.
    """
    if frames.ndim != 4 or frames.shape[2:] != (NUM_JOINTS, 3):
        raise ValueError(f"frames must be (batch, time, {NUM_JOINTS}, 3), got {tuple(frames.shape)}")
    if confidence.shape != frames.shape[:3]:
        raise ValueError(f"confidence must be {tuple(frames.shape[:3])}, got {tuple(confidence.shape)}")
    hands = []
    for hand in (LEFT_HAND_SLICE, RIGHT_HAND_SLICE):
        pts = frames[:, :, hand]
        seen = confidence[:, :, hand, None] > 0
        rel = pts - pts[:, :, :1]
        size = rel[:, :, 1:].norm(dim=-1).mean(-1)[..., None, None].clamp(min=1e-3)
        hands.append(torch.where(seen, rel / size, 0.0).flatten(2))
    body = POSITION_CLIP * torch.tanh(frames / POSITION_CLIP)
    return torch.cat([body.flatten(2), *hands, confidence], dim=-1)


def local_attention_mask(length: int, window: int, device: torch.device | None = None) -> Tensor:
    """(T, T) bool, True where query i may attend key j: |i − j| ≤ window // 2."""
    idx = torch.arange(length, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= window // 2


def downsampled_lengths(lengths: Tensor) -> Tensor:
    """Valid lengths after a kernel-3, stride-2, padding-1 convolution: ceil(L / 2)."""
    return (lengths + 1) // 2


def padding_mask(lengths: Tensor, length: int) -> Tensor:
    """(B, T) bool, True at padding."""
    return torch.arange(length, device=lengths.device)[None, :] >= lengths[:, None]


class LocalSelfAttentionLayer(nn.Module):
    """Pre-norm transformer layer whose attention is restricted to a local window."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.n_heads, self.window, self.dropout = cfg.n_heads, cfg.window, cfg.dropout
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.d_ff, cfg.d_model))

    def forward(self, x: Tensor, pad: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        allowed = local_attention_mask(t, self.window, x.device)[None] & ~pad[:, None, :]
        # Additive finite mask: a padded query whose whole window is padding stays NaN-free.
        bias = torch.where(allowed, 0.0, NEG)[:, None]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.norm2(x))


class SignEncoder(nn.Module):
    """Pose frames → sign features (B, T', d) and their padding mask, T' = T / 2^(stages − 1)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        # LayerNorm: the embedding enters at unit scale, so the position code added next cannot drown it.
        self.embed = nn.Sequential(nn.Linear(POSE_FEATURES, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d))
        self.stages = nn.ModuleList(nn.ModuleList(LocalSelfAttentionLayer(cfg) for _ in range(n)) for n in cfg.stages)
        self.downsample = nn.ModuleList(nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
                                         for _ in range(len(cfg.stages) - 1))
        self.norm = nn.LayerNorm(d)

    def forward(self, frames: Tensor, confidence: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if lengths.ndim != 1 or len(lengths) != len(frames):
            raise ValueError(f"lengths must be (batch,) = ({len(frames)},), got {tuple(lengths.shape)}")
        if (lengths < 1).any() or (lengths > frames.shape[1]).any():
            raise ValueError(f"lengths must lie in 1..{frames.shape[1]}, got {lengths.tolist()}")
        x = self.embed(pose_features(frames, confidence))
        x = x + sinusoid(torch.arange(x.shape[1], device=x.device), x.shape[-1])
        for i, layers in enumerate(self.stages):
            if i:
                x = self.downsample[i - 1](x.transpose(1, 2)).transpose(1, 2)
                lengths = downsampled_lengths(lengths)
            pad = padding_mask(lengths, x.shape[1])
            x = x.masked_fill(pad[..., None], 0.0)  # padding must not leak into the next convolution
            for layer in layers:
                x = layer(x, pad)
        return self.norm(x), pad
