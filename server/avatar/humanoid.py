"""VRM humanoid bone names: which ones signing needs, and how other rigs name them.

Names follow VRM 1.0 (`thumbMetacarpal`, `thumbProximal`, `thumbDistal`). VRM 0.x called the same
three thumb bones `thumbProximal`, `thumbIntermediate`, `thumbDistal`; `vrm0_to_vrm1` converts.
"""

from __future__ import annotations

import re

SIDES = ("left", "right")
FINGERS = ("thumb", "index", "middle", "ring", "little")
FINGER_SEGMENTS: dict[str, tuple[str, str, str]] = {
    "thumb": ("Metacarpal", "Proximal", "Distal"),
    **{f: ("Proximal", "Intermediate", "Distal") for f in FINGERS[1:]},
}

TORSO = ("hips", "spine", "chest", "upperChest", "neck", "head")


def finger_bones(side: str, finger: str) -> tuple[str, str, str]:
    return tuple(f"{side}{finger.capitalize()}{seg}" for seg in FINGER_SEGMENTS[finger])  # type: ignore[return-value]


def arm_bones(side: str) -> tuple[str, str, str]:
    return (f"{side}UpperArm", f"{side}LowerArm", f"{side}Hand")


# What signing cannot do without: both arms, both hands, every finger segment (36 bones).
REQUIRED: tuple[str, ...] = tuple(
    b for side in SIDES for b in arm_bones(side) + tuple(x for f in FINGERS for x in finger_bones(side, f))
)
# Used when present; without them the torso and head just stay still.
OPTIONAL: tuple[str, ...] = TORSO + ("leftShoulder", "rightShoulder", "jaw")
ALL_BONES: tuple[str, ...] = OPTIONAL + REQUIRED

_VRM0_THUMB = {"ThumbProximal": "ThumbMetacarpal", "ThumbIntermediate": "ThumbProximal"}


def vrm0_to_vrm1(name: str) -> str:
    for old, new in _VRM0_THUMB.items():
        if name.endswith(old):
            return name[: -len(old)] + new
    return name


def _mixamo() -> dict[str, str]:
    table = {"Hips": "hips", "Spine": "spine", "Spine1": "chest", "Spine2": "upperChest", "Neck": "neck", "Head": "head"}
    mixamo_finger = {"thumb": "Thumb", "index": "Index", "middle": "Middle", "ring": "Ring", "little": "Pinky"}
    for side in SIDES:
        s = side.capitalize()
        table |= {f"{s}Shoulder": f"{side}Shoulder", f"{s}Arm": f"{side}UpperArm",
                  f"{s}ForeArm": f"{side}LowerArm", f"{s}Hand": f"{side}Hand"}
        for finger, mname in mixamo_finger.items():
            for i, bone in enumerate(finger_bones(side, finger), 1):
                table[f"{s}Hand{mname}{i}"] = bone
    return table


# Mixamo / common FBX-export names (after dropping a "mixamorig:" style prefix).
MIXAMO: dict[str, str] = _mixamo()


def normalise(name: str) -> str:
    """Compare names without case, separators or a namespace prefix ("mixamorig:LeftArm")."""
    return re.sub(r"[^a-z0-9]", "", name.rsplit(":", 1)[-1].lower())
