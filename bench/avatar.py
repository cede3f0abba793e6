"""Avatar benchmark: retargeting fidelity on real lexicon recordings, and speed. Prints JSON.

    .venv/bin/python bench/avatar.py [--recordings 120] [--render-frames 150] [--batch 1,8,25,50]

Fidelity: forward kinematics of the retargeted avatar against the input (tools/fidelity.py):
mean angle between corresponding bone directions (both arms, every finger segment) and fingertip
error with the input rebuilt at the avatar's proportions. Speed: per-frame retargeting (streaming,
with smoothing; and S streams a tick in one batch), forward kinematics, skinning (rigid parts and full linear blend skinning), and
rendering 512×512 offscreen. Wall times depend on what else runs: the machine's load average is
reported alongside, and CPU time of this process is given for the CPU-only stages.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.formats.posefile import read_pose  # noqa: E402
from engines.lexicon import bundled_lexicon_dir  # noqa: E402
from tools.avatar_build import ASSET  # noqa: E402
from tools.fidelity import Fidelity, measure  # noqa: E402
from server.avatar.gltf import load_avatar  # noqa: E402
from server.avatar.retarget import RetargetSettings, Retargeter, retarget_sequence  # noqa: E402
from server.avatar.skinning import Skinner  # noqa: E402


def pick_recordings(n: int) -> list[tuple[str, Path]]:
    """n distinct recordings, spread evenly over every sign language of the lexicon."""
    root = bundled_lexicon_dir()
    by_lang: dict[str, list[Path]] = defaultdict(list)
    seen = set()
    with open(root / "index.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["path"] not in seen:
                seen.add(row["path"])
                by_lang[row["signed_language"]].append(root / row["path"])
    picked: list[tuple[str, Path]] = []
    rounds = 0
    while len(picked) < n and rounds < 1000:
        for lang in sorted(by_lang):
            paths = by_lang[lang]
            if rounds < len(paths):
                picked.append((lang, paths[(rounds * 7) % len(paths)]))
        rounds += 1
    return picked[:n]


def ms(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1000
    return {"mean": round(float(a.mean()), 3), "p50": round(float(np.median(a)), 3), "p95": round(float(np.percentile(a, 95)), 3)}


def fidelity(avatar, recordings) -> dict:
    total, per_lang = Fidelity(), defaultdict(Fidelity)
    frames = 0
    for lang, path in recordings:
        seq = read_pose(path)
        frames += len(seq)
        result = measure(avatar.rig, seq, retarget_sequence(avatar.rig, seq))
        total.add(result)
        per_lang[lang].add(result)
    out = total.summary()
    out["fingertip_error_mean_mm"] = round(out.pop("fingertip_error_mean") * 1000, 2)  # our avatar is in metres
    out["recordings"], out["frames"], out["languages"] = len(recordings), frames, len(per_lang)
    out["bone_angle_mean_deg_by_language"] = {k: round(v.summary()["bone_angle_mean_deg"], 2) for k, v in sorted(per_lang.items())}
    unlimited = Fidelity()
    for _, path in recordings[::4]:
        seq = read_pose(path)
        unlimited.add(measure(avatar.rig, seq, retarget_sequence(avatar.rig, seq, RetargetSettings(smoothing=False, limits=False))))
    out["without_limits_and_smoothing_bone_angle_mean_deg"] = unlimited.summary()["bone_angle_mean_deg"]
    return out


def cpu_speed(avatar, recordings) -> dict:
    rig = avatar.rig
    seqs = [read_pose(p).resample(25.0) for _, p in recordings[:40]]
    skin = {m: Skinner(rig, avatar.mesh, m) for m in ("rigid", "lbs")}
    t_ret, t_fk, t_skin, t_total, c_ret = [], [], {m: [] for m in skin}, [], []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    n = 0
    for seq in seqs:
        rt = Retargeter(rig, seq.fps)
        for pts, conf in zip(seq.frames.astype(np.float64), seq.confidence):
            c0, t0 = time.process_time(), time.perf_counter()
            local = rt.push(pts, conf)
            t1 = time.perf_counter()
            c_ret.append(time.process_time() - c0)
            t_ret.append(t1 - t0)
            if local is None:
                continue
            world = rig.fk(local)
            t2 = time.perf_counter()
            t_fk.append(t2 - t1)
            for m, s in skin.items():
                t3 = time.perf_counter()
                s.skin(world)
                t_skin[m].append(time.perf_counter() - t3)
            t_total.append(t_ret[-1] + t_fk[-1] + t_skin["rigid"][-1])
            n += 1
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    return {
        "frames": n,
        "retarget_cpu_ms": ms(c_ret),  # CPU time (process_time): what the wall figures are under load
        "cpu_ms_per_frame": round(cpu / len(t_ret) * 1000, 3),  # retarget + FK + both skinnings, CPU time
        "retarget_ms": ms(t_ret),
        "fk_ms": ms(t_fk),
        "skin_rigid_ms": ms(t_skin["rigid"]),
        "skin_lbs_ms": ms(t_skin["lbs"]),
        "retarget_fk_skin_rigid_ms": ms(t_total),  # the per-frame avatar budget (≤ 3 ms)
        "cpu_share_of_wall": round(cpu / wall, 3),  # < 1: this process waited for the CPU
        "vertices": int(len(avatar.mesh.positions)),
    }


def batched_speed(avatar, recordings, sizes: list[int], ticks: int = 100) -> dict:
    """Retargeting S streams a clock tick in one batch (Retargeter.push_many, what the rotations
    stream does for sessions that tick together): CPU ms per stream-frame and per tick."""
    rig = avatar.rig
    seqs = [read_pose(p).resample(25.0) for _, p in recordings[:max(sizes)]]
    out = {}
    for n in sizes:
        rts = [Retargeter(rig) for _ in range(n)]
        c0, w0 = time.process_time(), time.perf_counter()
        for t in range(ticks):  # each stream loops its recording
            pts = np.stack([seqs[i].frames[t % len(seqs[i])] for i in range(n)]).astype(np.float64)
            conf = np.stack([seqs[i].confidence[t % len(seqs[i])] for i in range(n)])
            Retargeter.push_many(rts, pts, conf)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        out[f"streams_{n}"] = {"cpu_ms_per_stream_frame": round(cpu / (n * ticks) * 1000, 3),
                               "cpu_ms_per_tick": round(cpu / ticks * 1000, 2),
                               "wall_ms_per_tick": round(wall / ticks * 1000, 2),
                               # CPU cores that n streams at 25 fps need for retargeting alone
                               "cores_at_25fps": round(cpu / ticks * 25, 3)}
    return out


def render_speed(avatar, recordings, frames: int) -> dict:
    from OpenGL import GL

    from server.avatar.render import AvatarRenderer

    seq = read_pose(recordings[0][1]).resample(25.0)
    local = retarget_sequence(avatar.rig, seq)
    worlds = [avatar.rig.fk(local[i % len(local)]) for i in range(frames)]
    out = {"triangles": int(len(avatar.mesh.indices))}
    for samples in (0, 4):
        with AvatarRenderer(avatar, 512, 512, samples=samples) as r:
            if "gl_renderer" not in out:
                out["platform"] = os.environ.get("PYOPENGL_PLATFORM")
                out["gl_renderer"] = r._pool.submit(lambda: GL.glGetString(GL.GL_RENDERER).decode()).result()
            r.render(worlds[0])
            c0, t0 = time.process_time(), time.perf_counter()
            for w in worlds:
                r.render(w)
            serial = (time.perf_counter() - t0) / frames
            cpu = (time.process_time() - c0) / frames  # skinning + GL (llvmpipe's threads are ours)
            t0 = time.perf_counter()
            pending = None
            for w in worlds:  # skin the next frame while the GL thread draws this one
                job = r.submit(w)
                if pending is not None:
                    pending.result()
                pending = job
            pending.result()
            pipelined = (time.perf_counter() - t0) / frames
            key = f"msaa{samples}"
            out[f"{key}_frame_ms"] = round(serial * 1000, 2)
            out[f"{key}_frame_cpu_ms"] = round(cpu * 1000, 2)
            out[f"{key}_fps"] = round(1 / serial, 1)
            out[f"{key}_pipelined_fps"] = round(1 / pipelined, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=120)
    parser.add_argument("--render-frames", type=int, default=150)
    parser.add_argument("--batch", default="1,8,25,50", help="streams a tick to retarget in one batch ('' skips)")
    args = parser.parse_args()
    avatar = load_avatar(ASSET)
    recordings = pick_recordings(args.recordings)
    result = {"avatar": str(ASSET.relative_to(ASSET.parents[3])), "load_average_start": [round(x, 2) for x in os.getloadavg()],
              "cpu_count": os.cpu_count()}
    result["fidelity"] = fidelity(avatar, recordings)
    result["cpu"] = cpu_speed(avatar, recordings)
    result["retarget_batched"] = batched_speed(avatar, recordings, [int(x) for x in args.batch.split(",") if x])
    result["render_512"] = render_speed(avatar, recordings, args.render_frames)
    from face import measure as face_measure  # bench/face.py: the non-manual track's cost per frame
    result["face"] = face_measure(render_frames=args.render_frames)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
