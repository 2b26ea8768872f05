"""A Ray run that finishes or says why: a no-progress deadline, and Ctrl-C that stops it with its totals.

``ProgressWatch`` notes when the driver last heard of a finished photo. Ray Data's scheduling loop (a thread of
the driver that wakes at least every 0.1 s) asks it at every step (``deadline_callback``); once no photo has
finished for the deadline, the step raises a ``ClusterError`` that names the likely cause (nodes lost since the
start, no free CPU, or neither: a stuck worker) and how many photos were written. Ray Data ends the execution
with that error, the driver's iterator raises it, and the rows already committed stay (every batch is one
transaction). A Ctrl-C in the driver ends the iteration the same way, as a ``KeyboardInterrupt`` that carries
the totals.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from vistext.errors import ClusterError
from vistext.indexing.ray_cluster import alive_nodes
from vistext.indexing.ray_resources import StageResources

DEFAULT_DEADLINE = 300.0  # seconds without a finished photo before a run ends: room for a slow model load
Batch = Mapping[str, Any]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NAMED = re.compile(r"^[\w.]*(Error|Exception|Interrupt)(\(.*\))?: \S")  # "ValueError: ...", "x.StoreError: ..."


class ProgressWatch:
    """A run's progress: photos finished of ``total``, and when the last one finished."""

    def __init__(self, total: int, deadline: float, resources: StageResources, nodes: Mapping[str, str]) -> None:
        if not deadline > 0:
            raise ValueError(f"the no-progress deadline must be positive, not {deadline}")
        self.total = total
        self.deadline = deadline
        self.resources = resources
        self.nodes = dict(nodes)  # node id -> IP at the start
        self.done = 0
        self.last = time.monotonic()

    def finished(self, count: int) -> None:
        self.done += count
        self.last = time.monotonic()

    def check(self) -> None:
        """Raise ``ClusterError`` once no photo has finished for the deadline."""
        idle = time.monotonic() - self.last
        if idle >= self.deadline:
            why = self.cause()
            raise ClusterError(f"the Ray run stopped: no photo finished in {idle:.0f} s ({why}); {self.totals()}")

    def totals(self) -> str:
        done = f"at least {self.done} of {self.total} photos were written"
        return f"{done} and are kept (run the command again for the rest)"

    def cause(self) -> str:
        """Why nothing finishes, as far as the cluster's state tells."""
        import ray

        alive = alive_nodes()
        lost = sorted({ip for node, ip in self.nodes.items() if node not in alive})
        free = round(float(ray.available_resources().get("CPU", 0.0)), 2)
        total = float(ray.cluster_resources().get("CPU", 0.0))
        cpus = f"{free:g} of {total:g} CPUs free"
        if lost:
            return f"lost {len(lost)} of {len(self.nodes)} Ray nodes since the start ({', '.join(lost)}); {cpus}"
        if free < min(self.resources.decode_cpus, self.resources.actor_cpus):
            return f"no free CPU for the model actors and decode tasks: {cpus}, held by other jobs or tasks"
        return f"a model actor or decode task is stuck: {cpus}, {len(alive)} nodes up"


def deadline_callback(watch: ProgressWatch) -> type:
    """A Ray Data execution callback class that checks ``watch`` at every step of the scheduling loop."""
    from ray.data._internal.execution.execution_callback import ExecutionCallback

    class Deadline(ExecutionCallback):  # type: ignore[misc]
        def on_execution_step(self, executor: Any) -> None:
            try:
                watch.check()
            except ClusterError:
                _release_actors(executor)
                raise

    return Deadline


def _from_ray(error: Exception) -> bool:
    from ray.data.exceptions import UserCodeException
    from ray.exceptions import RayError

    return isinstance(error, RayError | UserCodeException)


def failure_line(error: BaseException) -> str:
    """The line of a Ray error's report that says what failed (``ModuleNotFoundError: ...``, a vistext error's
    message); Ray's own text around it (task names, ids, the remote traceback) is for its logs."""
    lines = [_ANSI.sub("", line).strip() for line in str(error).splitlines()]
    named = [line for line in lines if _NAMED.match(line)]
    line = named[-1] if named else next((line for line in lines if line), type(error).__name__)
    return line[:300]


def _release_actors(executor: Any) -> None:
    """Kill the run's model actors: a stuck one would otherwise hold its CPU after the run (Ray Data's shutdown
    on an error lets them finish their batch, which a stuck actor never does)."""
    for operator in getattr(executor, "_topology", {}):
        pool = getattr(operator, "_actor_pool", None)
        if pool is not None:
            pool.shutdown(force=True)


def consume(batches: Iterable[Batch], watch: ProgressWatch, on_batch: Callable[[Batch], None]) -> None:
    """Hand each finished batch to ``on_batch``; a Ctrl-C ends the run with the totals in its message."""
    iterator = iter(batches)
    try:
        for batch in iterator:
            watch.finished(len(batch["path"]))
            on_batch(batch)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(watch.totals()) from None
    except ClusterError:
        raise
    except Exception as error:
        if not _from_ray(error):
            raise
        raise ClusterError(f"the Ray run failed: {failure_line(error)}; {watch.totals()}") from None
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # a stopped run's executor shuts down now, not when it is collected
