"""Choosing the concept space's evidence on dev: region windows over the grid and hypernym nodes.

``EvidenceSearch`` encodes the opendomain-classes photos and Flickr8k's dev and test photos once (features with the
7x7 grid, cached), then scores a variant of the shipped concept space (``with_evidence``: other region windows and
pooling, hypernym nodes at some weight) through the runtime's own ``OpenDomainModel`` (ONNX joint model and
MiniLM, texts embedded once): opendomain zero-shot top-1 and search P@10 / mAP, Flickr8k caption-noun object
queries (``evaluation.object_queries``) and Flickr8k retrieval recall. Every variant re-fits the fusion's concept
standardisation on Flickr8k dev pairs (no labels), as ``vistext train concepts`` does; ``save_evidence`` writes the
chosen one with its search and tag calibrations re-fitted on the opendomain dev half (the same procedure as
``training.concepts``). ``bench/objects.py`` prints the tables and chooses on dev; test is only reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vistext.encoders.base import ImageFeatures
from vistext.models.concepts import ConceptSpace, build_label_embeddings
from vistext.models.evidence import RegionEvidence
from vistext.models.open_domain import OpenDomainModel
from vistext.training.concepts import FLOORS

log = logging.getLogger(__name__)
SPLITS = ("dev", "test")


class CachedJoint:
    """The ONNX joint model with its text encodings kept per text and its image vectors per feature set, so
    scoring many variants encodes each text and photo once (everything else is the model's own)."""

    def __init__(self, joint: Any) -> None:
        self._joint = joint
        self._texts: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = {}
        self._images: dict[tuple[int, bool], np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._joint, name)

    def encode_text_and_minilm(self, texts: list[str], corrected: bool = True) -> tuple[np.ndarray, np.ndarray]:
        missing = list(dict.fromkeys(t for t in texts if (t, corrected) not in self._texts))
        if missing:
            joint, minilm = self._joint.encode_text_and_minilm(missing, corrected=corrected)
            self._texts.update({(t, corrected): (j, m) for t, j, m in zip(missing, joint, minilm, strict=True)})
        pairs = [self._texts[(t, corrected)] for t in texts]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def encode_images(self, features: ImageFeatures, corrected: bool = True) -> np.ndarray:
        key = (id(features.pooled), corrected)
        if key not in self._images:
            self._images[key] = self._joint.encode_images(features, corrected=corrected)
        return self._images[key]


@dataclass
class PhotoSet:
    features: ImageFeatures  # pooled, logits, grid (float32)
    captions: list[list[str]] | None = None  # Flickr8k: each photo's captions


class EvidenceSearch:
    """The photos every variant is scored on, the runtime models, and the scoring."""

    def __init__(self, opendomain: str, flickr: str, seed: int = 0) -> None:
        from vistext.datasets import open_caption_dataset
        from vistext.datasets.classes import ClassFolder
        from vistext.encoders import create_image_encoder
        from vistext.evaluation.object_queries import object_queries
        from vistext.models.concepts import load_concept_space
        from vistext.models.joint_onnx import load_query_model

        encoder = create_image_encoder("efficientnet-lite0")
        self.data = ClassFolder(opendomain, seed=seed)
        self.names = self.data.class_names
        self.od = {s: PhotoSet(_features(self.data.images(s), encoder)) for s in SPLITS}
        self.targets = {s: np.array(self.data.targets(s)) for s in SPLITS}
        self.f8k: dict[str, PhotoSet] = {}
        self.owner: dict[str, np.ndarray] = {}
        for split in SPLITS:
            by_image: dict[Path, list[str]] = {}
            for c in open_caption_dataset(f"flickr8k:{flickr}").captions(split):
                by_image.setdefault(c.image, []).append(c.text)
            images = sorted(by_image)
            self.f8k[split] = PhotoSet(_features(images, encoder), [by_image[p] for p in images])
            self.owner[split] = np.repeat(np.arange(len(images)), [len(by_image[p]) for p in images])
        self.queries = {s: object_queries(self.f8k[s].captions or []) for s in SPLITS}
        self.joint = CachedJoint(load_query_model())
        self.release = load_concept_space()
        self._evidence: dict[str, dict[int, np.ndarray]] = {}

    def embed_minilm(self, texts: list[str]) -> np.ndarray:
        return self.joint.encode_text_and_minilm(texts)[1]

    def with_evidence(self, regions: RegionEvidence, node_weight: float) -> ConceptSpace:
        """The shipped concept space with other evidence: region windows, and hypernym nodes when weighted."""
        from vistext.models.concept_nodes import default_tag_nodes

        base = self.release
        classes = base.label_embeddings[: base.n_classes]
        if node_weight <= 0:
            return replace(base, label_embeddings=classes, nodes=None, regions=regions)
        nodes = default_tag_nodes(node_weight)
        templates = tuple(base.card.get("label_templates", ("{}",)))
        rows = build_label_embeddings(self.embed_minilm, [[w] for w in nodes.words], templates)
        return replace(base, label_embeddings=np.concatenate([classes, rows]), nodes=nodes, regions=regions)

    def model(self, space: ConceptSpace, ramp: tuple[float, float, float, float] | None = None) -> OpenDomainModel:
        """The runtime model over ``space``, its concept standardisation re-fitted on Flickr8k dev pairs, with
        another confidence ramp (low, high, max weight, min weight) when given."""
        if ramp is not None:
            names = ("low", "high", "max_weight", "min_weight")
            fusion = {**space.card["adaptive_fusion"], **dict(zip(names, ramp, strict=True))}
            space = replace(space, card={**space.card, "adaptive_fusion": fusion})
        model = OpenDomainModel(self.joint, space, "bench")  # type: ignore[arg-type]
        # the evidence depends on the regions alone: computed once per photo set for all node weights
        memo = self._evidence.setdefault(repr(space.regions.to_card()), {})
        compute = model.evidence

        def evidence(features: ImageFeatures) -> np.ndarray:
            if id(features.pooled) not in memo:
                memo[id(features.pooled)] = compute(features)
            return memo[id(features.pooled)]

        model.evidence = evidence  # type: ignore[method-assign]
        photos = self.f8k["dev"]
        concept = space.embed_logits(model.evidence(photos.features))
        texts = space.embed_texts(self.embed_minilm([t for c in photos.captions or [] for t in c]))
        cosines = concept @ texts.T
        model.fusion = replace(model.fusion, concept_mean=float(cosines.mean()), concept_std=float(cosines.std()))
        model.tag_fusion = replace(model.tag_fusion, concept_mean=model.fusion.concept_mean,
                                   concept_std=model.fusion.concept_std)  # fmt: skip
        return model

    def evaluate(self, model: OpenDomainModel, split: str, template: str = "a photo of a {}") -> dict[str, float]:
        """Every figure of one split: opendomain, object queries, Flickr8k recall."""
        from vistext.evaluation.object_queries import evaluate_object_queries
        from vistext.evaluation.opendomain import evaluate_open_domain
        from vistext.evaluation.retrieval import retrieval_metrics

        od = self.od[split].features
        tag_images, search_images = model.tag_image_vectors(od), model.project(od)
        out = evaluate_open_domain(
            lambda words: model.scores(model.tag_vectors(words), tag_images), self.targets[split], self.names,
            tag_template="{}", search_template=template,
            score_queries=lambda texts: model.scores(model.text_vectors(texts), search_images),
        )  # fmt: skip
        photos = self.f8k[split]
        images = model.project(photos.features)
        objects = evaluate_object_queries(lambda t: model.scores(model.text_vectors(t), images), self.queries[split])
        out.update({f"objects {k}": v for k, v in objects.items()})
        captions = [t for c in photos.captions or [] for t in c]
        recall = retrieval_metrics(model.scores(model.text_vectors(captions), images).T, self.owner[split])
        out.update({k: float(recall[k]) for k in FLOORS})
        return out

    def calibrations(self, model: OpenDomainModel) -> tuple[tuple[float, float], tuple[float, float]]:
        """The search and tag calibrations re-fitted on the opendomain dev half (as ``training.concepts``)."""
        from vistext.evaluation.opendomain import fit_relevance_calibration

        od = self.od["dev"].features
        relevant = self.targets["dev"][None, :] == np.arange(len(self.names))[:, None]
        search = model.scores(model.text_vectors([f"a photo of a {n}" for n in self.names]), model.project(od))
        tags = model.scores(model.tag_vectors(self.names), model.tag_image_vectors(od))
        return fit_relevance_calibration(search.ravel(), relevant.ravel()), fit_relevance_calibration(
            tags.T.ravel(), relevant.T.ravel()
        )


def _features(paths: list[Path], encoder: Any) -> ImageFeatures:
    from vistext.features import encode_files

    arrays = encode_files(paths, encoder, grid=True, progress=False)
    grid = None if arrays.grid is None else arrays.grid.astype(np.float32)
    return ImageFeatures(pooled=arrays.pooled, logits=arrays.logits, grid=grid)


def save_evidence(search: EvidenceSearch, space: ConceptSpace, ramp: tuple | None, out: str | Path, note: str) -> Path:
    """Write ``space`` with its re-fitted standardisation, ramp and both calibrations, and its dev and test
    figures."""
    model = search.model(space, ramp)
    (a, b), (ta, tb) = search.calibrations(model)
    fusion = replace(model.fusion, calibration=(a, b))
    model.fusion = fusion
    model.tag_fusion = replace(model.tag_fusion, calibration=(ta, tb))
    figures = {s: {k: round(float(v), 4) for k, v in search.evaluate(model, s).items()} for s in SPLITS}
    card = {
        **space.card,
        "adaptive_fusion": fusion.to_card(),
        "tag_fusion": {**space.card.get("tag_fusion", {}), "calibration": [ta, tb]},
        "evidence_chosen_on": note,
        "dev": figures["dev"],
        "test": figures["test"],
        **{f"flickr8k_{s}": {k: figures[s][k] for k in FLOORS} for s in SPLITS},
    }
    return space.save(out, card)
