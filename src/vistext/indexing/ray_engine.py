"""``vistext index --engine ray``: the same incremental indexing as the local engine, run on a Ray cluster.

The driver plans exactly as the local engine does (``plan_changes``: walk or list, stat, compare with the
stored file states; unchanged files are skipped) and then hands the candidates to Ray Data: CPU tasks decode
(``ray_stages.decode_batch``), an actor pool encodes with one ONNX session per actor, makes every requested
space (derived ones such as the fused space included) and writes each batch straight into the store
(``ray_stages.EncodeAndWrite``), with ``num_gpus=1`` per model actor when the cluster has GPUs. Only each
file's outcome comes back to the driver, so its memory stays flat. Every write is an upsert by path in one
transaction: a killed worker's batch is retried by Ray and rewritten, a killed driver leaves
only whole batches behind, and a re-run skips what was written and does the rest.

Stores: a server store (``postgresql://``) for any cluster. The embedded SQLite catalogue is allowed only when
every node of the cluster is this machine (``--address`` omitted: a local cluster, or a one-node cluster
started here), since SQLite's locking holds between processes of one machine but not across a network file
system; a multi-node cluster gets a ``StoreError`` that says to pass a ``postgresql://`` store.

Without ``--address`` a private local cluster is started for the run (``ray_cluster``); ``--address HOST:PORT``
joins a running one. The stages are sized from the CPUs free when the run starts, and a run that makes no
progress for its deadline ends with one line naming the cause (``ray_pipeline``, ``ray_watch``).
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vistext.images.attributes import ATTRIBUTE_SPACE
from vistext.indexing.plan import IndexReport, fill_meta, plan_changes, remove_gone
from vistext.indexing.ray_cluster import check_store_fits, ray_cluster
from vistext.indexing.ray_pipeline import run_stages
from vistext.indexing.ray_stages import EncodeAndWrite, ModelSpec, decode_batch
from vistext.indexing.ray_watch import DEFAULT_DEADLINE, Batch
from vistext.indexing.sources import FolderSource, photo_source
from vistext.models.open_domain import read_whole_spaces
from vistext.store import Store

log = logging.getLogger(__name__)


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
    deadline: float = DEFAULT_DEADLINE,
) -> IndexReport:
    """Bring ``store`` (reachable by workers at ``store_uri``) up to date with the photos at ``location`` (a
    folder every node can read, or ``s3://bucket/prefix``), encoding on Ray; report as ``index_folder`` does.

    Connects as ``ray_cluster(address)`` does unless Ray is already initialised. ``actors``: model actors
    (default: one per free GPU, else one per two free CPUs). ``deadline``: seconds without a finished photo
    after which the run ends with a ``ClusterError`` naming the likely cause (what was written is kept).
    """
    started = time.perf_counter()
    source = photo_source(location)
    report = IndexReport()
    with store.writer_lock(), ray_cluster(address):
        check_store_fits(store, store_uri)
        spaces = [*models.projectors, *models.derived]
        plan = plan_changes(source.name, source.listing(report), store, models.encoder, spaces, report)
        store.mark_unsearched(read_whole_spaces([*models.derived, ATTRIBUTE_SPACE]))
        if plan.candidates:
            with (
                store.bulk_load(len(plan.candidates)),  # PostgreSQL builds its search indexes once, at the end
                tqdm(
                    total=len(plan.candidates), disable=not progress, desc="indexing", unit="img", dynamic_ncols=True
                ) as bar,
            ):
                run_stages(
                    [c._asdict() for c in plan.candidates],
                    functools.partial(decode_batch, source=source, encoder=models.encoder),
                    EncodeAndWrite,
                    {"store_uri": store_uri, "models": models},
                    functools.partial(_count, report=report, bar=bar),
                    batch_size=batch_size,
                    actors=actors,
                    deadline=deadline,
                )
        if isinstance(source, FolderSource):  # headers of unchanged files indexed before metadata existed
            fill_meta(store, plan.seen - {c.path for c in plan.candidates}, report)
        remove_gone(store, plan, report)
    report.seconds = time.perf_counter() - started
    log.info("indexed %s on Ray: %s", source.name, report.summary())
    return report


def _count(batch: Batch, report: IndexReport, bar: Any) -> None:
    for path, is_update, error in zip(batch["path"], batch["is_update"], batch["error"], strict=True):
        if error:
            report.failed += 1
            report.failures.append((str(path), str(error)))
        elif is_update:
            report.updated += 1
        else:
            report.added += 1
    bar.update(len(batch["path"]))
