"""Non-manual track benchmark and README stills. Prints JSON.

    .venv/bin/python bench/face.py [--frames 2000]          # per-frame cost, JSON
    .venv/bin/python bench/face.py --stills docs/images     # docs/images/face-*.png
    .venv/bin/python bench/face.py --notation               # non-manual information in the DSGS lexicon

Cost per frame of: the track in the timeline (rules, life, the values riding on each PoseFrame:
`Timeline.next` with and without it), the rig side (`FaceRig.turn` before FK + `FaceRig.shape`
after it), skinning with 0, 4 and 52 morph targets weighted (expressions), and a 512×512 render
with and without the face (pyrender, real avatar). bench/avatar.py
includes the same figures under "face". Wall times depend on the machine's load: reported with it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines import nonmanual  # noqa: E402
from engines.frame import PoseFrame  # noqa: E402
from tools.avatar_build import ASSET  # noqa: E402
from server.avatar.face import FaceRig  # noqa: E402
from server.avatar.gltf import load_avatar  # noqa: E402
from server.avatar.retarget import Retargeter, RetargetSettings  # noqa: E402
from server.motion import Timeline, rest_pose  # noqa: E402

TEXT = "Kommst du nicht morgen?"


def _timeline_ms(frames: int, with_track: bool) -> float:
    """Mean ms of Timeline.next (with its push) for a unit signed over and over."""
    tl = Timeline(25.0, 0.2, 0.3, 0.2)
    if not with_track:  # the old timeline: no cues, no life (next() still builds the vector; replace it)
        tl.life = SimpleNamespace(values=lambda i, s: np.zeros(len(nonmanual.CHANNELS), np.float32))
    points, conf = rest_pose()
    words = TEXT.rstrip("?").split()
    t0, done, unit = time.perf_counter(), 0, 0
    while done < frames:
        unit += 1
        if with_track:
            tl.cue_unit(unit, TEXT, "sgg", [SimpleNamespace(word=w, path="notation", frames=12) for w in words])
        for s in range(len(words)):
            for _ in range(12):
                tl.push(PoseFrame(unit, s, 0, 0.0, "sign", points, conf))
        while tl.queued:
            tl.next()
            done += 1
    return (time.perf_counter() - t0) / done * 1000


def _morph_skin_ms(avatar, world: np.ndarray, n: int) -> dict:
    """Skinning a frame without morph targets, and with 4 or 52 (ARKit's count), all weighted, each
    moving every vertex of the head and face (hair, ears, eyes, brows, lids, nose, mouth): the cost
    of expressions on the server."""
    from dataclasses import replace

    from server.avatar.skinning import Skinner

    rng = np.random.default_rng(0)
    names = avatar.rig.names
    face_bones = [names.index(n) for n in ("head", "jaw", "browLeft", "browRight", "eyelidLeft", "eyelidRight")]
    head = np.isin(avatar.mesh.joints[:, 0], face_bones)[:, None]
    out: dict = {"moved_vertices": int(head.sum()), "of": len(head)}
    for k in (0, 4, 52):
        morphs = {f"t{i}": np.where(head, rng.normal(0, 1e-3, avatar.mesh.positions.shape), 0).astype(np.float32)
                  for i in range(k)}
        skinner = Skinner(avatar.rig, replace(avatar.mesh, morphs=morphs))
        weights = np.full(k, 0.5, np.float32) if k else None
        t0 = time.perf_counter()
        for _ in range(n):
            skinner.skin(world, weights)
        out[f"morph_targets_{k}"] = round((time.perf_counter() - t0) / n * 1000, 3)
    return out


def measure(frames: int = 2000, render_frames: int = 100) -> dict:
    avatar = load_avatar(ASSET)
    face = FaceRig.of_avatar(avatar)
    rig = avatar.rig
    local = Retargeter(rig, 25.0, RetargetSettings(smoothing=False)).rest
    values = np.zeros(len(nonmanual.CHANNELS), np.float32)
    values[[nonmanual.INDEX[c] for c in ("brow_raise", "head_shake", "mouth_open", "breath", "blink")]] = (1.0, 0.7, 0.5, 0.3, 0.5)
    out: dict = {"load_average_start": [round(x, 2) for x in os.getloadavg()]}
    out["timeline_next_ms"] = {"without_track": round(_timeline_ms(frames, False), 4),
                               "with_track": round(_timeline_ms(frames, True), 4)}
    n = frames
    t0 = time.perf_counter()
    for _ in range(n):
        rig.fk(local)
    fk = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        face.world(local, values)
    with_face = (time.perf_counter() - t0) / n
    resting = np.zeros_like(values)
    resting[[nonmanual.INDEX["breath"], nonmanual.INDEX["sway"]]] = (0.5, 0.2)  # idle: life only
    t0 = time.perf_counter()
    for _ in range(n):
        face.world(local, resting)
    at_rest = (time.perf_counter() - t0) / n
    out["rig_ms"] = {"fk": round(fk * 1000, 4), "fk_with_face": round(with_face * 1000, 4),
                     "face_added": round((with_face - fk) * 1000, 4),
                     "face_added_at_rest": round((at_rest - fk) * 1000, 4)}
    out["skin_ms"] = _morph_skin_ms(avatar, rig.fk(local), frames // 4)
    from server.avatar.render import AvatarRenderer

    with AvatarRenderer(avatar, 512, 512) as r:
        plain, faced = rig.fk(local), face.world(local, values)
        r.render(plain)
        timing = {}
        for key, world in (("without_face", plain), ("with_face", faced)):
            t0 = time.perf_counter()
            for _ in range(render_frames):
                r.render(world)
            timing[key] = round((time.perf_counter() - t0) / render_frames * 1000, 2)
        out["render_512_ms"] = timing
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _unit_frames(text: str, language: str, words: list[str], seqs: list) -> list:
    """The PoseFrames the timeline plays for one unit of signs `seqs` (one PoseSequence per word)."""
    tl = Timeline(25.0, 0.2, 0.3, 0.2)
    tl.cue_unit(1, text, language, [SimpleNamespace(word=w, path="notation", frames=len(s.frames)) for w, s in zip(words, seqs)])
    for k, seq in enumerate(seqs):
        for p, c in zip(seq.frames, seq.confidence):
            tl.push(PoseFrame(1, k, 0, 0.0, "sign", p.astype(np.float32), c.astype(np.float32)))
    out = []
    while tl.queued:
        out.append(tl.next()[0])
    return out


def stills(folder: Path) -> None:
    """docs/images/face-question.png, face-negation.png, face-mouthing.png, face-eyes.png: the real
    avatar drawn by the video path (retarget, the track on the rig, pyrender), head and shoulders,
    side by side."""
    from PIL import Image, ImageDraw

    from engines.loader import notation_lexicons
    from engines.notation_backend import NotationBackend
    from server.avatar.painter import AvatarPainter
    from server.config import load_config

    letters = Path(__file__).resolve().parent.parent / "engines" / "default" / "letters.npz"
    lexicons, lemmas = notation_lexicons(letters.parent, {})
    backend = NotationBackend(25.0, letters, lexicons, lemmas)
    cfg = load_config()
    painter = AvatarPainter.open(cfg, background=(1.0, 1.0, 1.0, 1.0))
    rest_points, rest_conf = rest_pose()

    def still_unit(text: str, language: str) -> list:
        words = text.rstrip("?.").split()
        rest = SimpleNamespace(frames=np.repeat(rest_points[None], 14, 0), confidence=np.repeat(rest_conf[None], 14, 0))
        return _unit_frames(text, language, words, [rest] * len(words))

    def draw(frame, crop: str = "head") -> Image.Image:
        img = Image.fromarray(painter.paint(frame.points, frame.confidence, frame.face)[..., :3])
        w, h = img.size
        box = (int(w * 0.30), 0, int(w * 0.70), int(h * 0.32)) if crop == "head" else (int(w * 0.12), 0, int(w * 0.88), int(h * 0.70))
        return img.crop(box)

    def sheet(tiles: list[tuple[str, Image.Image]], out: Path) -> None:
        w, h = tiles[0][1].size
        scale = 2 if w < 300 else 1
        page = Image.new("RGB", (w * scale * len(tiles), h * scale + 22), "white")
        pen = ImageDraw.Draw(page)
        for k, (label, t) in enumerate(tiles):
            page.paste(t.resize((w * scale, h * scale), Image.LANCZOS), (k * w * scale, 22))
            pen.text((k * w * scale + 6, 5), label, fill=(0, 0, 0))
        page.save(out, optimize=True)
        print(out)

    folder.mkdir(parents=True, exist_ok=True)
    with painter:
        def mid(frames: list, segment: int) -> object:
            signed = [f for f in frames if f.segment == segment]
            return signed[len(signed) // 2]
        statement, question = still_unit("Du kommst morgen.", "gsg"), still_unit("Kommst du morgen?", "gsg")
        wh = still_unit("Wo wohnst du?", "gsg")
        sheet([("Du kommst morgen.", draw(mid(statement, 1))), ("Kommst du morgen?  brows raised", draw(mid(question, 1))),
               ("Wo wohnst du?  brows furrowed", draw(mid(wh, 1)))], folder / "face-question.png")
        base = mid(statement, 1)

        def eyes(**values: float) -> object:
            f = copy.copy(base)
            f.face = base.face.copy()
            f.face[[nonmanual.INDEX["blink"], nonmanual.INDEX["squint"]]] = 0.0
            for k, x in values.items():
                f.face[nonmanual.INDEX[k]] = x
            return f
        sheet([("eyes open", draw(eyes())), ("squint", draw(eyes(squint=1.0))), ("blink: half", draw(eyes(blink=0.5))),
               ("blink: closed", draw(eyes(blink=1.0)))], folder / "face-eyes.png")
        neg = still_unit("Ich komme nicht.", "gsg")
        shaken = [f for f in neg if f.segment in (2,)]
        left = max(shaken, key=lambda f: f.face[nonmanual.INDEX["head_shake"]])
        right = min(shaken, key=lambda f: f.face[nonmanual.INDEX["head_shake"]])
        sheet([("Ich komme.", draw(mid(still_unit("Ich komme.", "gsg"), 1))), ("Ich komme nicht.  shake: left", draw(left)),
               ("... shake: right", draw(right))], folder / "face-negation.png")
        entry = backend.entry("haus", "sgg")
        assert entry is not None
        seq = backend.sign(entry)
        frames = [f for f in _unit_frames("Haus", "sgg", ["Haus"], [seq]) if f.segment == 0]
        picks = [int(len(frames) * x) for x in (0.1, 0.5, 0.85)]
        labels = ["HAUS  mouthing: h", "a-u", "s"]
        sheet([(lab, draw(frames[i], "body")) for lab, i in zip(labels, picks)], folder / "face-mouthing.png")


def notation_nonmanuals(path: Path = Path(__file__).resolve().parent.parent / "engines/default/notation/sgg.json") -> dict:
    """What non-manual information the bundled DSGS lexicon carries: the entries' fields, how many
    have a non-manual field (HamNoSys has no non-manual tier; SiGML's `hnm_*` tiers and mouth
    pictures would be one), and the head and face symbols (ISWA S2ff–S36c) in their SignWriting."""
    import collections
    import re

    entries = json.loads(path.read_text(encoding="utf-8"))
    fields = collections.Counter(k for e in entries for k in e)
    manual = {"gloss", "hamnosys", "fsw", "sign_id"}  # a gloss, the manual notation, its SignWriting, an id
    nonmanual_fields = sorted(k for k in fields if k not in manual)
    bases: collections.Counter = collections.Counter()
    with_face = 0
    for e in entries:
        face = [b for b in re.findall(r"S([0-9a-f]{3})[0-9a-f]{2}", e.get("fsw") or "") if 0x2FF <= int(b, 16) <= 0x36C]
        bases.update(f"S{b}" for b in face)
        with_face += any(b != "2ff" for b in face)  # more than the plain head circle
    return {"lexicon": str(path.name), "entries": len(entries), "fields": dict(fields),
            "entries_with_a_non_manual_field": sum(any(k in e for k in nonmanual_fields) for e in entries),
            "signwriting_entries_with_face_symbols": with_face,
            "signwriting_head_face_symbols": dict(bases.most_common())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--render-frames", type=int, default=100)
    ap.add_argument("--stills", type=Path, default=None, help="render the README stills into this folder and exit")
    ap.add_argument("--notation", action="store_true", help="count the DSGS lexicon's non-manual information and exit")
    args = ap.parse_args()
    if args.notation:
        print(json.dumps(notation_nonmanuals(), indent=2))
        return
    if args.stills is not None:
        stills(args.stills)
        return
    print(json.dumps(measure(args.frames, args.render_frames), indent=2))


if __name__ == "__main__":
    main()
