"""Errors with stable codes, so a caller (CLI, server, client) can react to the kind, not the text."""

from __future__ import annotations

from pathlib import Path


class SignStreamError(Exception):
    """Base error: `code` is stable and machine-readable, the message is for people."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PoseFormatError(SignStreamError):
    """A pose file is malformed. Names the file and, where known, the line or frame."""

    code = "bad_pose_file"

    def __init__(self, path: str | Path, where: str | None, problem: str) -> None:
        self.path = str(path)
        self.where = where
        self.problem = problem
        location = f"{self.path}: {where}" if where else self.path
        super().__init__(f"{location}: {problem}")
