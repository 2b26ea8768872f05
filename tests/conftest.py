"""Shared fixtures: the real Flickr8k data beside the repository, and an isolated VISTEXT_HOME per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLICKR8K = Path(os.environ.get("VISTEXT_FLICKR8K", ROOT.parent / "shared" / "datasets" / "flickr8k"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session gets its own cache dir, so tests never depend on a developer's ~/.cache."""
    home = tmp_path_factory.mktemp("vistext-home")
    os.environ["VISTEXT_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def flickr8k() -> Path:
    """The Flickr8k folder from ../shared/datasets (read only; never copied into the repo)."""
    if not (FLICKR8K / "Flickr8k.token.txt").is_file():
        pytest.fail(f"Flickr8k not found at {FLICKR8K}; tests need ../shared/datasets/flickr8k")
    return FLICKR8K


@pytest.fixture(scope="session")
def flickr8k_images(flickr8k: Path) -> list[Path]:
    """All Flickr8k photo paths (224x224 JPEGs), sorted by name."""
    return sorted((flickr8k / "images").glob("*.jpg"))
