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
