"""The five stages of 2D → 3D lifting (after Zelinka & Kanis, WACV 2020), in numpy and torch.

All stages work in image orientation (x right, y down, z away from the camera) under an
orthographic camera: a bone's 2D length l and its 3D length L give its depth |dz| = √(L² − l²);
the sign of dz is the depth ambiguity. Stage 4 resolves it with one prior: every bone points from
its parent towards the camera (the nose is in front of the neck; signing happens in front of the
body, so elbows bend forward, forearms reach forward and hands face their work). Stage 5 keeps the
sign by continuity: flipping a bone mid-clip would cost a jump in the smoothness term. Measured on
the lexicon (docs/data.md, "Lifting your own videos"), this beat a palm-chirality prior for the fingers and a random choice.

1. `normalize`: subtract the mean x and y, divide by one pooled standard deviation (guarded).
2. `prune`: frames whose mean confidence over the 8 body joints is below 0.3 are dropped.
3. `interpolate`: every point becomes the confidence-weighted mean of a window of frames around
   it, widened until the summed weight reaches 0.99 (a confident point keeps its own value).
4. `initialize`: bone lengths (shared between left and right) from the median 2D length, per-frame
   directions with depth from length and projection.
5. `refine`: gradient descent on log bone lengths, root positions and per-limb directions,
   batched over clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engines.skeleton import LIMBS, MIRROR, NECK, NUM_BODY, NUM_JOINTS, PARENTS, ROOT

PRUNE_THRESHOLD = 0.3
INTERPOLATION_MASS = 0.99
FORWARD = -1.0  # the sign of z towards the camera in image orientation

LIMB_PARENT = np.array([p for p, _ in LIMBS])
LIMB_CHILD = np.array([c for _, c in LIMBS])
NUM_LIMBS = len(LIMBS)  # 49


class LiftError(ValueError):
    """A clip cannot be lifted (no usable frames, degenerate points); the message says why."""


def _bone_groups() -> tuple[np.ndarray, int]:
    """Limb → index of its shared length: a limb and its mirror image share one length."""
    limb_index = {limb: k for k, limb in enumerate(LIMBS)}
    group = np.full(NUM_LIMBS, -1)
    count = 0
    for k, (p, c) in enumerate(LIMBS):
        if group[k] < 0:
            group[k] = count
            group[limb_index[(MIRROR[p], MIRROR[c])]] = count
            count += 1
    return group, count


BONE_GROUP, NUM_BONES = _bone_groups()  # 49 limbs → 25 lengths


def _ancestors() -> np.ndarray:
    """(50, 49) 0/1 matrix: limb k lies on the path from the root to joint j.

    A joint's position is the root plus the sum of the bone vectors above it, one matrix product.
    """
    limb_of_child = {c: k for k, (_, c) in enumerate(LIMBS)}
    a = np.zeros((NUM_JOINTS, NUM_LIMBS), dtype=np.float32)
    for j in range(NUM_JOINTS):
        node = j
        while node != ROOT:
            a[j, limb_of_child[node]] = 1.0
            node = PARENTS[node]
    return a


ANCESTORS = _ancestors()


# --- 1. normalization ---------------------------------------------------------------------------


def normalize(points: np.ndarray, conf: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre on the mean x and y of the seen points and divide by one pooled standard deviation.

    Returns (normalized points, mean (2,), std). Missing points stay 0. The guard the original
    code meant to have: a clip whose seen points (nearly) coincide cannot be normalized.
    """
    seen = conf > 0
    if not seen.any():
        raise LiftError("no point is seen in any frame")
    xy = points[seen].astype(np.float64)
    mean = xy.mean(axis=0)
    std = float(np.sqrt(((xy - mean) ** 2).mean()))  # pooled over x and y
    if not np.isfinite(std) or std < eps:
        raise LiftError(f"degenerate points: their spread is {std:.3g} pixels")
    out = np.where(seen[..., None], (points - mean) / std, 0.0).astype(np.float32)
    return out, mean.astype(np.float32), std


# --- 2. prune ----------------------------------------------------------------------------------


def prune(conf: np.ndarray, threshold: float = PRUNE_THRESHOLD) -> np.ndarray:
    """Indices of the frames kept: mean confidence over the 8 body joints ≥ threshold."""
    kept = np.flatnonzero(conf[:, :NUM_BODY].mean(axis=1) >= threshold)
    if len(kept) == 0:
        raise LiftError(f"every frame is below confidence {threshold} on the body joints")
    return kept


# --- 3. interpolation --------------------------------------------------------------------------


def interpolate(points: np.ndarray, conf: np.ndarray, max_half_window: int,
                mass: float = INTERPOLATION_MASS) -> tuple[np.ndarray, np.ndarray]:
    """Confidence-weighted mean over the narrowest window [t−a, t+a] whose weight reaches `mass`.

    Returns (points, confidence): the confidence is the window's weight capped at 1, so a point
    with no seen neighbour within `max_half_window` frames stays missing (0) instead of being
    smeared across the whole clip.
    """
    t = len(points)
    c = conf.astype(np.float64)
    pc = np.concatenate([np.zeros((1,) + c.shape[1:]), np.cumsum(c, axis=0)])
    px = np.concatenate([np.zeros((1,) + points.shape[1:]), np.cumsum(points * c[..., None], axis=0)])
    frames = np.arange(t)
    best_w = np.zeros_like(c)
    best_x = np.zeros(points.shape, dtype=np.float64)
    done = np.zeros(c.shape, dtype=bool)
    for a in range(max_half_window + 1):
        lo = np.clip(frames - a, 0, t)
        hi = np.clip(frames + a + 1, 0, t)
        w = pc[hi] - pc[lo]
        x = px[hi] - px[lo]
        take = ~done & ((w >= mass) | (a == max_half_window))
        best_w[take], best_x[take] = w[take], x[take]
        done |= take
        if done.all():
            break
    seen = best_w > 0
    out = np.where(seen[..., None], best_x / np.maximum(best_w, 1e-12)[..., None], 0.0)
    return out.astype(np.float32), np.minimum(best_w, 1.0).astype(np.float32)


# --- 4. initialization -------------------------------------------------------------------------


@dataclass
class Init:
    """Stage 4 for one clip: log bone lengths (25,), root xy (T, 2), unit limb directions (T, 49, 3)."""

    log_lengths: np.ndarray
    root: np.ndarray
    directions: np.ndarray


def _fill_nearest(values: np.ndarray, seen: np.ndarray, default: np.ndarray) -> np.ndarray:
    """For each column, copy the value of the nearest seen frame into unseen frames."""
    out = values.copy()
    t = np.arange(len(values))
    for k in range(values.shape[1]):
        idx = np.flatnonzero(seen[:, k])
        if len(idx) == 0:
            out[:, k] = default
        elif len(idx) < len(values):
            out[:, k] = values[idx[np.abs(t[:, None] - idx[None]).argmin(axis=1)], k]
    return out


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The q-quantile of `values` where each counts with its weight (weights ≥ 0, some > 0)."""
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q * cum[-1])])


def initialize(points: np.ndarray, conf: np.ndarray, length_quantile: float = 0.5) -> Init:
    """Bone lengths: the confidence-weighted median 2D length, pooled over a limb and its mirror image; depth per bone."""
    seen = (conf[:, LIMB_PARENT] > 0) & (conf[:, LIMB_CHILD] > 0)  # (T, 49)
    delta = points[:, LIMB_CHILD] - points[:, LIMB_PARENT]  # (T, 49, 2)
    length2d = np.linalg.norm(delta, axis=-1)
    # A bone's 2D lengths count as much as the detector trusts its weaker end.
    trust = np.where(seen, np.minimum(conf[:, LIMB_PARENT], conf[:, LIMB_CHILD]), 0.0)
    lengths = np.empty(NUM_BONES, dtype=np.float64)
    fallback = weighted_quantile(length2d.ravel(), trust.ravel(), length_quantile) if seen.any() else 0.1
    for g in range(NUM_BONES):
        mine = BONE_GROUP == g
        pooled_trust = trust[:, mine]
        lengths[g] = (weighted_quantile(length2d[:, mine].ravel(), pooled_trust.ravel(), length_quantile)
                      if pooled_trust.any() else fallback)
    lengths = np.maximum(lengths, 1e-3)  # a zero bone (wrist to hand wrist) must still have a log
    big = lengths[BONE_GROUP][None]  # (1, 49)
    # Depth from length and projection; a 2D bone longer than L is taken as lying flat. The sign:
    # every bone points towards the camera (see the module docstring).
    dz = FORWARD * np.sqrt(np.maximum(big**2 - length2d**2, 0.0))
    vec = np.concatenate([delta, dz[..., None]], axis=-1)
    # A tiny forward depth keeps a flat bone off the saddle point where ∂projection/∂z = 0.
    vec[..., 2] += FORWARD * 1e-3 * big
    unit = vec / np.maximum(np.linalg.norm(vec, axis=-1, keepdims=True), 1e-9)
    down = np.array([0.0, 1.0, 0.0])  # an unseen limb hangs
    unit = _fill_nearest(unit, seen, down)
    neck_seen = conf[:, NECK] > 0
    root = _fill_nearest(points[:, [NECK]], neck_seen[:, None], np.zeros(2))[:, 0]
    return Init(np.log(lengths).astype(np.float32), root.astype(np.float32), unit.astype(np.float32))


# --- 5. backpropagation-based filtering --------------------------------------------------------


@dataclass(frozen=True)
class RefineSettings:
    iterations: int = 200
    learning_rate: float = 0.02
    # (log L − log L₀)²: keeps bones near stage 4. A pull towards 0 instead lets the smoothness term
    # win by growing bones that point into depth (their depth then changes less); bones exploded.
    bone_weight: float = 1.0
    smooth_weight: float = 0.5  # squared 3D velocity of every joint, per frame


def forward_kinematics(log_lengths: torch.Tensor, root: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(B, 25), (B, T, 2), (B, T, 49, 3) → joint positions (B, T, 50, 3); the root has depth 0."""
    unit = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    bones = unit * log_lengths.exp()[:, torch.as_tensor(BONE_GROUP)][:, None, :, None]
    root3 = torch.nn.functional.pad(root, (0, 1))[:, :, None, :]
    return root3 + torch.einsum("jk,btkc->btjc", torch.as_tensor(ANCESTORS), bones)


def refine(inits: list[Init], targets: list[np.ndarray], weights: list[np.ndarray],
           settings: RefineSettings = RefineSettings()) -> list[np.ndarray]:
    """Optimize a batch of clips at once; returns each clip's joints (T, 50, 3), image orientation.

    Loss per clip: confidence-weighted squared 2D reprojection error + bone_weight × mean squared
    change of log bone length from stage 4 + smooth_weight × mean squared joint velocity. Clips are padded to the longest;
    padded frames weigh nothing.
    """
    threads = torch.get_num_threads()
    # The tensors are small: a second thread only adds synchronisation, which costs 10× on a busy machine.
    torch.set_num_threads(1)
    try:
        return _refine(inits, targets, weights, settings)
    finally:
        torch.set_num_threads(threads)


def _refine(inits: list[Init], targets: list[np.ndarray], weights: list[np.ndarray],
            settings: RefineSettings) -> list[np.ndarray]:
    b = len(inits)
    t_max = max(len(i.root) for i in inits)
    lengths = torch.tensor(np.stack([i.log_lengths for i in inits]))
    root = torch.zeros(b, t_max, 2)
    dirs = torch.zeros(b, t_max, NUM_LIMBS, 3)
    dirs[..., 1] = 1.0
    target = torch.zeros(b, t_max, NUM_JOINTS, 2)
    weight = torch.zeros(b, t_max, NUM_JOINTS)
    frame_mask = torch.zeros(b, t_max)
    for n, (init, x, w) in enumerate(zip(inits, targets, weights)):
        t = len(init.root)
        root[n, :t] = torch.from_numpy(init.root)
        root[n, t:] = root[n, t - 1]
        dirs[n, :t] = torch.from_numpy(init.directions)
        target[n, :t] = torch.from_numpy(x)
        weight[n, :t] = torch.from_numpy(w)
        frame_mask[n, :t] = 1.0
    lengths0 = lengths.clone()
    params = [lengths.requires_grad_(), root.requires_grad_(), dirs.requires_grad_()]
    opt = torch.optim.Adam(params, lr=settings.learning_rate)
    w_total = weight.sum(dim=(1, 2)).clamp_min(1e-9)
    pair_mask = frame_mask[:, 1:] * frame_mask[:, :-1]
    pairs = pair_mask.sum(dim=1).clamp_min(1.0)
    for _ in range(settings.iterations):
        opt.zero_grad()
        pos = forward_kinematics(lengths, root, dirs)
        reprojection = (weight * ((pos[..., :2] - target) ** 2).sum(-1)).sum(dim=(1, 2)) / w_total
        bone = ((lengths - lengths0) ** 2).mean(dim=1)
        velocity = ((pos[:, 1:] - pos[:, :-1]) ** 2).sum(-1).mean(-1)
        smooth = (velocity * pair_mask).sum(dim=1) / pairs
        loss = (reprojection + settings.bone_weight * bone + settings.smooth_weight * smooth).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pos = forward_kinematics(lengths, root, dirs).numpy()
    return [pos[n, : len(init.root)].copy() for n, init in enumerate(inits)]
