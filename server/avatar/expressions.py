"""The non-manual track on morph targets: VRM expressions and ARKit-style blend shapes.

A deployment's avatar may show the face with morph targets instead of bones. `CHANNEL_EXPRESSIONS`
is the one table of which expression (VRM 1.0 preset names; VRM 0.x presets are renamed to them)
or blend shape (ARKit names, read from the glTF mesh's `extras.targetNames`) shows which channel.
Per channel, the alternatives are tried in order and the first the avatar has all of is used; its
weights scale the channel's value, and the weights of all channels on one target add up, clipped
to [0, 1]. A channel the avatar shows with bones (server/avatar/face.py) is not also driven here.

Everything resolves to morph target names: an expression is the targets it binds, with their
weights (server/avatar/gltf.py reads both from the file), a blend shape is its own target. The
server renderer adds the weighted target deltas before skinning (server/avatar/skinning.py); the
page sets three.js `morphTargetInfluences` by the same names (`ready.avatar.face.morphs`).
"""

from __future__ import annotations

Binds = list[tuple[str, float]]  # morph target name, weight at 1

CHANNEL_EXPRESSIONS: dict[str, tuple[tuple[tuple[str, float], ...], ...]] = {
    "brow_raise": ((("browInnerUp", 1.0), ("browOuterUpLeft", 1.0), ("browOuterUpRight", 1.0)),
                   (("browInnerUp", 1.0),), (("surprised", 0.6),)),
    "brow_furrow": ((("browDownLeft", 1.0), ("browDownRight", 1.0)), (("angry", 0.6),)),
    "blink": ((("eyeBlinkLeft", 1.0), ("eyeBlinkRight", 1.0)), (("blink", 1.0),),
              (("blinkLeft", 1.0), ("blinkRight", 1.0))),
    "squint": ((("eyeSquintLeft", 1.0), ("eyeSquintRight", 1.0)), (("eyeBlinkLeft", 0.5), ("eyeBlinkRight", 0.5)),
               (("blink", 0.5),)),
    "mouth_open": ((("jawOpen", 1.0),), (("aa", 1.0),)),
    "mouth_spread": ((("mouthStretchLeft", 1.0), ("mouthStretchRight", 1.0)), (("ih", 1.0),)),
    "mouth_round": ((("mouthPucker", 1.0),), (("ou", 1.0),)),
}
def channel_binds(targets: list[str], expressions: dict[str, Binds], skip: set[str]) -> dict[str, Binds]:
    """Per channel not in `skip`, the morph targets (of `targets`) that show it, by the table."""
    by_name: dict[str, Binds] = {t.lower(): [(t, 1.0)] for t in targets}
    by_name.update({name.lower(): [(t, w) for t, w in binds if t in targets]
                    for name, binds in expressions.items()})
    out: dict[str, Binds] = {}
    for channel, alternatives in CHANNEL_EXPRESSIONS.items():
        if channel in skip:
            continue
        for alternative in alternatives:
            found = [by_name.get(name.lower()) for name, _ in alternative]
            if all(found):
                out[channel] = [(t, w * bw) for (_, w), binds in zip(alternative, found) for t, bw in binds]
                break
    return out
