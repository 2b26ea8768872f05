"""The training loop on a tiny regression task: best-epoch selection on the primary metric, early stopping,
checkpoints that resume an interrupted run exactly, and the schedule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from vistext.errors import UsageError
from vistext.evaluation.base import Evaluation
from vistext.training.loop import LoopSettings, fit, seed_everything


class Regression:
    """y = x @ w on 64 fixed points; the primary metric is the negative dev error, or a scripted sequence."""

    def __init__(self, scores: list[float] | None = None, stop_at: int | None = None) -> None:
        seed_everything(0)
        gen = np.random.default_rng(1)
        self.x = torch.from_numpy(gen.normal(size=(64, 4)).astype(np.float32))
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        self.model = torch.nn.Linear(4, 1)
        self.scores, self.stop_at, self.epochs_seen = scores, stop_at, 0

    def steps_per_epoch(self) -> int:
        return 4

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        if epoch == self.stop_at:
            raise KeyboardInterrupt  # an interrupted run: the checkpoint of the epoch before survives
        order = rng.permutation(64)
        for step in range(4):
            yield order[step * 16 : (step + 1) * 16]

    def loss(self, rows: np.ndarray, epoch: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        idx = torch.from_numpy(rows)
        return torch.nn.functional.mse_loss(self.model(self.x[idx])[:, 0], self.y[idx]), len(rows)

    def train_mode(self) -> None:
        self.model.train()

    def evaluate(self) -> Evaluation:
        self.epochs_seen += 1
        if self.scores is not None:
            return Evaluation({"score": self.scores[self.epochs_seen - 1]}, "score")
        with torch.no_grad():
            error = float(torch.nn.functional.mse_loss(self.model(self.x)[:, 0], self.y))
        return Evaluation({"neg_mse": -error}, "neg_mse")

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


def _run(task: Regression, epochs: int, checkpoint: Path | None = None, patience: int | None = None):
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=0.1)
    settings = LoopSettings(epochs=epochs, patience=patience, checkpoint=checkpoint, run_key={"lr": 0.1},
                            progress=False)  # fmt: skip
    return fit(task, optimizer, settings, np.random.default_rng(0))


def test_the_loop_learns_and_keeps_the_best_epoch() -> None:
    task = Regression()
    result = _run(task, epochs=6)
    errors = [-row["dev_neg_mse"] for row in result.history]
    assert len(errors) == 6 and errors[-1] < errors[0] / 1.5  # it learns
    assert result.best_epoch == int(np.argmin(errors)) + 1 and result.best_score == -min(errors)
    assert all(set(row) == {"epoch", "loss", "dev_neg_mse", "seconds"} for row in result.history)


def test_early_stopping_restores_the_best_weights() -> None:
    scores = [0.1, 0.5, 0.4, 0.45, 0.3, 0.9]  # best at epoch 2, then three epochs without a better one
    task = Regression(scores)
    snapshots: list[dict[str, torch.Tensor]] = []
    original = task.state

    def snapshot() -> dict[str, torch.Tensor]:
        snapshots.append(original())
        return snapshots[-1]

    task.state = snapshot  # type: ignore[method-assign]
    result = _run(task, epochs=6, patience=3)
    assert result.epochs_run == 5 and len(result.history) == 5 and result.best_epoch == 2
    assert result.best_score == 0.5
    best = snapshots[1]  # taken when epoch 2 improved
    assert all(torch.equal(v, best[k]) for k, v in task.model.state_dict().items())


def test_no_usable_metric_keeps_the_last_weights() -> None:
    task = Regression([float("nan")] * 3)
    result = _run(task, epochs=3)  # NaN never counts as better
    assert result.best_epoch == 0 and result.epochs_run == 3
    assert _run(Regression([float("nan")] * 3), epochs=3, patience=1).epochs_run == 1  # nor as progress


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    whole = Regression()
    expected = _run(whole, epochs=4)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(Regression(stop_at=2), epochs=4, checkpoint=checkpoint)
    assert checkpoint.is_file()
    resumed_task = Regression()
    resumed = _run(resumed_task, epochs=4, checkpoint=checkpoint)
    assert resumed_task.epochs_seen == 2  # only epochs 3 and 4 ran again
    assert [r["dev_neg_mse"] for r in resumed.history] == [r["dev_neg_mse"] for r in expected.history]
    assert all(torch.equal(v, whole.model.state_dict()[k]) for k, v in resumed_task.model.state_dict().items())
    again = Regression()
    assert _run(again, epochs=4, checkpoint=checkpoint).history == resumed.history and again.epochs_seen == 0
    other = Regression()  # another epoch count is another schedule: another run, started over
    assert _run(other, epochs=3, checkpoint=checkpoint).epochs_run == 3 and other.epochs_seen == 3


def test_schedules() -> None:
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=1.0)
    lrs: list[float] = []
    loss = task.loss

    def recording_loss(*args: object) -> tuple[torch.Tensor, int]:
        lrs.append(optimizer.param_groups[0]["lr"])
        return loss(*args)  # type: ignore[arg-type]

    task.loss = recording_loss  # type: ignore[method-assign,assignment]
    fit(task, optimizer, LoopSettings(epochs=5, progress=False), np.random.default_rng(0))
    assert len(lrs) == 20 and lrs[0] < 0.1 and max(lrs) == pytest.approx(1.0) and lrs[-1] < 1e-3
    assert int(np.argmax(lrs)) == 1  # 10% of 20 steps warming up (peak at the second), then cosine annealing
    linear = LoopSettings(epochs=1, schedule="linear", progress=False)
    with pytest.raises(UsageError, match="schedule"):
        fit(Regression(), optimizer, linear, np.random.default_rng(0))
    constant = Regression()
    sgd = torch.optim.SGD(constant.model.parameters(), lr=0.5)
    fit(constant, sgd, LoopSettings(epochs=1, schedule="constant", progress=False), np.random.default_rng(0))
    assert sgd.param_groups[0]["lr"] == 0.5


def test_evaluation_names_its_primary_metric() -> None:
    evaluation = Evaluation({"map": 0.25, "n_images": 3}, "map")
    assert evaluation.score == 0.25 and evaluation.to_dict() == {"map": 0.25, "n_images": 3, "primary": "map"}
    assert evaluation.summary().startswith("map 0.25")
    with pytest.raises(UsageError, match="primary"):
        Evaluation({"map": 0.25}, "rsum")
