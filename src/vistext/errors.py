"""The exception hierarchy. Library code raises these; only the app layer prints or exits."""

from __future__ import annotations

from pathlib import Path


class VistextError(Exception):
    """Base class: every error vistext raises on purpose. Its message is one line a user can act on."""


class ImageDecodeError(VistextError):
    """A file could not be read as an image (missing, truncated, not an image, too large...)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(VistextError):
    """A dataset file is missing or malformed. Names the file and, where known, the line."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class ModelError(VistextError):
    """A model cannot be built, found or loaded (unknown name, missing weights, version mismatch)."""


class StoreError(VistextError):
    """The catalogue or vector index cannot be opened, read or written."""


class UsageError(VistextError):
    """The request itself is wrong (bad argument combination, empty query, unknown option value)."""
