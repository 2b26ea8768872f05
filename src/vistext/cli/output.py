"""How the CLI prints: exactly one JSON document with ``--json``, readable lines otherwise."""

from __future__ import annotations

import sys
from typing import Any

from vistext.service.results import json_text


def emit_json(document: Any) -> None:
    sys.stdout.write(json_text(document))
    sys.stdout.write("\n")
    sys.stdout.flush()


def say(line: str = "") -> None:
    print(line, flush=True)


def percent(score: float) -> str:
    return f"{score:6.3f}"


class JsonList:
    """One JSON array written to stdout item by item, so a long answer streams (still one document, one line).

    The ``[`` is written with the first item, so an error raised before any item (a missing model) is still
    printed as the only document."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, item: Any) -> None:
        sys.stdout.write(("," if self.count else "[") + json_text(item))
        sys.stdout.flush()
        self.count += 1

    def close(self) -> None:
        sys.stdout.write(("]" if self.count else "[]") + "\n")
        sys.stdout.flush()
