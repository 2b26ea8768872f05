"""What every evaluator returns: a metrics dict and the name of the one metric that ranks models (and picks a
training run's best epoch), as sentence-transformers' evaluators do."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vistext.errors import UsageError


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    primary: str  # a key of ``metrics``; higher is better

    def __post_init__(self) -> None:
        if self.primary not in self.metrics:
            raise UsageError(f"primary metric {self.primary!r} is not among {', '.join(self.metrics)}")

    @property
    def score(self) -> float:
        """The primary metric (NaN when it could not be measured)."""
        value = self.metrics[self.primary]
        return float("nan") if value is None else float(value)

    def summary(self) -> str:
        """One line: the primary metric first, then the other float metrics."""
        score = self.score
        parts = [f"{self.primary} {score:.4g}" if not math.isnan(score) else f"{self.primary} n/a"]
        parts += [f"{k} {v:.4g}" for k, v in self.metrics.items() if k != self.primary and isinstance(v, float)]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The metrics plus ``"primary"`` (its name)."""
        return {**self.metrics, "primary": self.primary}
