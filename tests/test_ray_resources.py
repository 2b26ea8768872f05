"""How a Ray run sizes its stages from the CPUs free (``ray_resources``) and how it reports a Ray failure in one
line (``ray_watch.failure_line``): plain values, no cluster."""

from __future__ import annotations

import pytest

from vistext.errors import ClusterError
from vistext.indexing.ray_resources import size_stages
from vistext.indexing.ray_watch import failure_line


@pytest.mark.parametrize(
    ("free", "total", "smallest", "expected"),
    [
        (2.0, 2.0, 2.0, (1, 1.0, 0.5)),  # one machine of 2 cores: one actor of a core, decoders share the other
        (1.0, 1.0, 1.0, (1, 0.5, 0.5)),  # one CPU: the actor leaves half of it to a decoder (it took all of it)
        (1.0, 8.0, 8.0, (1, 0.5, 0.5)),  # 7 of 8 held by other jobs: sized from the one free
        (16.0, 16.0, 8.0, (8, 1.0, 0.5)),
        (3.0, 3.0, 1.0, (1, 0.5, 0.5)),  # one-CPU nodes: any node left can hold the actor beside a decoder
    ],
)
def test_stages_fit_the_free_cpus(
    free: float, total: float, smallest: float, expected: tuple[int, float, float]
) -> None:
    stages = size_stages({"CPU": free}, {"CPU": total}, smallest_node=smallest)
    assert (stages.actors, stages.actor_cpus, stages.decode_cpus) == expected
    assert stages.actors * stages.actor_cpus + stages.decode_cpus <= free
    assert stages.actor_gpus == 0 and "free of" in stages.describe()


def test_gpus_and_a_chosen_pool() -> None:
    stages = size_stages({"CPU": 8.0, "GPU": 2.0}, {"CPU": 8.0, "GPU": 2.0})
    assert (stages.actors, stages.actor_gpus, stages.actor_cpus) == (2, 1, 1.0)
    many = size_stages({"CPU": 2.0}, {"CPU": 2.0}, actors=8)
    assert many.actors == 8 and many.actors * many.actor_cpus + many.decode_cpus <= 2.0


@pytest.mark.parametrize(("free", "total", "why"), [(0.0, 4.0, "held by other jobs"), (0.0, 0.0, "has none")])
def test_no_free_cpu_is_refused_at_once(free: float, total: float, why: str) -> None:
    with pytest.raises(ClusterError, match=f"no free CPU .*{why}"):
        size_stages({"CPU": free}, {"CPU": total})


def test_a_ray_failure_is_the_line_that_names_it() -> None:
    report = (
        "ray::MapWorker(MapBatches(EncodeAndWrite)).__init__() (pid=814, ip=127.0.0.1)\n"
        "  At least one of the input arguments for this task could not be computed:\n"
        "traceback: Traceback (most recent call last):\n          ^^^^^^^^\n"
        "\x1b[36mModuleNotFoundError: No module named 'vistext.x'\x1b[39m"
    )
    assert failure_line(RuntimeError(report)) == "ModuleNotFoundError: No module named 'vistext.x'"
    assert failure_line(RuntimeError("\n  the worker died\n")) == "the worker died"
    assert failure_line(RuntimeError("")) == "RuntimeError"
