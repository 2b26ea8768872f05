"""``vistext index --engine ray`` on one local Ray cluster per session, loopback only, on real photos.

The cluster is started once (``address="local"``: a stale ``/tmp/ray/ray_current_cluster`` is never joined)
with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, without which Ray binds the machine's public address, and
``RAY_AUTH_MODE=disabled`` so no token file is written to the home folder.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is imported: before that
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
pytest.importorskip("ray", reason="the [distributed] extra is not installed")

import ray  # noqa: E402
from ray import cloudpickle  # noqa: E402

from vistext.cli.main import main  # noqa: E402
from vistext.encoders import ImageFeatures  # noqa: E402
from vistext.errors import ClusterError, UsageError  # noqa: E402
from vistext.indexing.local import Projector  # noqa: E402
from vistext.indexing.ray_engine import index_with_ray  # noqa: E402
from vistext.indexing.ray_stages import ModelSpec  # noqa: E402
from vistext.service import Service  # noqa: E402
from vistext.store import open_store  # noqa: E402

# the projector factories below travel to workers by value: the workers cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])

N_PHOTOS = 40


@pytest.fixture(scope="module")
def cluster(_isolated_home: Path) -> Iterator[str]:
    """The session's one local Ray cluster (2 CPUs, no dashboard); yields its GCS address."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def photos(flickr8k_images: list[Path]) -> list[Path]:
    return flickr8k_images[:N_PHOTOS]


def _copy(images: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    return folder


def _rows(location: Path | str) -> list[tuple[str, str, str]]:
    """(path, sha, status) of every file in the store, and a check that no path is stored twice."""
    with open_store(location) as store:
        rows = sorted((path, state.sha, state.status) for path, state in store.file_states().items())
        assert store.count() == len(rows)
    return rows


class PooledProjection:
    """A projector factory: the first 16 pooled features as a toy embedding space, optionally crashing once.

    ``crash_marker``: on its second batch, a worker that does not find this file creates it and kills its own
    process, as a machine failure would; the run must still end with every row written once.
    """

    def __init__(self, crash_marker: str | None = None) -> None:
        self.crash_marker = crash_marker

    def __call__(self) -> Projector:
        calls = [0]

        def project(features: ImageFeatures) -> np.ndarray:
            calls[0] += 1
            if self.crash_marker and calls[0] == 2 and not os.path.exists(self.crash_marker):
                Path(self.crash_marker).touch()
                os._exit(1)
            return features.pooled[:, :16]

        return project


class StuckProjection:
    """A projector factory whose second batch never ends, as a worker hung on a dead mount would."""

    def __call__(self) -> Projector:
        calls = [0]

        def project(features: ImageFeatures) -> np.ndarray:
            calls[0] += 1
            if calls[0] == 2:
                time.sleep(3600)
            return features.pooled[:, :16]

        return project


def _all_cpus_free(timeout: float = 60) -> None:
    """Wait until the run's actors are gone (the next test gets the whole cluster)."""
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources().get("CPU", 0):
        assert time.monotonic() < deadline, f"the run's actors still hold CPUs: {ray.available_resources()}"
        time.sleep(0.2)


def test_same_vectors_as_local_engine_and_rerun_skips(
    cluster: str, photos: list[Path], tmp_path: Path, text_search_available: Callable[[], bool]
) -> None:
    folder = _copy(photos, tmp_path / "photos")
    text = text_search_available()
    with Service(db=str(tmp_path / "ray.sqlite"), progress=False) as service:
        report = service.index(folder, engine="ray", text_search=text)
        assert (report.added, report.failed, report.unchanged) == (N_PHOTOS, 0, 0)
        spaces = service.store().spaces()
    with Service(db=str(tmp_path / "local.sqlite"), progress=False) as service:
        service.index(folder, text_search=text)
    assert _rows(tmp_path / "ray.sqlite") == _rows(tmp_path / "local.sqlite")
    with open_store(tmp_path / "ray.sqlite") as on_ray, open_store(tmp_path / "local.sqlite") as local:
        assert on_ray.spaces() == local.spaces() == spaces and len(spaces) == 2 + 2 * text  # image, pixel, joint, fused
        for space in spaces:
            ids_ray, ray_vectors = on_ray.vectors(space)
            ids_local, local_vectors = local.vectors(space)
            paths_ray = [on_ray.get(int(i)).path for i in ids_ray]  # type: ignore[union-attr]
            paths_local = [local.get(int(i)).path for i in ids_local]  # type: ignore[union-attr]
            order = np.argsort(paths_ray), np.argsort(paths_local)
            assert sorted(paths_ray) == sorted(paths_local)
            np.testing.assert_allclose(ray_vectors[order[0]], local_vectors[order[1]], atol=1e-5)
        for photo in photos[:5]:  # the photo metadata (EXIF, size) travels through the stages as well
            on_ray_meta = on_ray.get(str(folder / photo.name)).meta  # type: ignore[union-attr]
            assert on_ray_meta is not None and on_ray_meta == local.get(str(folder / photo.name)).meta  # type: ignore[union-attr]

    (folder / photos[0].name).unlink()  # a re-run through the CLI: one removed, the rest unchanged
    assert main(["index", str(folder), "--engine", "ray", "--db", str(tmp_path / "ray.sqlite"), "--quiet"]) == 0
    with open_store(tmp_path / "ray.sqlite") as store:
        assert store.count() == N_PHOTOS - 1
        assert store.get(str(folder / photos[0].name)) is None


def test_the_fused_space_is_made_in_the_actors_even_for_photos_already_indexed(
    cluster: str, photos: list[Path], tmp_path: Path, text_search_available: Callable[[], bool]
) -> None:
    """A catalogue from before the fused space (joint vectors and logits only) gets it on Ray from the stored
    features: the photos are not encoded again, and the vectors are the local engine's."""
    if not text_search_available():
        pytest.skip("the shipped joint model cannot be loaded here")
    from vistext.indexing.local import index_folder
    from vistext.service.loaded_models import LoadedModels

    folder = _copy(photos[:12], tmp_path / "photos")
    with Service(db=str(tmp_path / "local.sqlite"), progress=False) as service:
        service.index(folder)
    models = LoadedModels()
    fused = models.open_domain
    assert fused is not None
    with open_store(tmp_path / "ray.sqlite") as older:  # indexed before the fused space existed
        index_folder(folder, older, models.encoder, projectors={models.joint_space: models.joint_projector()})
        assert older.paths_missing(fused.space) == {str(p) for p in folder.iterdir()}
    with Service(db=str(tmp_path / "ray.sqlite"), progress=False) as service:
        report = service.index(folder, engine="ray")
    assert (report.updated, report.added, report.failed) == (12, 0, 0)
    with open_store(tmp_path / "ray.sqlite") as on_ray, open_store(tmp_path / "local.sqlite") as local:
        assert not on_ray.paths_missing(fused.space)
        for photo in folder.iterdir():
            made, expected = on_ray.get(str(photo)), local.get(str(photo))
            assert made is not None and expected is not None
            np.testing.assert_allclose(made.embeddings[fused.space], expected.embeddings[fused.space], atol=1e-5)


def test_killed_worker_loses_nothing_and_duplicates_nothing(
    cluster: str, photos: list[Path], tmp_path: Path, store_location: Path | str
) -> None:
    folder = _copy(photos, tmp_path / "photos")
    marker = tmp_path / "crashed"
    models = ModelSpec(projectors={"toy": PooledProjection(str(marker))})
    with open_store(store_location) as store:
        report = index_with_ray(folder, store, str(store_location), models, batch_size=8, progress=False)
    assert marker.exists(), "no worker was killed"
    assert (report.added, report.failed) == (N_PHOTOS, 0)
    rows = _rows(store_location)
    assert len(rows) == N_PHOTOS and {status for _, _, status in rows} == {"ok"}
    with open_store(store_location) as store:
        assert len(store.vectors("toy")[0]) == N_PHOTOS
        again = index_with_ray(folder, store, str(store_location), models, batch_size=8, progress=False)
    assert (again.unchanged, again.added, again.updated) == (N_PHOTOS, 0, 0)


def test_a_run_without_progress_ends_naming_the_cause_and_keeps_its_rows(
    cluster: str, photos: list[Path], tmp_path: Path
) -> None:
    folder = _copy(photos, tmp_path / "photos")
    db = tmp_path / "c.sqlite"
    stuck = ModelSpec(projectors={"toy": StuckProjection()})
    with open_store(db) as store, pytest.raises(ClusterError) as stopped:
        index_with_ray(folder, store, str(db), stuck, batch_size=8, progress=False, deadline=20)
    message = str(stopped.value)
    assert "\n" not in message and "no photo finished in" in message and "stuck" in message
    assert f"of {N_PHOTOS} photos were written and are kept" in message
    kept = _rows(db)
    assert 0 < len(kept) < N_PHOTOS and {status for _, _, status in kept} == {"ok"}
    _all_cpus_free()  # the stuck actor was killed, not left holding its CPU
    with open_store(db) as store:  # a re-run does the rest
        models = ModelSpec(projectors={"toy": PooledProjection()})
        again = index_with_ray(folder, store, str(db), models, progress=False)
    assert (again.unchanged, again.added) == (len(kept), N_PHOTOS - len(kept)) and len(_rows(db)) == N_PHOTOS


def test_a_stalled_run_names_lost_nodes_and_missing_cpus(cluster: str) -> None:
    """What the deadline's message says of the cluster (the states are made up around the real one)."""
    from vistext.indexing.ray_cluster import alive_nodes
    from vistext.indexing.ray_resources import StageResources
    from vistext.indexing.ray_watch import ProgressWatch

    sized = StageResources(1, 1.0, 0, 0.5, 2.0, 2.0)
    lost = ProgressWatch(10, 0.01, sized, {**alive_nodes(), "a-node-gone": "10.0.0.7"})
    lost.finished(4)
    time.sleep(0.02)
    with pytest.raises(
        ClusterError, match=r"no photo finished in 0 s \(lost 1 of 2 Ray nodes since the start \(10.0.0.7\)"
    ):
        lost.check()
    starved = ProgressWatch(10, 0.01, StageResources(1, 4.0, 0, 4.0, 8.0, 8.0), alive_nodes())
    time.sleep(0.02)
    with pytest.raises(ClusterError, match=r"no free CPU for the model actors and decode tasks: [\d.]+ of 2 CPUs free"):
        starved.check()


def test_a_cluster_without_a_free_cpu_is_refused_at_once(cluster: str, photos: list[Path], tmp_path: Path) -> None:
    @ray.remote(num_cpus=2)
    class Holder:  # another job holding every CPU of the cluster
        def ready(self) -> bool:
            return True

    holder = Holder.remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(holder.ready.remote(), timeout=60)
        with open_store(tmp_path / "c.sqlite") as store, pytest.raises(ClusterError, match="no free CPU .0 of 2"):
            index_with_ray(_copy(photos[:4], tmp_path / "p"), store, str(tmp_path / "c.sqlite"), ModelSpec())
    finally:
        ray.kill(holder)
    _all_cpus_free()


# Ctrl-C reaches the driver as a terminal would send it, however the suite was started: a shell that starts a
# command in the background (`pytest &`) makes it ignore SIGINT, and every process it starts inherits that
_DRIVER = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from vistext.cli.main import main
sys.exit(main(["index", sys.argv[1], "--engine", "ray", "--address", sys.argv[2], "--db", sys.argv[3],
               "--no-text", "--quiet"]))
"""


def test_killed_driver_loses_nothing_and_duplicates_nothing(
    cluster: str, flickr8k_images: list[Path], tmp_path: Path, store_location: Path | str
) -> None:
    many = 96
    folder = _copy(flickr8k_images[200 : 200 + many], tmp_path / "photos")
    open_store(store_location).close()
    argv = [sys.executable, "-c", _DRIVER, str(folder), cluster, str(store_location)]
    driver = subprocess.Popen(argv, env=dict(os.environ))
    try:
        with open_store(store_location) as watcher:
            deadline = time.monotonic() + 90
            while not watcher.count() and driver.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    partial = len(_rows(store_location))
    assert 0 < partial < many, f"the driver was not stopped mid-run ({partial} rows)"
    with Service(db=str(store_location), progress=False) as service:
        report = service.index(folder, engine="ray", text_search=False)
    assert report.unchanged + report.added == many and report.failed == 0
    assert report.unchanged >= partial - 32  # at most the batches in flight were rewritten, nothing lost
    assert len(_rows(store_location)) == many


def test_ctrl_c_stops_the_run_with_its_totals_and_keeps_the_rows(
    cluster: str, flickr8k_images: list[Path], tmp_path: Path
) -> None:
    many = 96
    folder = _copy(flickr8k_images[400 : 400 + many], tmp_path / "photos")
    db = tmp_path / "c.sqlite"
    open_store(db).close()
    argv = [sys.executable, "-c", _DRIVER.replace('"--quiet"', '"--quiet", "--json"'), str(folder), cluster, str(db)]
    driver = subprocess.Popen(argv, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open_store(db) as watcher:
        deadline = time.monotonic() + 120
        while not watcher.count() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err.decode()[-2000:]
    error = json.loads(out)["error"]  # stdout is the JSON answer alone
    assert error.startswith("interrupted: at least ") and f"of {many} photos were written and are kept" in error
    assert f"vistext: {error}" in err.decode()  # and the same one line on stderr
    kept = _rows(db)
    assert 0 < len(kept) < many and {status for _, _, status in kept} == {"ok"}
    _all_cpus_free()


def test_a_private_cluster_leaves_no_token_behind(tmp_path: Path) -> None:
    """Ray 2.60 writes ~/.ray/auth_token world-readable for a new local cluster, after which every `ray start`
    on the machine wants a token; the private cluster keeps its token in its processes' environment instead."""
    check = (
        "import os\n"
        "from vistext.indexing.ray_cluster import ray_cluster\n"
        "from ray._raylet import AuthenticationMode, get_authentication_mode\n"
        "with ray_cluster(num_cpus=1) as resources:\n"
        "    assert get_authentication_mode() == AuthenticationMode.TOKEN and resources['CPU'] == 1\n"
        "assert 'RAY_AUTH_MODE' not in os.environ and 'RAY_AUTH_TOKEN' not in os.environ\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""  # Ray's own lines went to stderr
    assert not (tmp_path / ".ray").exists()


@pytest.fixture
def s3_photos(photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """Ten photos under s3://photos/trip/ on moto's S3 server on a free loopback port; yields (URL, client)."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="photos")
    for photo in photos[:10]:
        client.upload_file(str(photo), "photos", f"trip/{photo.name}")
    client.put_object(Bucket="photos", Key="trip/notes.txt", Body=b"not a photo")
    client.put_object(Bucket="photos", Key="trip/broken.jpg", Body=b"not a jpeg either")
    try:
        yield "s3://photos/trip", client
    finally:
        server.stop()


def test_s3_input_through_moto(cluster: str, s3_photos: tuple[str, Any], photos: list[Path], tmp_path: Path) -> None:
    url, client = s3_photos
    db = tmp_path / "catalogue.sqlite"
    with Service(db=str(db), progress=False) as service:
        report = service.index(url, engine="ray", text_search=False)
        assert (report.added, report.failed) == (10, 1)
        assert report.failures == [(f"{url}/broken.jpg", "not an image file (or not a supported format)")]
    local_db = tmp_path / "local.sqlite"
    with Service(db=str(local_db), progress=False) as service:
        service.index(_copy(photos[:10], tmp_path / "copy"), text_search=False)
    with open_store(db) as store, open_store(local_db) as local:
        for photo in photos[:10]:
            remote = store.get(f"{url}/{photo.name}")
            assert remote is not None and remote.status == "ok"
            copy = local.get(str(tmp_path / "copy" / photo.name))
            assert copy is not None and remote.sha == copy.sha
            np.testing.assert_allclose(remote.pooled, copy.pooled, atol=1e-5)  # type: ignore[arg-type]
    client.delete_object(Bucket="photos", Key=f"trip/{photos[0].name}")
    with Service(db=str(db), progress=False) as service:
        again = service.index(url, engine="ray", text_search=False)
    assert (again.unchanged, again.removed, again.added, again.failed) == (10, 1, 0, 0)  # broken.jpg: unchanged


def test_errors_name_the_input(cluster: str, tmp_path: Path) -> None:
    with Service(db=str(tmp_path / "c.sqlite"), progress=False) as service:
        with pytest.raises(UsageError, match="ray:// client"):
            service.index(tmp_path, engine="ray", address="ray://127.0.0.1:10001")
        with pytest.raises(UsageError, match="nowhere: not a folder"):
            service.index(tmp_path / "nowhere", engine="ray")
        with pytest.raises(UsageError, match="is for --engine ray"):
            service.index(tmp_path, address="127.0.0.1:6379")
        with pytest.raises(UsageError, match="--deadline 60 is for --engine ray"):
            service.index(tmp_path, deadline=60)
        with pytest.raises(UsageError, match="--deadline 0: must be a positive number of seconds"):
            service.index(tmp_path, engine="ray", deadline=0)
    with Service(progress=False) as service, pytest.raises(UsageError, match="pass --db"):
        service.index("s3://photos/trip", engine="ray")


def test_every_socket_of_the_cluster_and_the_store_server_listens_on_loopback(cluster: str, pg_server: Any) -> None:
    """The Ray processes (this driver and every process it started) and the PostgreSQL server of the tests."""
    psutil = pytest.importorskip("psutil")
    postmaster = psutil.Process(int((pg_server.data / "postmaster.pid").read_text().split()[0]))
    processes = [psutil.Process(), *psutil.Process().children(recursive=True), postmaster]
    listening: list[tuple[str, str]] = []
    for process in processes:
        try:
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.append((process.name(), conn.laddr.ip))
        except psutil.NoSuchProcess:
            continue
    names = {name for name, _ in listening}
    assert {"gcs_server", "raylet", "postgres"} <= names, listening
    for name, ip in listening:
        address = ipaddress.ip_address(ip)
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        assert str(mapped or address) == "127.0.0.1", f"{name} listens on {ip}"
