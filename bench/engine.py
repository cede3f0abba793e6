"""Engine benchmark: decoder steps through the SignLLM backend and the scheduler; prints JSON.

    python bench/engine.py [--engine engines/default] [--runtime onnxruntime] [--threads 1]

Measures: one stream (frames/s, step latency p50/p99); 1, 8, 32, 64, 128 concurrent units kept
live (continuous batching: a finished unit is replaced at once) — throughput and per-unit frame
rate; unit start → first frame, alone and joining 64 live units; peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.engine import Scheduler  # noqa: E402
from engines.signllm_backend import SignLLMBackend  # noqa: E402

WORDS = ["hello", "world", "sign", "stream", "house", "quiz", "jump", "river", "bold", "table", "light", "music"]


def keep_live(sched: Scheduler, n: int, lang: str, counter: list[int]) -> None:
    while sched.live < n:
        counter[0] += 1
        sched.submit(f"u{counter[0]}", WORDS[counter[0] % len(WORDS)], lang)


def cancel_all(sched: Scheduler, counter: list[int]) -> None:
    """End every unit this run submitted, so the backend starts the next run empty."""
    for i in range(1, counter[0] + 1):
        sched.cancel(f"u{i}")


def concurrent(backend: SignLLMBackend, n: int, lang: str, ticks: int) -> dict:
    sched, counter = Scheduler([backend]), [0]
    keep_live(sched, n, lang, counter)
    for _ in range(5):  # warm-up
        sched.tick()
        keep_live(sched, n, lang, counter)
    times, frames = [], 0
    for _ in range(ticks):
        t = time.perf_counter()
        got, _ = sched.tick()
        times.append(time.perf_counter() - t)
        frames += len(got)
        keep_live(sched, n, lang, counter)
    cancel_all(sched, counter)
    total = sum(times)
    return {"units": n, "frames_per_s": round(frames / total, 1), "per_unit_fps": round(ticks / total, 1),
            "tick_ms_p50": round(1e3 * float(np.percentile(times, 50)), 3),
            "tick_ms_p99": round(1e3 * float(np.percentile(times, 99)), 3)}


def first_frame(backend: SignLLMBackend, lang: str, others: int, trials: int = 30) -> float:
    """ms from submit to the unit's first frame, with `others` units live in the same batch."""
    sched, counter, out = Scheduler([backend]), [0], []
    for i in range(trials):
        keep_live(sched, others, lang, counter)
        sched.tick()
        t = time.perf_counter()
        sched.submit(f"probe{i}", "hello", lang)
        got, _ = sched.tick()
        out.append(time.perf_counter() - t)
        assert any(f.key == f"probe{i}" for f in got)
        sched.cancel(f"probe{i}")
    cancel_all(sched, counter)
    return round(1e3 * float(np.median(out)), 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="engines/default")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ticks", type=int, default=200)
    args = ap.parse_args()
    backend = SignLLMBackend.open(args.engine, args.runtime, args.threads)
    lang = backend.manifest.languages[0]
    one = concurrent(backend, 1, lang, args.ticks * 5)
    result = {
        "engine": args.engine, "runtime": args.runtime, "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "one_stream": {"frames_per_s": one["frames_per_s"], "step_ms_p50": one["tick_ms_p50"],
                       "step_ms_p99": one["tick_ms_p99"]},
        "concurrent": [concurrent(backend, n, lang, args.ticks) for n in (1, 8, 32, 64, 128)],
        "first_frame_ms": {"alone": first_frame(backend, lang, 0), "joining_64": first_frame(backend, lang, 64)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
