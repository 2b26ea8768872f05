"""``vistext index --engine ray``: the same incremental indexing as the local engine, run on a Ray cluster.

The driver plans exactly as the local engine does (``plan_changes``: walk or list, stat, compare with the
stored file states; unchanged files are skipped) and then hands the candidates to Ray Data: CPU tasks decode
(``ray_stages.decode_batch``), an actor pool encodes with one ONNX session per actor and writes each batch
straight into the store (``ray_stages.EncodeAndWrite``), with ``num_gpus=1`` per model actor when the cluster
has GPUs. Only each file's outcome comes back to the driver, so its memory stays flat. Every write is an upsert
by path in one transaction: a killed worker's batch is retried by Ray and rewritten, a killed driver leaves
only whole batches behind, and a re-run skips what was written and does the rest.

Stores: a server store (``postgresql://``) for any cluster. The embedded SQLite catalogue is allowed only when
every node of the cluster is this machine (``--address`` omitted: a local cluster, or a one-node cluster
started here), since SQLite's locking holds between processes of one machine but not across a network file
system; a multi-node cluster gets a ``StoreError`` that says to pass a ``postgresql://`` store.

Without ``--address`` a private local cluster is started for the run, listening on 127.0.0.1 only, and stopped
at the end. ``--address HOST:PORT`` joins a running cluster from one of its nodes; the ``ray://`` client is
refused because Ray Data does not run through it (submit the command as a Ray job instead).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vistext.errors import StoreError, UsageError
from vistext.indexing.plan import IndexReport, fill_meta, plan_changes, remove_gone
from vistext.indexing.ray_stages import EncodeAndWrite, ModelSpec, decode_batch
from vistext.indexing.sources import FolderSource, PhotoSource, photo_source
from vistext.store import Store

log = logging.getLogger(__name__)

# a local cluster started for one run stays on loopback: Ray binds the machine's public address otherwise
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@contextmanager
def ray_cluster(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[dict[str, Any]]:
    """Connected to Ray for the duration: an existing connection, the cluster at ``address``, or a private
    local one (loopback only) that is shut down afterwards. Yields the cluster's resources."""
    if address is not None and address.startswith("ray://"):
        raise UsageError(
            f"{address}: Ray Data does not run through the ray:// client; pass the cluster's HOST:PORT from one "
            "of its nodes, or submit `vistext index --engine ray` as a Ray job"
        )
    for key, value in LOOPBACK_ENV.items():  # read when ray is first imported: set before that
        if address is None:
            os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError as error:
        raise UsageError(
            f"--engine ray needs the [distributed] extra (pip install 'vistext[distributed]'): {error}"
        ) from None

    started = False
    if not ray.is_initialized():
        try:
            if address is None:
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,  # a worker's failure reaches the driver as an exception, not as log lines
                    logging_level=logging.WARNING,
                )
            else:
                ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = address or "a local Ray cluster"
            raise UsageError(f"{where}: cannot connect to Ray ({' '.join(str(error).split())[:200]})") from None
        started = True
    try:
        yield dict(ray.cluster_resources())
    finally:
        if started:
            ray.shutdown()


def check_store_fits(store: Store, store_uri: str) -> None:
    """Refuse the embedded SQLite catalogue when the cluster has nodes on other machines."""
    import ray

    if getattr(store, "backend", "") != "sqlite":
        return
    here = ray.util.get_node_ip_address()
    elsewhere = sorted({n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} - {here})
    if elsewhere:
        raise StoreError(
            f"{store_uri}: the embedded SQLite catalogue can only be written from this machine, but the Ray cluster "
            f"has nodes on {', '.join(elsewhere)}; pass --db postgresql://... (a server store) for a multi-node run"
        )


def index_with_ray(
    location: str | Path,
    store: Store,
    store_uri: str,
    models: ModelSpec,
    *,
    address: str | None = None,
    batch_size: int = 32,
    actors: int | None = None,
    progress: bool = True,
) -> IndexReport:
    """Bring ``store`` (reachable by workers at ``store_uri``) up to date with the photos at ``location`` (a
    folder every node can read, or ``s3://bucket/prefix``), encoding on Ray; report as ``index_folder`` does.

    Connects as ``ray_cluster(address)`` does unless Ray is already initialised. ``actors``: model actors
    (default: one per GPU, else one per two CPUs).
    """
    started = time.perf_counter()
    source = photo_source(location)
    report = IndexReport()
    with store.writer_lock(), ray_cluster(address) as resources:
        check_store_fits(store, store_uri)
        spaces = list(models.projectors)
        plan = plan_changes(source.name, source.listing(report), store, models.encoder, spaces, report)
        if plan.candidates:
            outcomes = _pipeline(plan.candidates, source, store_uri, models, resources, batch_size, actors)
            _count(outcomes, report, len(plan.candidates), progress)
        if isinstance(source, FolderSource):  # headers of unchanged files indexed before metadata existed
            fill_meta(store, plan.seen - {c.path for c in plan.candidates}, report)
        remove_gone(store, plan, report)
    report.seconds = time.perf_counter() - started
    log.info("indexed %s on Ray: %s", source.name, report.summary())
    return report


def _pipeline(
    candidates: list[Any],
    source: PhotoSource,
    store_uri: str,
    models: ModelSpec,
    resources: Mapping[str, float],
    batch_size: int,
    actors: int | None,
) -> Iterable[dict[str, Any]]:
    """The Ray Data plan: candidates -> decode tasks -> model actors; yields each batch's outcomes."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-run INFO lines would drown the bar
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the run shows one tqdm bar (silenced by --quiet), not Ray's
    context.print_on_execution_start = False
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    pool = actors or (gpus if gpus else max(1, cpus // 2))
    dataset = ray.data.from_items(
        [c._asdict() for c in candidates], override_num_blocks=max(1, min(len(candidates) // batch_size, 4 * cpus))
    )
    decoded = dataset.map_batches(
        functools.partial(decode_batch, source=source, encoder=models.encoder),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=0.5,  # decoding is light next to the model: two decoders share a core
    )
    written = decoded.map_batches(
        EncodeAndWrite,
        fn_constructor_kwargs={"store_uri": store_uri, "models": models},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool),
        num_cpus=1,
        num_gpus=1 if gpus else None,
    )
    return written.iter_batches(batch_size=None, batch_format="numpy")


def _count(outcomes: Iterable[dict[str, Any]], report: IndexReport, total: int, progress: bool) -> None:
    with tqdm(total=total, disable=not progress, desc="indexing", unit="img", dynamic_ncols=True) as bar:
        for batch in outcomes:
            for path, is_update, error in zip(batch["path"], batch["is_update"], batch["error"], strict=True):
                if error:
                    report.failed += 1
                    report.failures.append((str(path), str(error)))
                elif is_update:
                    report.updated += 1
                else:
                    report.added += 1
            bar.update(len(batch["path"]))
