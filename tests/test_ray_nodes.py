"""A real three-node Ray cluster on loopback, inside a private network namespace (``unshare -n``, as root): a
worker node killed with SIGKILL mid-run, and ``vistext index --engine ray --address`` still ends with exactly one
row per photo, every one of them indexed. The cluster and the run are ``tests/ray_nodes.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the [distributed] extra is not installed")
psutil = pytest.importorskip("psutil")

from vistext.store import open_store  # noqa: E402

N_PHOTOS = 160
HELPER = Path(__file__).with_name("ray_nodes.py")


def _namespace_reason() -> str | None:
    """Why a private network namespace cannot be made here, or None when it can."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux for a private network namespace (unshare -n)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return "unshare -n is not permitted here (a container without CAP_SYS_ADMIN)"
    return None


def test_a_node_killed_mid_run_leaves_exact_rows(
    flickr8k_images: list[Path], copy_photos: Callable[..., Path], tmp_path: Path
) -> None:
    reason = _namespace_reason()
    if reason is not None:
        pytest.skip(reason)
    folder = copy_photos(flickr8k_images[300 : 300 + N_PHOTOS], tmp_path / "photos")
    catalogue = tmp_path / "catalogue.sqlite"
    temp = Path(tempfile.mkdtemp(prefix="vr-"))  # short: Ray's socket paths must fit in 107 bytes
    try:
        argv = ["unshare", "-n", "--", sys.executable, str(HELPER), str(folder), str(catalogue), str(temp / "ray")]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 0, done.stderr[-3000:]
    report = json.loads(result["stdout"])  # --json: the driver's stdout is one JSON document, Ray's lines elsewhere
    assert (report["added"], report["failed"]) == (N_PHOTOS, 0)
    assert 0 < result["rows_at_kill"] < N_PHOTOS, "the node was not killed mid-run"
    with open_store(catalogue) as store:
        states = store.file_states()
        assert store.count() == len(states) == N_PHOTOS
    assert set(states) == {str(path) for path in folder.iterdir()}
    assert {state.status for state in states.values()} == {"ok"}
