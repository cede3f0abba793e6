"""Benchmark of lexical signing from notation (issue 16); prints JSON.

  parse:      share of the DSGS lexicon's 1,364 HamNoSys entries (signwriting 0.1.19 parallel.json,
              first HamNoSys string of each) that parse and synthesize fully; unsupported symbols
              by the number of entries they block
  speed:      synthesis ms a sign (cold: every renderable entry once; cached: the backend's cache)
  agreement:  the synthesized poses against the same entries' SignWriting (FSW): hands used, and
              the dominant hand's handshape class (docs/notation.md: the FSW symbol → class table)
  coverage:   German news-style captions (bench/data/news-style.de.txt) at 160 words a minute
              through a real Session (bench/captions.py play: segmenter, scheduler, backlog policy),
              signed in sgg with the notation lexicon vs fingerspelling only (and, to show what
              fingerspelling costs at this pace, the lexicon with the other words shown as text);
              `plan` counts how each word would be signed with no time limit
  latency:    caption → first pose frame of its unit on a live server (signstream serve), sgg
              captions of two lexicon words, p50/p95

    .venv/bin/python bench/notation.py [--latency 60] [--skip-live]
    .venv/bin/python bench/notation.py --stills docs/images   # docs/notation.md's stills, then exit
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from importlib.resources import files
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engines.notation.reader import read_hamnosys  # noqa: E402
from engines.notation.symbols import NotationError  # noqa: E402
from engines.notation.synthesizer import synthesize  # noqa: E402
from engines.skeleton import L_WRIST, RIGHT_HAND_SLICE  # noqa: E402

LETTERS = ROOT / "engines" / "default" / "letters.npz"
NEWS = ROOT / "bench" / "data" / "news-style.de.txt"
FPS = 25.0

# --- SignWriting (FSW) hand symbols → handshape class ------------------------------------------
# ISWA 2010 hand symbol groups by base (hex), collapsed to classes we can also read off a pose.
FSW_CLASSES: tuple[tuple[int, int, str], ...] = (
    (0x100, 0x10D, "index"),  # group 1: index finger
    (0x10E, 0x143, "index+middle"),  # groups 2-3: index and middle (with or without thumb)
    (0x144, 0x186, "four/five"),  # groups 4-5: four or five fingers (flat, spread, C, O, claw)
    (0x187, 0x1CC, "other finger"),  # groups 6-8: little, ring or middle finger shapes
    (0x1CD, 0x1F4, "index+thumb"),  # group 9: index and thumb (F, L, G, pinch)
    (0x1F5, 0x204, "fist/thumb"),  # group 10: thumb, fist
)
_SYMBOL = re.compile(r"S([0-9a-f]{3})([0-5])([0-9a-f])(\d{3})x(\d{3})")


def fsw_hands(fsw: str) -> list[tuple[str, str, int, int]]:
    """(class, side, x, y) of each hand symbol: rotations 0-7 draw a right hand, 8-f a left hand."""
    out = []
    for base, _fill, rot, x, y in _SYMBOL.findall(fsw):
        b = int(base, 16)
        for lo, hi, cls in FSW_CLASSES:
            if lo <= b <= hi:
                out.append((cls, "right" if int(rot, 16) < 8 else "left", int(x), int(y)))
    return out


# ISWA 2010 movement symbols: finger movements (0x210-0x216) and movement arrows and paths up to
# 0x2F6 (contact symbols 0x205-0x20F and dynamics from 0x2F7 on are not movements).
_MOVEMENT = re.compile(r"S2(1[0-9a-f]|[2-9a-e][0-9a-f]|f[0-6])[0-5][0-9a-f]")


def fsw_two_handed(hands: list[tuple[str, str, int, int]], fsw: str = "") -> bool:
    """Both a right and a left hand drawn, or two hands side by side (≥ 15 px apart across, within
    30 px in height): a symmetric hand's mirror image can be drawn as a rotation, so the rotation
    alone misses some two-handed signs; or two or more hands drawn and no movement at all (no
    arrow, no finger movement): one hand drawn twice is its start and end, which needs a movement
    between them, so hands drawn without one are hands held together (one above the other)."""
    if {h[1] for h in hands} == {"left", "right"}:
        return True
    if any(abs(a[2] - b[2]) >= 15 and abs(a[3] - b[3]) <= 30 for i, a in enumerate(hands) for b in hands[i + 1:]):
        return True
    return bool(fsw) and len(hands) >= 2 and not _MOVEMENT.search(fsw)


def pose_class(hand: np.ndarray) -> str:
    """The handshape class of 21 hand points, by which fingers are open (straightness ≥ 0.6) and
    whether the thumb tip meets the index tip (docs/notation.md)."""
    def straight(chain: list[int]) -> float:
        p = hand[chain]
        return float(np.linalg.norm(p[-1] - p[0]) / np.linalg.norm(np.diff(p, axis=0), axis=1).sum())

    length = float(np.linalg.norm(hand[9] - hand[0]))
    s = {f: straight(c) for f, c in (("index", [5, 6, 7, 8]), ("middle", [9, 10, 11, 12]),
                                      ("ring", [13, 14, 15, 16]), ("little", [17, 18, 19, 20]))}
    thumb_out = straight([1, 2, 3, 4]) > 0.9 and np.linalg.norm(hand[4] - hand[5]) > 0.45 * length
    pinch = np.linalg.norm(hand[4] - hand[8]) < 0.35 * length
    open_ = {f for f, v in s.items() if v >= 0.6}
    rest = {"middle", "ring", "little"}
    if rest <= open_ and pinch and s["index"] < 0.85 and min(s[f] for f in rest) > 0.9:
        return "index+thumb"  # F: index meets the thumb, the others extended
    if len(open_ & rest) >= 2:
        return "four/five"
    if not open_:
        return "fist/thumb"
    if open_ == {"index"}:
        return "index+thumb" if (thumb_out or pinch) else "index"
    if {"index", "middle"} <= open_:
        return "index+middle"
    if "index" in open_ and pinch:
        return "index+thumb"
    return "other finger" if "index" not in open_ else "index"


def left_rest() -> np.ndarray:
    """Where the left wrist is when the left hand takes no part (synthesizer.py: _rest_hand)."""
    from engines.notation.body import standard_body
    from engines.notation.hands import Context
    from engines.notation.synthesizer import _rest_hand

    body = standard_body(LETTERS)
    return body.arms(_rest_hand(Context(body, LETTERS), 1.0).pos[None], 1.0)[1][0]


def lexicon_rows() -> list[dict]:
    data = json.loads(files("signwriting.hamnosys").joinpath("parallel.json").read_text(encoding="utf-8"))
    return [e for e in data if e.get("hamnosys") and e.get("hns_gloss")]


def parse_and_agree(rows: list[dict]) -> dict:
    blocked: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    times: list[float] = []
    cpu: list[float] = []
    ok = parsed = 0
    hands_agree = hands_n = shape_agree = shape_n = 0
    two_fsw = two_syn = 0
    rest = left_rest()
    for e in rows:
        try:
            sign = read_hamnosys(e["hamnosys"][0])
        except NotationError as exc:
            errors[exc.code] += 1
            continue
        parsed += 1
        if not sign.renderable:
            for sym in sorted({u.symbol for u in sign.unsupported}):
                blocked[sym] += 1
            continue
        t, c = time.perf_counter(), time.thread_time()
        seq = synthesize(sign, FPS, LETTERS)
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time() - c) * 1000)  # CPU time: the wall clock counts other tenants' load
        ok += 1
        hands = fsw_hands(e.get("signwriting") or "")
        if not hands:
            continue
        fsw_two = fsw_two_handed(hands, e.get("signwriting") or "")
        syn_two = bool((np.linalg.norm(seq.frames[:, L_WRIST] - rest, axis=1) > 0.15).any())  # leaves its rest
        hands_n += 1
        hands_agree += fsw_two == syn_two
        two_fsw += fsw_two
        two_syn += syn_two
        dominant = {h[0] for h in hands if h[1] == "right"} or {h[0] for h in hands}
        start = min(len(seq) - 1, int(round(0.1 * FPS)))  # after the start hold: the initial handshape
        shape_n += 1
        shape_agree += pose_class(seq.frames[start, RIGHT_HAND_SLICE]) in dominant
    return {
        "parse": {"entries": len(rows), "parsed": parsed, "parsed_and_synthesized": ok,
                  "share": round(ok / len(rows), 4), "goal": 0.95, "syntax_errors": dict(errors),
                  "unsupported_symbols_by_entries": dict(blocked.most_common())},
        "synthesis_ms_cold": {"n": len(times), "median": round(statistics.median(times), 2),
                              "p95": round(float(np.percentile(times, 95)), 2),
                              "cpu_median": round(statistics.median(cpu), 2),
                              "cpu_p95": round(float(np.percentile(cpu, 95)), 2), "goal": 2.0},
        "agreement_with_fsw": {"entries": hands_n, "hands_used": round(hands_agree / hands_n, 4),
                               "hands_goal": 0.9, "two_handed_fsw": two_fsw, "two_handed_synthesized": two_syn,
                               "dominant_handshape_class": round(shape_agree / shape_n, 4), "class_goal": 0.7},
    }


def cached_ms() -> dict:
    from engines.loader import notation_lexicons
    from engines.notation_backend import NotationBackend

    lexicons, lemmas = notation_lexicons(LETTERS.parent, {})
    backend = NotationBackend(FPS, LETTERS, lexicons, lemmas)
    words = ["Heute", "Regen", "Haus", "Familie", "Kinder", "Schweiz"]
    for w in words:
        backend.sequence(w, "sgg")
    times = []
    for _ in range(50):
        for w in words:
            t = time.perf_counter()
            backend.sequence(w, "sgg")
            times.append((time.perf_counter() - t) * 1000)
    return {"n": len(times), "median": round(statistics.median(times), 3), "p95": round(float(np.percentile(times, 95)), 3)}


def coverage() -> dict:
    from bench.captions import play
    from engines.engine import Scheduler
    from engines.loader import open_scheduler
    from server.config import load_config

    cfg = load_config()
    lines = [ln.strip() for ln in NEWS.read_text(encoding="utf-8").splitlines() if ln.strip()]
    planned: Counter[str] = Counter()
    timed, t = [], 0.0
    for line in lines:  # back to back at 160 words a minute
        timed.append((t, line))
        t += len(line.split()) * 60.0 / 160
    full = open_scheduler(cfg.engine, float(cfg.video.fps))
    spelled = Scheduler([b for b in full.backends if b.name != "notation"])
    signs_only = Scheduler([b for b in full.backends if b.name == "notation"])  # no fingerspelling: shown as text
    for line in lines:
        planned.update(f"{seg.path} {seg.kind}" for seg in full.plan(line, "sgg"))
    out: dict[str, object] = {"plan": dict(planned)}
    for name, scheduler in (("notation", full), ("fingerspelling_only", spelled), ("notation_no_fingerspelling", signs_only)):
        got = play(cfg, timed, "sgg", scheduler)
        out[name] = {k: got[k] for k in ("words", "signed", "fingerspelled", "shown_as_text", "text_by_reason",
                                         "share", "lost", "delay_s", "signing_s", "captions_end_s")}
    return out


async def live_latency(n: int) -> dict:
    from bench.live import latency, start_server
    from engines.loader import notation_lexicons

    lexicons, _ = notation_lexicons(LETTERS.parent, {})
    words = sorted({e.gloss.split("_")[0].title() for e in lexicons["sgg"].entries
                    if e.sign.renderable and e.gloss.isalpha()})
    proc, url = start_server(8)
    try:
        got = await latency(url, n, words, language="sgg", rng=random.Random(0))
    finally:
        proc.terminate()
        proc.wait()
    return {**got, "note": "two random lexicon words a caption: most signs synthesized on first use"}


STILL_SIGNS = ("HEUTE", "REGEN", "HAUS", "SCHWEIZ", "FAMILIE", "MORGEN")  # ZEIT, AUTO: see docs/notation.md


def stills(folder: Path) -> None:
    """docs/images/notation-<gloss>.png: each sign synthesized from the lexicon's notation and drawn
    by the real avatar (the `signstream render` path: retarget, skin, pyrender) at three moments."""
    from PIL import Image

    from engines.loader import notation_lexicons
    from engines.notation_backend import NotationBackend
    from server.avatar.painter import AvatarPainter
    from server.config import load_config

    cfg = load_config()
    lexicons, lemmas = notation_lexicons(LETTERS.parent, {})
    backend = NotationBackend(FPS, LETTERS, lexicons, lemmas)
    folder.mkdir(parents=True, exist_ok=True)
    with AvatarPainter.open(cfg, background=(1.0, 1.0, 1.0, 1.0)) as painter:
        for gloss in STILL_SIGNS:
            entry = backend.entry(gloss.lower(), "sgg")
            assert entry is not None, gloss
            seq = backend.sign(entry)
            worlds = list(painter.worlds(zip(seq.frames, seq.confidence, [None] * len(seq))))
            n = len(seq)
            picks = [min(n - 1, 2), n // 2, max(0, n - 4)]  # after the start hold, middle, before the end
            tiles = [Image.fromarray(painter.draw(*worlds[i])[..., :3]) for i in picks]
            w, h = tiles[0].size
            box = (int(w * 0.12), int(h * 0.02), int(w * 0.88), int(h * 0.80))  # head to waist
            cropped = [t.crop(box) for t in tiles]
            sheet = Image.new("RGB", (sum(c.size[0] for c in cropped), cropped[0].size[1]), "white")
            for k, c in enumerate(cropped):
                sheet.paste(c, (k * c.size[0], 0))
            out = folder / f"notation-{gloss.lower()}.png"
            sheet.save(out, optimize=True)
            print(f"{out}: {entry.gloss} frames {picks} of {n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=int, default=60, help="captions for the live latency run")
    ap.add_argument("--skip-live", action="store_true", help="no live server (latency)")
    ap.add_argument("--stills", type=Path, default=None, help="render docs/notation.md's stills into this folder and exit")
    args = ap.parse_args()
    if args.stills is not None:
        stills(args.stills)
        return
    result = parse_and_agree(lexicon_rows())
    result["synthesis_ms_cached"] = cached_ms()
    result["coverage_160wpm"] = coverage()
    if not args.skip_live:
        result["live_caption_to_first_frame"] = asyncio.run(live_latency(args.latency))
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
