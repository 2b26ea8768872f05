"""How the CLI prints: exactly one JSON document with ``--json``, readable lines otherwise."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def say(line: str = "") -> None:
    print(line, flush=True)


def percent(score: float) -> str:
    return f"{score:6.3f}"
