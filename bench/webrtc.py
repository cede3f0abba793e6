"""Benchmark of /offer against a real server process on 127.0.0.1 with real aiortc viewers; prints JSON.

  setup:    offer → answer, answer → first decoded video frame (ms, per viewer)
  rate:     decoded frames/s per viewer over --seconds while all N viewers watch (target: video.fps)
  latency:  final caption sent → first decoded frame that visibly differs from the rest pose (p50/p95)

python bench/webrtc.py [--viewers 4] [--seconds 10] [--captions 10]   (codec: [webrtc] codec of config.toml)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.live import WORDS, start_server  # noqa: E402
from server.transports.webrtc import Viewer  # noqa: E402

_MOVED = 8.0  # mean absolute RGB difference from the rest picture that counts as "the avatar moved"


async def _picture(track) -> np.ndarray:
    return (await asyncio.wait_for(track.recv(), 20)).to_ndarray(format="rgb24").astype(np.int16)


async def watch(track, seconds: float) -> int:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        await _picture(track)
        n += 1
    return n


async def main(args: argparse.Namespace) -> dict:
    proc, url = start_server(max_sessions=max(16, args.viewers + 4))
    try:
        async with aiohttp.ClientSession() as http:
            viewers, tracks, setup = [], [], []
            for _ in range(args.viewers):
                t0 = time.perf_counter()
                viewer, status, body = await Viewer.offer(http, url, language="ase")
                assert status == 200, body
                t1 = time.perf_counter()
                track = await asyncio.wait_for(viewer.video, 20)
                await _picture(track)
                setup.append(((t1 - t0) * 1000, (time.perf_counter() - t1) * 1000))
                viewers.append(viewer)
                tracks.append(track)
            counts = await asyncio.gather(*(watch(t, args.seconds) for t in tracks))
            rates = [c / args.seconds for c in counts]
            # Latency on viewer 0 while the others keep decoding.
            others = [asyncio.create_task(watch(t, 1e9)) for t in tracks[1:]]
            lat = []
            rest = await _picture(tracks[0])
            for i in range(args.captions):
                t0 = time.perf_counter()
                await viewers[0].send({"type": "caption", "id": f"l{i}", "text": " ".join(WORDS[i % 10:i % 10 + 2]) + ".",
                                       "final": True})
                while float(np.abs(await _picture(tracks[0]) - rest).mean()) < _MOVED:
                    pass
                lat.append((time.perf_counter() - t0) * 1000)
                await viewers[0].until("unit_status", timeout=30)
                for _ in range(250):  # back at rest before the next caption
                    if float(np.abs(await _picture(tracks[0]) - rest).mean()) < _MOVED / 4:
                        break
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            for v in viewers:
                await v.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    offer_ms = [s[0] for s in setup]
    first_ms = [s[1] for s in setup]
    return {"viewers": args.viewers, "seconds": args.seconds,
            "offer_to_answer_ms": {"p50": round(float(np.median(offer_ms)), 1), "max": round(max(offer_ms), 1)},
            "answer_to_first_frame_ms": {"p50": round(float(np.median(first_ms)), 1), "max": round(max(first_ms), 1)},
            "decoded_fps_per_viewer": {"min": round(min(rates), 2), "mean": round(float(np.mean(rates)), 2)},
            "caption_to_motion_ms": {"n": len(lat), "p50": round(float(np.percentile(lat, 50)), 1),
                                     "p95": round(float(np.percentile(lat, 95)), 1)}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--captions", type=int, default=10)
    print(json.dumps(asyncio.run(main(ap.parse_args())), indent=2))
