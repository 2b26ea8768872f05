"""The exception hierarchy. Library code raises these; only the app layer prints or exits."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

# the packages of the workshop (training, export, concept-space building): the [train] extra, never the runtime
TRAIN_PACKAGES = ("torch", "transformers")


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


class ClusterError(VistextError):
    """A compute cluster cannot do the work: no free CPU, lost nodes, or no progress within the run's deadline."""


class UsageError(VistextError):
    """The request itself is wrong (bad argument combination, empty query, unknown option value)."""


class MissingExtraError(UsageError):
    """An optional part of vistext needs packages that one of its extras installs, and they are not installed."""

    def __init__(self, extra: str, what: str, missing: Sequence[str]) -> None:
        self.extra = extra
        self.missing = list(missing)
        absent = ", ".join(self.missing)
        super().__init__(f"{what} needs the [{extra}] extra ({absent} not installed): pip install 'vistext[{extra}]'")


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken or half-installed package counts as absent
        return False


def require_extra(extra: str, what: str, packages: Sequence[str] = TRAIN_PACKAGES) -> None:
    """Raise ``MissingExtraError`` naming ``extra`` unless every import name in ``packages`` is installed (looked
    up, not imported: checking costs no import of torch)."""
    missing = [package for package in packages if not _installed(package)]
    if missing:
        raise MissingExtraError(extra, what, missing)
