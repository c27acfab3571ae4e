"""A text handle that counts the bytes read, for progress bars over large files (conversion of data sets)."""

from __future__ import annotations

import io
from contextlib import contextmanager


@contextmanager
def open_counted(path, position: dict | None = None, errors: str = "strict"):
    """A seekable text handle on ``path`` that keeps ``position["bytes"]`` at the offset read up to (read-ahead
    included, within 64 KiB), for progress bars over large files. Seekable matters: ASE's extxyz reader copies a
    handle it cannot seek into memory whole (0.46 GB for a 91 MB file), and seeks to each frame otherwise."""
    raw = open(path, "rb", buffering=0)  # noqa: SIM115
    counter = _CountingReader(raw, position if position is not None else {})
    text = io.TextIOWrapper(io.BufferedReader(counter, 1 << 16), errors=errors)
    try:
        yield text
    finally:
        text.close()


class _CountingReader(io.RawIOBase):
    def __init__(self, raw, position: dict):
        self.raw, self.position = raw, position
        self.position["bytes"] = 0

    def readable(self):
        return True

    def readinto(self, b):
        n = self.raw.readinto(b)
        self.position["bytes"] = self.raw.tell()
        return n

    def seekable(self):
        return self.raw.seekable()

    def seek(self, offset, whence=io.SEEK_SET):
        pos = self.raw.seek(offset, whence)
        self.position["bytes"] = pos
        return pos

    def tell(self):
        return self.raw.tell()

    def close(self):
        self.raw.close()
        super().close()


__all__ = ["open_counted"]
