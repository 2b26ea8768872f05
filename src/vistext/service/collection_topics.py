"""Topics of an indexed collection: NMF over each image's tag scores, cached beside the catalogue.

The tag scores are the bundled ImageNet classifier's probabilities, stored at indexing time, so topics never
re-read an image. Image-to-topic weights are kept (``topics-*.npz``) for maps and "more like this topic".
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np

from vistext.encoders.base import softmax
from vistext.errors import StoreError, UsageError
from vistext.paths import atomic_path, atomic_write
from vistext.service.collection import Collection
from vistext.service.loaded_models import LoadedModels
from vistext.service.results import TopicsResult

log = logging.getLogger(__name__)


class CollectionTopics:
    """Topics of ``collection``, fitted on the ImageNet scores its images were indexed with."""

    def __init__(self, collection: Collection, models: LoadedModels) -> None:
        self.collection = collection
        self.models = models

    def _tag_matrix(self) -> tuple[list[int], np.ndarray, list[str]]:
        labels = list(self.models.encoder.labels or [])
        ids, rows = [], []
        for record in self.collection.store().records(status="ok"):
            if record.id is not None and record.logits is not None and len(record.logits) == len(labels):
                ids.append(int(record.id))
                rows.append(softmax(record.logits.astype(np.float64)))
        if len(ids) < 2:
            raise UsageError(f"{self.collection.db_path()}: topics need at least 2 indexed images, found {len(ids)}")
        return ids, np.stack(rows), labels

    def topics(self, n: int = 20, *, seed: int = 0, top_images: int = 8) -> TopicsResult:
        """``n`` NMF topics of the collection: top words, most typical image ids, each image's dominant topic."""
        from vistext.analysis.topics import fit_topics

        if n < 1:
            raise UsageError(f"the number of topics must be at least 1, got {n}")
        ids, matrix, labels = self._tag_matrix()
        n = min(n, len(ids))
        key = hashlib.sha1(np.asarray(ids, dtype=np.int64).tobytes() + f"{n}:{seed}".encode()).hexdigest()[:16]
        folder = self.collection.db_path().parent
        summary_file, weights_file = folder / f"topics-{key}.json", folder / f"topics-{key}.npz"
        if summary_file.is_file() and weights_file.is_file():
            return TopicsResult.from_dict(json.loads(summary_file.read_text(encoding="utf-8")))
        model = fit_topics(matrix, labels, n, seed=seed, ids=ids, top_images=top_images)
        dominant = model.image_topics()
        summary = model.to_dict()
        summary["image_topics"] = {str(i): int(t) for i, t in zip(ids, dominant.tolist(), strict=True)}
        try:  # only a cache: a read-only collection or a full disk still gets its topics
            for stale in folder.glob("topics-*.*"):
                stale.unlink(missing_ok=True)
            with atomic_path(weights_file) as tmp:
                np.savez_compressed(tmp, ids=np.asarray(ids), weights=model.image_weights, components=model.components)
            atomic_write(summary_file, json.dumps(summary))
        except (OSError, StoreError) as error:
            log.warning("topics not cached: %s", error)
        return TopicsResult.from_dict(summary)

    def topic_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, weights (n_images, n_topics)) of the last ``topics()`` run; fit topics first."""
        files = sorted(self.collection.db_path().parent.glob("topics-*.npz"))
        if not files:
            raise UsageError(f"{self.collection.db_path()}: no topics yet; run `vistext topics` first")
        with np.load(files[-1]) as data:
            return data["ids"], data["weights"]
