"""What a viewer gets from real caption files: the share of words signed, fingerspelled and shown as
text (by reason), and the words lost (must be 0), per file. Prints JSON.

Each file plays through a real `Session` (segmenter, the shared Scheduler with the bundled engine
behind an `EngineLoop`, motion timeline, backlog policy) on a simulated clock, as server/overlay.py
plays a file: frame i is at i / fps s, each cue is fed as a final caption at its start, the engine is
pumped before each frame. `--pace WPM` ignores the file's times and feeds the cues back to back at
that many words a minute (speech is about 160), so files of slow dialogue and fast lectures can be
compared at one pace.

Accounting, per word of every cue (the normalisation stage's tokens): the unit that holds it ends
with a status; a word of a unit that played counts by its segment's kind in the unit's status (sign →
signed, fingerspelling → fingerspelled, text → shown as text with the segment's reason: a spelled word
the backlog policy gave up counts as "backlog"); a unit the backlog policy skipped counts all its
words as text ("backlog"); a cancelled or failed unit counts its
words so. `lost` = words of the cues minus words accounted for: a word no unit carried, or a unit
that never got a status.

    .venv/bin/python bench/captions.py                      # every file in tests/data/subtitles
    .venv/bin/python bench/captions.py --pace 160 FILE ...  # at speech pace
    .venv/bin/python bench/captions.py --pace 160 --language sgg bench/data/news-style.de.txt

A `.txt` file is one caption a line, with no times: its lines are fed back to back at `--pace` (160
words a minute when no pace is given). `--language` signs every file in that sign language instead
of the one its name implies (German `name.de.vtt` → `gsg`; DSGS, `sgg`, is the one with lexical signs).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.loader import open_scheduler  # noqa: E402
from engines.textnorm import tokenize  # noqa: E402
from engines.formats.captions import Cue, read_captions  # noqa: E402
from server.config import Config, load_config  # noqa: E402
from server.engine_loop import EngineLoop  # noqa: E402
from server.metrics import Metrics  # noqa: E402
from server.protocol import Caption, Hello, Message, PoseFrame, ServerMessage  # noqa: E402
from server.session import Session  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "subtitles"
# The spoken language a file's name declares (name.LL.vtt) → the sign language it is signed in.
SIGN_LANGUAGE = {"en": "ase", "fr": "fsl", "de": "gsg", "sv": "swl", "es": "ssp", "it": "ise", "pt": "psr"}
_STUCK_S = 600.0  # signing still running this long after the last cue: the bench stops, and says so


def language_of(path: Path) -> str:
    parts = path.name.split(".")
    return SIGN_LANGUAGE.get(parts[-2], "ase") if len(parts) > 2 else "ase"


def read_cues(path: Path) -> list[Cue]:
    """A caption file's cues; a `.txt` file's non-empty lines, as cues with no times of their own."""
    if path.suffix == ".txt":
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        return [Cue(float(i), float(i), ln, line=i + 1) for i, ln in enumerate(lines) if ln]
    return read_captions(path).cues


def paced(cues: list[Cue], wpm: float) -> list[tuple[float, str]]:
    """Cues back to back at `wpm` words a minute: each starts when the one before has been spoken."""
    out, t = [], 0.0
    for cue in sorted(cues, key=lambda c: c.start):
        out.append((t, cue.text))
        t += len(cue.text.split()) * 60.0 / wpm
    return out


def _reason_key(reason: str) -> str:
    """A reason without the word it names, so words group by why ("… no letter for 'é' in 'café'")."""
    if reason.startswith("backlog"):
        return "backlog"
    return re.split(r"[\"'‘“(:]", reason, maxsplit=1)[0].strip() or reason


def play(cfg: Config, timed: list[tuple[float, str]], language: str, scheduler: Any) -> dict[str, Any]:
    """Feed (start s, text) captions into a Session on a simulated clock until every unit has its status."""
    fps = float(cfg.video.fps)
    units: dict[int, dict[str, Any]] = {}
    order: list[int] = []  # statuses as they arrived, cancelled excepted
    errors: list[dict[str, str]] = []
    fed_at: dict[str, float] = {}  # caption line → when it was fed
    first_frame: dict[int, float] = {}  # unit → when its first frame of a word was on screen

    def receive(msg: ServerMessage) -> None:
        if isinstance(msg, PoseFrame):
            if msg.unit and msg.segment >= 0:
                first_frame.setdefault(msg.unit, msg.t)
            return
        if not isinstance(msg, Message):
            return
        f = msg.fields
        if msg.type == "unit":
            units[f["unit"]] = {"text": f["text"], "segments": f["segments"], "status": None, "caption": f["caption"]}
        elif msg.type == "unit_status":
            units[f["unit"]].update(status=f["status"], reason=f["reason"], segments=f["segments"])
            if f["status"] != "cancelled":
                order.append(f["unit"])
        elif msg.type == "error":
            errors.append({"code": f["code"], "message": f["message"]})

    class Viewer:  # the session's outlet (server/protocol.py:Outlet): what a client would get
        put = staticmethod(receive)

        def end(self, code: int) -> None:
            pass

    engine = EngineLoop(scheduler, Metrics())
    session = Session(1, cfg, engine, Metrics(), Viewer(), authed=True)
    session.feed(Hello(language=language), 0.0)
    starts = [math.ceil(t * fps - 1e-6) for t, _ in timed]
    last = max(starts) if starts else 0
    fed = index = 0
    while True:
        now = index / fps
        while fed < len(timed) and starts[fed] <= index:
            session.feed(Caption(f"cue-{fed}", timed[fed][1], final=True), now)
            fed_at[f"cue-{fed}"] = now
            fed += 1
        engine.pump()
        session.tick(now)
        index += 1
        if fed == len(timed) and not session.units:
            break
        if index > last + _STUCK_S * fps:
            errors.append({"code": "stuck", "message": f"units still waiting {_STUCK_S:g} s after the last cue"})
            break

    words = sum(len(tokenize(text, language)) for _, text in timed)
    counts: Counter[str] = Counter()
    text_reasons: Counter[str] = Counter()
    for u in units.values():
        status = u["status"]
        for seg in u["segments"]:
            if status is None:
                continue  # no status: the words count as lost
            if status in ("cancelled", "failed"):
                counts[status] += 1
            elif status == "shown_as_text" and u["reason"].startswith("backlog"):
                counts["shown_as_text"] += 1
                text_reasons["backlog"] += 1
            elif seg["kind"] == "sign":
                counts["signed"] += 1
            elif seg["kind"] == "fingerspelling":
                counts["fingerspelled"] += 1
            else:
                counts["shown_as_text"] += 1
                text_reasons[_reason_key(seg["reason"])] += 1
    accounted = sum(counts.values())
    # Delay: from a caption's arrival to its unit's first word on screen, for units that played.
    delays = sorted(first_frame[u] - fed_at[units[u]["caption"]] for u in first_frame if u in units)
    in_order = order == sorted(order)
    return {"language": language, "captions": len(timed), "words": words,
            "signed": counts["signed"], "fingerspelled": counts["fingerspelled"],
            "shown_as_text": counts["shown_as_text"], "text_by_reason": dict(text_reasons.most_common()),
            "cancelled": counts["cancelled"], "failed": counts["failed"], "lost": words - accounted,
            "share": {k: round(counts[k] / words, 3) if words else 0.0
                      for k in ("signed", "fingerspelled", "shown_as_text")},
            "units": len(units), "statuses_in_unit_order": in_order,
            "delay_s": {"p50": round(delays[len(delays) // 2], 1), "max": round(delays[-1], 1)} if delays else None,
            "signing_s": round(index / fps, 1), "captions_end_s": round(last / fps, 1), "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help=f"WebVTT/SRT files, or .txt (a caption a line; default: every file in {DATA})")
    ap.add_argument("--pace", type=float, default=0.0, help="feed cues back to back at this many words a minute")
    ap.add_argument("--language", default=None, help="sign every file in this sign language (e.g. sgg)")
    ap.add_argument("--config", type=Path, default=None)
    args = ap.parse_args()
    files = args.files or sorted(p for p in DATA.iterdir() if p.suffix in (".vtt", ".srt"))
    cfg = load_config(args.config)
    scheduler = open_scheduler(cfg.engine, float(cfg.video.fps))
    results = {}
    for path in files:
        cues = read_cues(path)
        pace = args.pace or (160.0 if path.suffix == ".txt" else 0.0)  # a text file has no times of its own
        timed = paced(cues, pace) if pace else sorted(((c.start, c.text) for c in cues), key=lambda x: x[0])
        results[path.name] = play(cfg, timed, args.language or language_of(path), scheduler)
    total: Counter[str] = Counter()
    for r in results.values():
        total.update({k: r[k] for k in ("words", "signed", "fingerspelled", "shown_as_text", "cancelled", "failed",
                                        "lost")})
    kinds = ("signed", "fingerspelled", "shown_as_text")
    share = {k: round(total[k] / total["words"], 3) for k in kinds} if total["words"] else {}
    print(json.dumps({"pace_wpm": args.pace or "file times (a .txt file: 160)", "files": results, "total": {**total, "share": share}},
                     indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
