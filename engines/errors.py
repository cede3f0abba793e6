"""Errors with stable codes, so a caller (CLI, server, client) can react to the kind, not the text."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn


class SignStreamError(Exception):
    """Base error: `code` is stable and machine-readable, the message is for people."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):
        # Rebuilt from its state, not by calling __init__: subclasses take other arguments than the
        # message, and an error raised in a worker process must reach the parent with its code.
        return _restore, (type(self), self.message, self.__dict__)


def _restore(cls: type[SignStreamError], message: str, state: dict) -> SignStreamError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class PoseFormatError(SignStreamError):
    """A pose file is malformed. Names the file and, where known, the line or frame."""

    code = "bad_pose_file"

    def __init__(self, path: str | Path, where: str | None, problem: str) -> None:
        self.path = str(path)
        self.where = where
        self.problem = problem
        location = f"{self.path}: {where}" if where else self.path
        super().__init__(f"{location}: {problem}")


def fail(exc: BaseException, code: str = "bad_argument") -> NoReturn:
    """End a CLI command on an error: `error [code]: message` on stderr, exit status 2.

    A SignStreamError brings its own code; any other exception (a bad argument, a missing file)
    is reported under `code`. Every CLI (server, avatar, training) uses this one, so the shape of
    a coded error is the same everywhere. typer is imported here, not above: engines stays
    importable without it.
    """
    import typer

    if isinstance(exc, SignStreamError):
        code, message = exc.code, exc.message
    else:
        message = str(exc)
    typer.echo(f"error [{code}]: {message}", err=True)
    raise typer.Exit(2)
