"""The Ray Data plan every Ray indexing pass runs: rows -> decode tasks -> a pool of model actors that write.

Shared by ``vistext index --engine ray`` (``ray_engine``) and a CLIP-family model's space (``ray_model_space``):
the stages are sized from the CPUs free when the run starts (``ray_resources``) and the run is watched
(``ray_watch``): it ends with one line when nothing finishes for ``deadline`` seconds, and a Ctrl-C stops it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from vistext.indexing.ray_cluster import alive_nodes, smallest_node_cpus
from vistext.indexing.ray_resources import size_stages
from vistext.indexing.ray_watch import Batch, ProgressWatch, consume, deadline_callback

log = logging.getLogger(__name__)
BLOCK_BATCHES = 4  # batches per block of the plan, at most


def run_stages(
    rows: list[dict[str, Any]],
    decode: Callable[[Any], Any],
    actor: type,
    actor_kwargs: Mapping[str, Any],
    on_batch: Callable[[Batch], None],
    *,
    batch_size: int,
    actors: int | None,
    deadline: float,
) -> None:
    """Decode ``rows`` in CPU tasks (``decode``: a batch of numpy columns -> the same, decoded), then run them
    through a pool of ``actor(**actor_kwargs)`` (each writes its batch and returns each row's outcome); hand
    each outcome batch to ``on_batch`` as it finishes. Raises ``ClusterError`` when the cluster has no free CPU
    or the run makes no progress for ``deadline`` seconds, ``KeyboardInterrupt`` (with the totals) on Ctrl-C."""
    import ray
    import ray.data

    resources = size_stages(ray.available_resources(), ray.cluster_resources(), actors, smallest_node_cpus())
    cpus = max(1, int(resources.free_cpus))
    log.info("Ray run of %d photos: %s", len(rows), resources.describe())
    watch = ProgressWatch(len(rows), deadline, resources, alive_nodes())
    # a failure reaches the driver as an exception, which the caller reports in one line: Ray Data's own report
    # of it (a stack trace) and its per-run lines are shown with --verbose only
    logging.getLogger("ray.data").setLevel(logging.WARNING if log.isEnabledFor(logging.INFO) else logging.CRITICAL)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the run shows one tqdm bar (silenced by --quiet), not Ray's
    context.print_on_execution_start = False
    # a block's outcomes reach the driver when its last photo is written: small blocks keep that (and so the
    # deadline's view of progress) within a few batches, enough of them keep every CPU busy
    blocks = max(1, -(-len(rows) // (BLOCK_BATCHES * batch_size)), min(len(rows) // batch_size, 4 * cpus))
    decoded = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        decode, batch_size=batch_size, batch_format="numpy", num_cpus=resources.decode_cpus
    )
    written = decoded.map_batches(
        actor,
        fn_constructor_kwargs=dict(actor_kwargs),
        batch_size=batch_size,
        batch_format="numpy",
        # a pool that may shrink: after a node is lost the actors left carry on while Ray restarts the others
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=resources.actors),
        num_cpus=resources.actor_cpus,
        num_gpus=resources.actor_gpus or None,
    )
    run = written.context
    run.execution_options.resource_limits = run.execution_options.resource_limits.copy(cpu=resources.free_cpus)
    run.custom_execution_callback_classes = [*run.custom_execution_callback_classes, deadline_callback(watch)]
    consume(written.iter_batches(batch_size=None, batch_format="numpy"), watch, on_batch)
