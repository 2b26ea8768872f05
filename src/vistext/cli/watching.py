"""``vistext index DIR --watch``: index the folder, then keep the catalogue current until Ctrl-C.

Each batch of changes is one line (the time, what was added, updated, removed or failed), then a line per
failed file; ``--quiet`` leaves only the failures. Ctrl-C while watching is the normal way to stop: the totals
are printed (with ``--json``: the first pass's report plus ``"watch"``, one document) and the exit status is 0.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vistext.cli.options import service_for
from vistext.cli.output import emit_json, say, say_failures
from vistext.errors import UsageError

if TYPE_CHECKING:
    from vistext.service.watching import IndexReport

COUNTS = ("added", "updated", "removed", "failed", "reused")


def run_watch(
    args: argparse.Namespace,
    summarise: Callable[[argparse.Namespace, IndexReport], dict[str, Any]],
    show: Callable[[argparse.Namespace, IndexReport, dict[str, Any]], None],
) -> int:
    """``index --watch``; ``summarise`` and ``show`` are the index command's JSON and lines of its first pass."""
    if args.engine != "local":
        raise UsageError("--watch runs with the local engine (a Ray cluster cannot hear this machine's file events)")
    if args.tagger:
        raise UsageError("--watch does not run --tagger; run `vistext tag --collection --model DIR` afterwards")
    if args.model:
        raise UsageError("--watch does not add a --model's space; run `vistext index DIR --model SPEC` afterwards")
    totals: dict[str, Any] = dict.fromkeys(COUNTS, 0) | {"batches": 0, "failures": []}
    first: IndexReport | None = None
    with service_for(args) as service:
        reports = service.watch(args.folder, text_search=not args.no_text)
        try:
            first = next(reports)
            if not args.json:
                show(args, first, summarise(args, first))
                if not args.quiet:
                    say(f"watching {args.folder} for changes (Ctrl-C to stop)")
            for report in reports:
                _add(totals, report)
                if not args.json:
                    _say_batch(args, report)
        except KeyboardInterrupt:
            if first is None:  # during the first pass: an interrupted index, as without --watch
                raise
        finally:
            reports.close()
    if args.json:
        emit_json(summarise(args, first) | {"watch": totals})
    elif not args.quiet:
        say(f"stopped watching {args.folder}: " + ", ".join(f"{totals[key]} {key}" for key in COUNTS[:4]))
    return 0


def _add(totals: dict[str, Any], report: IndexReport) -> None:
    totals["batches"] += 1
    for key in COUNTS:
        totals[key] += getattr(report, key)
    totals["failures"] += [{"path": path, "error": error} for path, error in report.failures]


def _say_batch(args: argparse.Namespace, report: IndexReport) -> None:
    if not args.quiet:
        reused = f", {report.reused} by content (not re-encoded)" if report.reused else ""
        say(
            f"{time.strftime('%H:%M:%S')}  {report.added} added, {report.updated} updated, {report.removed} "
            f"removed, {report.failed} failed ({report.seconds:.1f} s{reused})"
        )
    say_failures(report.failures)
