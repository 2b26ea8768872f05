"""How much of a Ray cluster an indexing run asks for: sized from what is free when it starts, not from its size.

A run has two stages, decode tasks and model actors. Sized from the cluster's total CPUs, a cluster whose CPUs
are partly held by other jobs (or a one-CPU cluster, where one model actor of 1 CPU leaves nothing for the decode
tasks that feed it) waits forever. So the actors and the decoders share the CPUs that
``ray.available_resources()`` reports free: at most half for the model actors (fractions of a CPU where that is
all there is, since Ray schedules fractional CPUs), the rest for decoding. Neither asks for more than half the
CPUs of the smallest node, so whichever nodes are lost, any one left can hold a model actor beside a decoder
(on one-CPU nodes a run that kept 1-CPU actors stalled once a node was lost: the actor restarted on the last node
held its only CPU). A cluster with no free CPU at all is refused at once, in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vistext.errors import ClusterError

MIN_FREE_CPUS = 0.2  # below this a run would crawl; it is refused instead
DECODE_CPUS = 0.5  # a decode task's share at most: decoding is light next to the model, two share a core
ACTOR_CPUS = 1.0  # a model actor's share at most: one ONNX session's worth


@dataclass(frozen=True)
class StageResources:
    """What each stage asks Ray for."""

    actors: int  # model actors in the pool
    actor_cpus: float  # CPUs per model actor
    actor_gpus: int  # GPUs per model actor (0 or 1)
    decode_cpus: float  # CPUs per decode task
    free_cpus: float  # free when the run was sized: the run's whole budget
    total_cpus: float

    def describe(self) -> str:
        """One phrase for the log and for error messages."""
        gpu = f" + {self.actor_gpus} GPU" if self.actor_gpus else ""
        return (
            f"{self.actors} model actor(s) of {self.actor_cpus:g} CPU{gpu} and decode tasks of {self.decode_cpus:g} "
            f"CPU, from {self.free_cpus:g} free of {self.total_cpus:g} CPUs"
        )


def size_stages(
    available: Mapping[str, float],
    total: Mapping[str, float],
    actors: int | None = None,
    smallest_node: float | None = None,
) -> StageResources:
    """The stages' resources from the cluster's free (``available``) and ``total`` resources; ``actors``: the
    pool's size (default one per free GPU, else one per two free CPUs); ``smallest_node``: the CPUs of the
    smallest node that has any (None: no limit)."""
    free = round(float(available.get("CPU", 0.0)), 2)
    whole = float(total.get("CPU", 0.0))
    if free < MIN_FREE_CPUS:
        held = "held by other jobs" if whole else "the cluster has none"
        raise ClusterError(
            f"the Ray cluster has no free CPU ({free:g} of {whole:g} free, {held}); wait for the other jobs to end "
            "or add a node, then run the command again"
        )
    gpus = int(available.get("GPU", 0.0))
    pool = max(1, actors or (gpus if gpus else int(free // 2)))
    half_node = ACTOR_CPUS if smallest_node is None else _floor(smallest_node / 2)
    actor_cpus = min(ACTOR_CPUS, half_node, _floor(free / 2 / pool))
    decode_cpus = min(DECODE_CPUS, half_node, _floor(free - pool * actor_cpus))
    return StageResources(pool, actor_cpus, 1 if gpus else 0, decode_cpus, free, whole)


def _floor(cpus: float) -> float:
    """``cpus`` rounded down to a hundredth (what ``ray.available_resources`` reports), at least 0.01."""
    return max(0.01, int(cpus * 100) / 100)
