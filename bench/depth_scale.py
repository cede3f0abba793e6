"""Measure the depth factors of the bundled letter recordings by anatomy, and print JSON.

    .venv/bin/python bench/depth_scale.py [--lexicon DIR] [--out runs/depth_scale.json]

The recordings keep MediaPipe's normalized z (around width / 2) beside x/y in pixels, so depth in
pixels is (z − z0) × k (engines/formats/posefile.py: MediaPipeDepth). Bone-length steadiness picks
k ≈ 100 for the body, but where depth barely moves it is a weak criterion (DATA.md). Here k is
chosen by anatomy, over every recording of all 20 languages:

body  · symmetry: left and right forearm, and left and right upper arm, have equal 3D lengths;
        k minimising the median |log(left / right)| over every frame that sees both arms.
      · MediaPipe's own metric 3D (POSE_WORLD_LANDMARKS, x/y stored ×500, z in metres + 250):
        least-squares k that makes image-space bone vectors' depth agree with the world ones,
        after fitting the image/world x-y scale per recording.
hand  · rigidity: the palm (wrist and the four finger bases, 10 distances) is rigid, so its 3D
        shape must not change as the hand turns; k minimising the median coefficient of
        variation of the palm distances within a recording.
      · depth extent vs x/y size: the hand's wrist→index-base and wrist→pinky-base vectors point
        where the body model's wrist→index and wrist→pinky world vectors point; least-squares k
        that gives the hand vectors the world vectors' depth-to-x/y ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.lexicon import bundled_lexicon_dir, read_index  # noqa: E402

# MediaPipe pose indices.
L_SH, R_SH, L_EL, R_EL, L_WR, R_WR = 11, 12, 13, 14, 15, 16
L_PINKY, R_PINKY, L_INDEX, R_INDEX = 17, 18, 19, 20
PALM = (0, 5, 9, 13, 17)  # hand: wrist, index/middle/ring/pinky bases
BODY_GRID = np.arange(0.0, 301.0, 2.0)
HAND_GRID = np.arange(0.0, 1501.0, 10.0)
SEEN = 0.5


def components(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    from pose_format import Pose

    pose = Pose.read(path.read_bytes())
    data = np.ma.getdata(pose.body.data)[:, 0].astype(np.float64)
    conf = np.asarray(pose.body.confidence)[:, 0]
    out, at = {}, 0
    for c in pose.header.components:
        n = len(c.points)
        out[c.name] = (data[:, at: at + n], conf[:, at: at + n])
        at += n
    return out, pose.header.dimensions.width


def body_symmetry(pose: np.ndarray, conf: np.ndarray, z0: float) -> np.ndarray:
    """(frames × 2 segments, grid) |log(left/right)| for forearm and upper arm."""
    ok = (conf[:, [L_SH, R_SH, L_EL, R_EL, L_WR, R_WR]] > SEEN).all(1)
    p = pose[ok].copy()
    p[..., 2] -= z0
    rows = []
    for (la, lb), (ra, rb) in (((L_EL, L_WR), (R_EL, R_WR)), ((L_SH, L_EL), (R_SH, R_EL))):
        dl, dr = p[:, lb] - p[:, la], p[:, rb] - p[:, ra]
        ll = np.sqrt(dl[:, None, 0] ** 2 + dl[:, None, 1] ** 2 + (dl[:, None, 2] * BODY_GRID) ** 2)
        lr = np.sqrt(dr[:, None, 0] ** 2 + dr[:, None, 1] ** 2 + (dr[:, None, 2] * BODY_GRID) ** 2)
        rows.append(np.abs(np.log(ll / np.maximum(lr, 1e-9))))
    return np.concatenate(rows) if rows else np.zeros((0, len(BODY_GRID)))


def world_fit(img: np.ndarray, world: np.ndarray, ok: np.ndarray, bones: list[tuple[int, int]]) -> tuple[float, float]:
    """Sums (Σ dz_img·target, Σ dz_img²) whose ratio is the least-squares body k for one recording."""
    di = np.concatenate([img[ok][:, b] - img[ok][:, a] for a, b in bones])
    dw = np.concatenate([world[ok][:, b] - world[ok][:, a] for a, b in bones])
    if len(di) == 0:
        return 0.0, 0.0
    s = float((di[:, :2] * dw[:, :2]).sum() / max((dw[:, :2] ** 2).sum(), 1e-9))  # image px per world unit (x/y)
    target = dw[:, 2] * 500.0 * s  # world z in metres → world x/y units (×500) → image pixels
    return float((di[:, 2] * target).sum()), float((di[:, 2] ** 2).sum())


def palm_cv(hand: np.ndarray, conf: np.ndarray) -> np.ndarray | None:
    """(grid,) mean coefficient of variation of the 10 palm distances over a recording's frames."""
    ok = (conf[:, list(PALM)] > 0).all(1)
    if ok.sum() < 4:
        return None
    h = hand[ok][:, list(PALM)]
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    d = np.stack([h[:, j] - h[:, i] for i, j in pairs], 1)  # (T, 10, 3)
    lengths = np.sqrt(d[..., None, 0] ** 2 + d[..., None, 1] ** 2 + (d[..., None, 2] * HAND_GRID) ** 2)  # (T, 10, G)
    return (lengths.std(0) / lengths.mean(0)).mean(0)


def hand_world(hand: np.ndarray, hconf: np.ndarray, world: np.ndarray, wconf: np.ndarray,
               wrist: int, index: int, pinky: int) -> tuple[float, float]:
    """Sums for the least-squares hand k: hand vectors given the world vectors' depth/x-y ratio."""
    ok = (hconf[:, [0, 5, 17]] > 0).all(1) & (wconf[:, [wrist, index, pinky]] > SEEN).all(1)
    num = den = 0.0
    for hb, wb in ((5, index), (17, pinky)):
        dh = hand[ok, hb] - hand[ok, 0]
        dw = world[ok, wb] - world[ok, wrist]
        ratio = dw[:, 2] * 500.0 / np.maximum(np.linalg.norm(dw[:, :2], axis=1), 1e-9)
        target = ratio * np.linalg.norm(dh[:, :2], axis=1)
        num += float((dh[:, 2] * target).sum())
        den += float((dh[:, 2] ** 2).sum())
    return num, den


def measure(lexicon: Path) -> dict:
    rows = [e for e, _ in read_index(lexicon)]
    by_path: dict[Path, list[str]] = defaultdict(list)
    for e in rows:
        if e.signed_language not in by_path[e.path]:
            by_path[e.path].append(e.signed_language)
    sym: dict[str, list[np.ndarray]] = defaultdict(list)
    wfit: dict[str, list[tuple[float, float]]] = defaultdict(list)
    cvs: dict[str, list[np.ndarray]] = defaultdict(list)
    hfit: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for path, langs in sorted(by_path.items()):
        comps, width = components(path)
        pose, pconf = comps["POSE_LANDMARKS"]
        world, wconf = comps["POSE_WORLD_LANDMARKS"]
        z0 = width / 2
        s = body_symmetry(pose, pconf, z0)
        ok = (pconf[:, [L_SH, R_SH, L_EL, R_EL, L_WR, R_WR]] > SEEN).all(1) & (wconf[:, [L_SH, R_SH]] > SEEN).all(1)
        wf = world_fit(pose, world, ok, [(L_SH, R_SH), (L_SH, L_EL), (R_SH, R_EL), (L_EL, L_WR), (R_EL, R_WR)])
        hand_cvs, hand_fits = [], []
        for name, wrist, index, pinky in (("RIGHT_HAND_LANDMARKS", R_WR, R_INDEX, R_PINKY),
                                          ("LEFT_HAND_LANDMARKS", L_WR, L_INDEX, L_PINKY)):
            hand, hconf = comps[name]
            cv = palm_cv(hand, hconf)
            if cv is not None:
                hand_cvs.append(cv)
            hand_fits.append(hand_world(hand, hconf, world, wconf, wrist, index, pinky))
        for lang in langs:
            sym[lang].append(s)
            wfit[lang].append(wf)
            cvs[lang] += hand_cvs
            hfit[lang] += hand_fits

    def ls(fits: list[tuple[float, float]]) -> float:
        num, den = map(sum, zip(*fits))
        return round(num / den, 1) if den else float("nan")

    per_language = {}
    for lang in sorted(sym):
        s = np.concatenate(sym[lang])
        c = np.stack(cvs[lang]) if cvs[lang] else None
        per_language[lang] = {
            "recordings": len(sym[lang]),
            "body_k_symmetry": float(BODY_GRID[np.median(s, 0).argmin()]) if len(s) else None,
            "body_k_world": ls(wfit[lang]),
            "hand_k_rigidity": float(HAND_GRID[np.median(c, 0).argmin()]) if c is not None else None,
            "hand_k_world": ls(hfit[lang]),
        }
    # Overall: every distinct recording once (fsl shares ase's files).
    uniq_sym, uniq_cv, uniq_w, uniq_h = [], [], [], []
    for lang in sorted(sym):
        if lang == "fsl":
            continue
        uniq_sym += sym[lang]
        uniq_cv += cvs[lang]
        uniq_w += wfit[lang]
        uniq_h += hfit[lang]
    s_all = np.concatenate(uniq_sym)
    sym_curve = np.median(s_all, 0)
    c_all = np.median(np.stack(uniq_cv), 0)

    def at(grid: np.ndarray, curve: np.ndarray, k: float) -> float:
        return round(float(curve[np.abs(grid - k).argmin()]), 4)

    k_sym = float(BODY_GRID[sym_curve.argmin()])
    k_rig = float(HAND_GRID[c_all.argmin()])
    return {
        "lexicon": str(lexicon),
        "recordings": len(by_path),
        "frames_both_arms": int(len(s_all) // 2),
        "body": {
            "k_symmetry": k_sym,
            "median_abs_log_left_right": {f"k={k:g}": at(BODY_GRID, sym_curve, k) for k in (0, 20, 40, k_sym, 100, 200)},
            "k_world": ls(uniq_w),
            "k_symmetry_per_language": {lang: v["body_k_symmetry"] for lang, v in per_language.items()},
            "k_world_per_language": {lang: v["body_k_world"] for lang, v in per_language.items()},
        },
        "hand": {
            "k_rigidity": k_rig,
            "median_palm_cv": {f"k={k:g}": at(HAND_GRID, c_all, k) for k in (0, 250, k_rig, 500, 1000)},
            "k_world": ls(uniq_h),
            "k_rigidity_per_language": {lang: v["hand_k_rigidity"] for lang, v in per_language.items()},
            "k_world_per_language": {lang: v["hand_k_world"] for lang, v in per_language.items()},
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lexicon", type=Path, default=None, help="a spoken-to-signed lexicon folder (default: the bundled one)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    result = measure(args.lexicon or bundled_lexicon_dir())
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
