"""Priority Learning Channel (PLC): prioritized sampling of training examples, and the RL loss.

SignLLM gives no formula, only the aim: "accelerate the training by enhancing the model's
capability to sample high-quality data". Ours, after prioritized experience replay
(Schaul et al. 2016):

  priority   p_i = (ℓ_i + ε)^α · q_i^β_q
  sampling   P(i) = p_i / Σ_j p_j
  weight     w_i = (N · P(i))^(-β) / max_j (N · P(j))^(-β)   (importance correction, scales the loss)

ℓ_i is an exponential moving average of example i's recent training loss (examples not yet seen
take the largest known ℓ, so every example is visited early), q_i ∈ (0, 1] its data quality: the
fraction of the hand keypoints that are present in the frames where a hand is seen (keypoint
confidence, as the .skels policy marks missing points). High loss = still informative; low
quality = noisy target, sampled less. α = 0 gives uniform sampling (the channel is off).

RL loss (`rl_loss` in training/train.py): the decoder is a Gaussian policy π(a_t | s_t) = N(μ_t, σ²I) over
the next frame (model space). For a prompt, K rollouts a^(k) are sampled free-running (the model
feeds back its own sampled frames and counter), rewarded R_k = -DTW-MJE(a^(k), reference), and
compared with the leave-one-out baseline b_k = mean_{j≠k} R_j (RLOO). Then

  L_RL = -mean_k [ Â_k · (1/T_k) Σ_t (1/151) log π(a_t^(k) | a_<t^(k)) ],   Â = (R - b) / (std(R - b) + ε)

where log π is recomputed with gradients in one teacher-forced pass over the sampled sequence.
The total loss is L = L_MSE + λ_RL · L_RL.
"""

from __future__ import annotations

import numpy as np

# Hand keypoints of the .skels layout: a hand is "seen" in a frame if any of its points is.
from engines.skeleton import LEFT_HAND_SLICE, NUM_JOINTS, RIGHT_HAND_SLICE


def keypoint_quality(frames: np.ndarray) -> float:
    """Fraction of hand points present among the frames where that hand is seen; frames (T, 151+)."""
    pts = frames[:, : NUM_JOINTS * 3].reshape(len(frames), NUM_JOINTS, 3)
    present = np.abs(pts).sum(-1) > 0
    seen = total = 0
    for hand in (LEFT_HAND_SLICE, RIGHT_HAND_SLICE):
        h = present[:, hand]
        rows = h.any(axis=1)
        seen += int(h[rows].sum())
        total += int(rows.sum()) * h.shape[1]
    return seen / total if total else 0.0


class PriorityChannel:
    """Samples example indices by priority and learns each example's recent loss."""

    def __init__(self, quality: np.ndarray, alpha: float = 0.6, beta: float = 0.4, quality_power: float = 1.0,
                 eps: float = 1e-3, ema: float = 0.5, seed: int = 0) -> None:
        self.quality = np.clip(np.asarray(quality, dtype=np.float64), 1e-3, 1.0)
        self.loss = np.full(len(self.quality), np.nan)
        self.alpha, self.beta, self.quality_power, self.eps, self.ema = alpha, beta, quality_power, eps, ema
        self.rng = np.random.default_rng(seed)

    def probabilities(self) -> np.ndarray:
        known = self.loss[~np.isnan(self.loss)]
        fill = known.max() if len(known) else 1.0
        loss = np.where(np.isnan(self.loss), fill, self.loss)
        p = (loss + self.eps) ** self.alpha * self.quality ** (self.quality_power if self.alpha > 0 else 0.0)
        return p / p.sum()

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """→ (indices, importance weights normalised to max 1)."""
        p = self.probabilities()
        idx = self.rng.choice(len(p), size=batch, replace=True, p=p)
        w = (len(p) * p[idx]) ** (-self.beta)
        return idx, (w / w.max()).astype(np.float32)

    def update(self, idx: np.ndarray, losses: np.ndarray) -> None:
        for i, value in zip(idx, losses):
            old = self.loss[i]
            self.loss[i] = value if np.isnan(old) else self.ema * old + (1 - self.ema) * value

    def state(self) -> dict:
        return {"loss": self.loss.copy(), "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        self.loss = np.asarray(state["loss"], dtype=np.float64)
        self.rng.bit_generator.state = state["rng"]


def rloo_advantages(rewards: np.ndarray) -> np.ndarray:
    """Rewards (B, K) → normalised leave-one-out advantages (B, K); K ≥ 2."""
    k = rewards.shape[1]
    baseline = (rewards.sum(1, keepdims=True) - rewards) / (k - 1)
    adv = rewards - baseline
    return adv / (adv.std() + 1e-6)
