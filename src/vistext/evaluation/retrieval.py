"""Image–text retrieval: recall@K, median rank and pair accuracy on similarity arrays (percentages 0-100,
as in the papers), and ``evaluate``: the standard protocol for a joint model on a caption dataset split. The
primary metric is ``rsum``, the sum of the six recalls (what joint training picks its best epoch on).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.errors import UsageError
from vistext.evaluation.base import Evaluation

if TYPE_CHECKING:
    from vistext.datasets import CaptionDataset
    from vistext.models.joint import JointModel

PRIMARY = "rsum"

log = logging.getLogger(__name__)

RETRIEVAL_KEYS = (
    "i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr",
    "pair_acc", "n_images", "n_captions",
)  # fmt: skip


def _check_sim(sim: np.ndarray, caption_to_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sim = np.asarray(sim, dtype=np.float64)
    owner = np.asarray(caption_to_image, dtype=np.int64)
    if sim.ndim != 2 or owner.shape != (sim.shape[1],):
        raise UsageError(
            f"sim must be (n_images, n_captions) and caption_to_image (n_captions,); got {sim.shape}, {owner.shape}"
        )
    if sim.shape[1] and (owner.min() < 0 or owner.max() >= sim.shape[0]):
        raise UsageError("caption_to_image holds an image index outside the similarity matrix")
    return sim, owner


def text_to_image_ranks(sim: np.ndarray, caption_to_image: np.ndarray) -> np.ndarray:
    """1-based rank of each caption's own image among all images (ties count against the caption)."""
    sim, owner = _check_sim(sim, caption_to_image)
    own = sim[owner, np.arange(sim.shape[1])]
    return (sim >= own[None, :]).sum(axis=0)


def image_to_text_ranks(sim: np.ndarray, caption_to_image: np.ndarray) -> np.ndarray:
    """1-based rank of each image's best-ranked own caption among all captions."""
    sim, owner = _check_sim(sim, caption_to_image)
    ranks = np.empty(sim.shape[0], dtype=np.int64)
    for i in range(sim.shape[0]):
        mine = owner == i
        if not mine.any():
            raise UsageError(f"image {i} has no caption in caption_to_image")
        best = sim[i, mine].max()
        ranks[i] = int((sim[i, ~mine] >= best).sum()) + 1
    return ranks


def _recalls(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    out = {f"{prefix}_r{k}": round(100.0 * float((ranks <= k).mean()), 2) for k in (1, 5, 10)}
    out[f"{prefix}_medr"] = float(np.floor(np.median(ranks)))
    return out


def pair_accuracy(sim: np.ndarray, caption_to_image: np.ndarray, seed: int = 0) -> float:
    """Share of captions scored higher with their own image than with one random other image (fixed seed).

    Returned as a percentage like the recalls.
    """
    sim, owner = _check_sim(sim, caption_to_image)
    n_images, n_captions = sim.shape
    if n_images < 2:
        raise UsageError("pair accuracy needs at least two images")
    rng = np.random.default_rng(seed)
    other = (owner + rng.integers(1, n_images, size=n_captions)) % n_images  # never the caption's own image
    cols = np.arange(n_captions)
    return round(100.0 * float((sim[owner, cols] > sim[other, cols]).mean()), 2)


def retrieval_metrics(sim: np.ndarray, caption_to_image: np.ndarray) -> dict[str, float | int]:
    """The standard image–caption retrieval metrics from an (n_images, n_captions) similarity matrix.

    ``caption_to_image[j]`` is the row of caption j's image. Returns the keys in ``RETRIEVAL_KEYS``:
    recalls at 1/5/10 in percent and median ranks both ways (image->text counts an image as found when any
    of its captions is in the top K), pair accuracy in percent, and the counts.
    """
    sim, owner = _check_sim(sim, caption_to_image)
    metrics: dict[str, float | int] = {}
    metrics.update(_recalls(image_to_text_ranks(sim, owner), "i2t"))
    metrics.update(_recalls(text_to_image_ranks(sim, owner), "t2i"))
    metrics["pair_acc"] = pair_accuracy(sim, owner)
    metrics["n_images"] = int(sim.shape[0])
    metrics["n_captions"] = int(sim.shape[1])
    return metrics


def recall_sum(metrics: dict[str, Any]) -> float:
    """R@1 + R@5 + R@10 both ways (0-600)."""
    return float(sum(metrics[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))


def retrieval_evaluation(sim: np.ndarray, caption_to_image: np.ndarray) -> Evaluation:
    """``retrieval_metrics`` plus their recall sum ``rsum``, the primary metric."""
    metrics: dict[str, Any] = dict(retrieval_metrics(sim, caption_to_image))
    metrics[PRIMARY] = round(recall_sum(metrics), 2)
    return Evaluation(metrics, PRIMARY)


# ---- the joint model on a dataset -----------------------------------------------------------------------


def _embed_images(model: JointModel, images: list[Path], progress: bool) -> np.ndarray:
    """Joint embeddings of image files: one plain view each, decoded as indexing decodes them."""
    from vistext.encoders import create_image_encoder
    from vistext.features import embed_files

    encoder = create_image_encoder(model.image_encoder_name)
    return embed_files(images, encoder, model.encode_images, grid=model.needs_grid, progress=progress)


def evaluate(
    model: JointModel, dataset: CaptionDataset | str, split: str = "test", progress: bool = True
) -> Evaluation:
    """Retrieval metrics of ``model`` on ``split`` of a caption dataset (``FORMAT:PATH`` or opened): every
    image of the split (one view, exactly as indexing computes it) against every caption of the split."""
    if isinstance(dataset, str):
        from vistext.datasets import open_caption_dataset

        dataset = open_caption_dataset(dataset)
    captions = list(dataset.captions(split))
    images = sorted({c.image for c in captions})
    if not images:
        raise UsageError(f"split {split!r} of the dataset has no captions")
    row = {path: i for i, path in enumerate(images)}
    owner = np.array([row[c.image] for c in captions], dtype=np.int64)
    image_vecs = _embed_images(model, images, progress)
    text_vecs = model.encode_text([c.text for c in captions])
    evaluation = retrieval_evaluation(image_vecs @ text_vecs.T, owner)
    log.info("evaluated %s on %s: %s", model.name, split, evaluation.metrics)
    return evaluation
