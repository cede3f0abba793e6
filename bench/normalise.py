"""Real subtitle files (tests/data/subtitles/) through the normalisation stage, the segmenter and
the scheduler's plan: per file, tokens signed, fingerspelled, shown as text (by reason) and lost.

This measures what each word is planned to become, not playback: the backlog policy (which may
show more as text when captions outrun signing) is measured by the live benchmarks. Prints one
JSON object per file.

    .venv/bin/python bench/normalise.py
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from itertools import count
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.engine import Scheduler  # noqa: E402
from engines.lexicon_backend import LexiconBackend  # noqa: E402
from engines.textnorm import tokenize  # noqa: E402
from engines.formats.captions import read_captions  # noqa: E402
from server.captions import Commit, Segmenter  # noqa: E402
from server.config import SegmenterSection  # noqa: E402

SUBTITLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "subtitles"
# Each file and the sign language its spoken language goes to.
FILES = {"ocw-20-219-lecture-excerpt.en.srt": "ase", "pysrt-anchorman-excerpt.fr.srt": "fsl",
         "videojs-elephantsdream-captions.sv.vtt": "swl", "videojs-example-captions.vtt": "ase",
         "vttjs-example1-voices.vtt": "ase", "webvtt-py-netflix-excerpt.es.vtt": "ssp",
         "webvtt-py-youtube-dl.vtt": "ase"}


def _reason(reason: str) -> str:
    """Reasons grouped: a missing letter by the letter, a symbol as 'a symbol'."""
    if "has no letter for " in reason:
        return "cannot fingerspell " + reason.split("has no letter for ")[1].split(" in ")[0]
    return "a symbol" if reason.startswith("a symbol") else reason


def main() -> None:
    scheduler = Scheduler([LexiconBackend(fps=25.0)])
    for name, language in FILES.items():
        captions = read_captions(SUBTITLES / name)
        kinds: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        units = lost = 0
        for cue in captions.cues:
            segmenter = Segmenter(SegmenterSection(), count(1).__next__)
            actions = segmenter.caption("cue", cue.text, True, language, 0.0, lambda unit: 0)
            texts = [a.text for a in actions if isinstance(a, Commit)]
            units += len(texts)
            segments = [s for text in texts for s in scheduler.plan(text, language)]
            tokens = [t.text for t in tokenize(cue.text, language)]
            lost += len(tokens) - sum(1 for s in segments)  # a word in no segment
            for s in segments:
                kinds[s.kind] += 1
                if s.kind == "text":
                    reasons[_reason(s.reason)] += 1
        print(json.dumps({"file": name, "language": language, "cues": len(captions.cues),
                          "skipped_cues": len(captions.skipped), "units": units, "tokens": sum(kinds.values()),
                          "signed": kinds["sign"], "fingerspelled": kinds["fingerspelling"], "shown_as_text": kinds["text"],
                          "lost": lost, "text_by_reason": dict(reasons.most_common())}, ensure_ascii=False))


if __name__ == "__main__":
    main()
