"""DTW-MJE as Progressive Transformers computes it (Saunders et al. 2020, `calculate_dtw`).

Each sequence is cut at its counter's maximum (frames before the first maximum; at least one),
the counter is dropped, the frame cost is the L1 distance over the 150 joint values, and the
accumulated cost of the best warping path is divided by the reference's (cut) length. Values are
in the units of the sequences given: canonical units here (shoulder width 1), whereas
Progressive Transformers' numbers are in its .skels units (canonical / 3).
"""

from __future__ import annotations

import numpy as np

from engines.skeleton import FRAME_VALUES


def cut_at_counter(seq: np.ndarray) -> np.ndarray:
    """(T, 151) → (T', 150): the frames before the counter's first maximum (at least one)."""
    end = max(1, int(np.argmax(seq[:, FRAME_VALUES])))
    return seq[:end, :FRAME_VALUES]


def dtw_cost(ref: np.ndarray, hyp: np.ndarray) -> float:
    """Accumulated L1 cost of the best monotonic warping path between (N, D) and (M, D)."""
    cost = np.abs(ref[:, None, :].astype(np.float64) - hyp[None, :, :]).sum(-1)  # (N, M)
    prev = np.cumsum(cost[0])
    for i in range(1, len(ref)):
        # D[i, j] = C[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1]). Unrolling the D[i, j-1] term:
        # D[i, j] = S[j] + min_{k ≤ j}(m[k] - S[k-1]), m[k] = min(D[i-1, k-1], D[i-1, k]), S the row's prefix sums.
        m = prev.copy()
        m[1:] = np.minimum(prev[1:], prev[:-1])
        s = np.cumsum(cost[i])
        s_before = np.concatenate([[0.0], s[:-1]])
        prev = s + np.minimum.accumulate(m - s_before)
    return float(prev[-1])


def dtw_mje(ref: np.ndarray, hyp: np.ndarray) -> float:
    """DTW-MJE of one hypothesis (T_h, 151) against its reference (T_r, 151), both with counters."""
    r, h = cut_at_counter(ref), cut_at_counter(hyp)
    return dtw_cost(r, h) / len(r)
