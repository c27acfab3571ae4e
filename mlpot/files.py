"""Writing files so that a crash or a full disk never leaves a half-written one behind: each file is written to
``.<name>.<pid>.tmp`` beside it and renamed over it only when complete (a rename within a folder is atomic)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path``; on any error the old file stays as it was and
    the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def write_text(path, text: str) -> Path:
    """``Path.write_text``, atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


__all__ = ["atomic_write", "write_text"]
