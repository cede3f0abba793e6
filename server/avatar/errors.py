"""Avatar errors with stable codes."""

from __future__ import annotations

from pathlib import Path

from engines.errors import SignStreamError


class AvatarError(SignStreamError):
    """An avatar file cannot drive signing. Names the file."""

    code = "bad_avatar"

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class AvatarReadError(AvatarError):
    """Not a readable glTF 2.0 file (or a buffer it names is missing)."""

    code = "avatar_unreadable"


class AvatarAccessorError(AvatarError):
    """An accessor points outside its buffer, has the wrong type, or holds bad values."""

    code = "avatar_bad_accessor"


class AvatarSkinError(AvatarError):
    """No skinned mesh: nothing the skeleton could move."""

    code = "avatar_no_skin"


class AvatarBonesError(AvatarError):
    """Bones that signing needs (arms, hands, fingers) are missing."""

    code = "avatar_missing_bones"


class RenderError(SignStreamError):
    """No OpenGL context could be made (neither EGL nor OSMesa), or rendering failed."""

    code = "render_failed"
