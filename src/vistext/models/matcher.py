"""The match classifier: does this set of tags belong to this image? A two-input model with a sigmoid output.

Image side: the bundled encoder's pooled features, standardised, through a small projection. Tag side: each
tag's words as frozen GloVe vectors (any word GloVe knows works, not only the training vocabulary) read by a
bidirectional GRU and mean-pooled over the words. The two vectors, concatenated with their element-wise product,
feed a small classifier that outputs one logit.

On disk: ``config.json`` (format version, dimensions, word-vector and image-encoder names, metrics) +
``model.safetensors``; ``load_matcher()`` without a path loads ``matcher-default`` (shipped in
``vistext/models/pretrained/``, unless one is placed in ``$VISTEXT_HOME/models/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vistext.errors import ModelError, UsageError
from vistext.models.card import WEIGHTS_FILE, read_card, resolve_model_dir, write_card
from vistext.models.matcher_numpy import MAX_WORDS, parse_tag_set  # noqa: F401  (torch-free; re-exported here)
from vistext.text import WordVectors, tokenize

WORD_VECTORS = "glove-6b-50d"


class TagBatch(NamedTuple):
    vectors: torch.Tensor  # (N, L, word_dim) GloVe vectors, zero for unknown words
    known: torch.Tensor  # (N, L) 1 where GloVe knows the word
    ids: torch.Tensor  # (N, L) row in the model's own word table, 0 for words it was not trained on
    lengths: torch.Tensor  # (N,)


@dataclass
class MatcherSettings:
    image_dim: int = 1280
    word_dim: int = 50
    hidden: int = 128  # GRU units per direction
    joint: int = 256
    dropout: float = 0.2
    image_encoder: str = "efficientnet-lite0"
    word_vectors: str = WORD_VECTORS
    vocabulary: list[str] = field(default_factory=list)  # training words: each also gets its own free weights
    extra: dict[str, Any] = field(default_factory=dict)


class MatchModel(nn.Module):
    """image features (N, image_dim) + tag sets (N word sequences) -> match logits (N,)."""

    image_mean: torch.Tensor
    image_std: torch.Tensor

    def __init__(self, settings: MatcherSettings | None = None) -> None:
        super().__init__()
        s = self.settings = settings or MatcherSettings()
        self.register_buffer("image_mean", torch.zeros(s.image_dim))
        self.register_buffer("image_std", torch.ones(s.image_dim))
        self.image = nn.Sequential(nn.Dropout(s.dropout), nn.Linear(s.image_dim, s.joint), nn.ReLU())
        self.unknown = nn.Parameter(torch.zeros(s.word_dim))  # words GloVe does not know
        self.gru = nn.GRU(s.word_dim, s.hidden, batch_first=True, bidirectional=True)
        # each word's GloVe vector generates the weights of a linear tagger for that word over the standardised
        # image features: known training tags and words never seen in training alike get a fit to the image
        self.word = nn.Sequential(nn.Linear(s.word_dim, s.joint), nn.ReLU(), nn.Linear(s.joint, s.image_dim))
        self.word_bias = nn.Linear(s.word_dim, 1)  # a word's base rate, so its fit alone is the evidence
        # training words also get free weights on top (row 0: every other word): GloVe generalises, the table
        # fits what GloVe cannot tell apart
        self.word_table = nn.Embedding(len(s.vocabulary) + 1, s.image_dim + 1, padding_idx=0)
        nn.init.zeros_(self.word_table.weight)
        self._word_ids = {w: i + 1 for i, w in enumerate(s.vocabulary)}
        self.fit_dropout = nn.Dropout(0.5)
        self.text = nn.Sequential(nn.Linear(2 * s.hidden + s.image_dim, s.joint), nn.ReLU())
        final = nn.Linear(s.joint, 1)
        self.classifier = nn.Sequential(nn.Dropout(s.dropout), nn.Linear(3 * s.joint + 9, s.joint), nn.ReLU(), final)
        # a skip path: the set's mean likelihood ratio alone already separates own from foreign tag sets well,
        # so the classifier starts there (last layer zeroed) and learns corrections on top
        self.llr_scale = nn.Parameter(torch.tensor(1.0))
        self.llr_shift = nn.Parameter(torch.tensor(0.0))
        nn.init.zeros_(final.weight)
        nn.init.zeros_(final.bias)
        self._vectors: WordVectors | None = None

    # ---- the tag side -----------------------------------------------------------------------------------
    @property
    def vectors(self) -> WordVectors:
        if self._vectors is None:
            if self.settings.word_vectors != WORD_VECTORS:
                raise ModelError(f"unknown word vectors {self.settings.word_vectors!r}; known: {WORD_VECTORS}")
            self._vectors = WordVectors.bundled_glove()
        return self._vectors

    def words_of(self, tag_set: Sequence[str]) -> list[str]:
        return [word for tag in tag_set for word in tokenize(tag)][:MAX_WORDS]

    def embed_tag_sets(self, tag_sets: Sequence[Sequence[str]]) -> TagBatch:
        """Word vectors (N, L, D), known-word flags (N, L), vocabulary ids (N, L) and lengths (N,) of tag sets;
        an empty set is one unknown word."""
        words = [self.words_of(tags) or [""] for tags in tag_sets]
        length = max(len(w) for w in words)
        out = np.zeros((len(words), length, self.settings.word_dim), np.float32)
        known = np.zeros((len(words), length), np.float32)
        index = self.vectors.index
        for i, sequence in enumerate(words):
            rows = [(j, index[w]) for j, w in enumerate(sequence) if w in index]
            if rows:
                positions, glove_rows = zip(*rows, strict=True)
                order = np.argsort(glove_rows)  # memory-mapped rows read in order
                out[i, np.array(positions)[order]] = self.vectors.matrix[np.array(glove_rows)[order]]
                known[i, list(positions)] = 1.0
        lengths = torch.tensor([len(w) for w in words])
        ids = torch.zeros(len(words), length, dtype=torch.long)
        for i, sequence in enumerate(words):
            ids[i, : len(sequence)] = torch.tensor([self._word_ids.get(w, 0) for w in sequence])
        return TagBatch(torch.from_numpy(out), torch.from_numpy(known), ids, lengths)

    def _fit_weights(self, vectors: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each word's tagger weights (..., image_dim) and bias (..., 1)."""
        table = self.word_table(ids)
        return self.word(vectors) + table[..., :-1], self.word_bias(vectors) + table[..., -1:]

    def _words(
        self, vectors: torch.Tensor, known: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(GRU states (N, L, 2h), word weights (N, L, image_dim), word biases (N, L, 1), mask (N, L, 1))."""
        vectors = vectors + (1 - known)[..., None] * self.unknown
        packed = nn.utils.rnn.pack_padded_sequence(vectors, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.gru(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=vectors.shape[1])
        mask = (torch.arange(vectors.shape[1])[None, :] < lengths[:, None]).to(states.dtype)[..., None]
        weights, bias = self._fit_weights(vectors, ids)
        return states, weights, bias, mask

    @staticmethod
    def _pool(values: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """(mean, max, min) over the real words of (N, L, 1) values -> (N, 3)."""
        mean = (values * mask).sum(1) / count
        best, worst = values.masked_fill(mask == 0, -1e4).amax(1), values.masked_fill(mask == 0, 1e4).amin(1)
        return torch.cat([mean, best, worst], dim=1)

    # ---- both -------------------------------------------------------------------------------------------
    def forward(
        self,
        image_features: torch.Tensor,
        vectors: torch.Tensor,
        known: torch.Tensor,
        ids: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        x = (image_features - self.image_mean) / self.image_std
        image = self.image(x)
        states, words, bias, mask = self._words(vectors, known, ids, lengths)
        count = lengths[:, None].to(states.dtype)
        text = self.text(torch.cat([(states * mask).sum(1) / count, (words * mask).sum(1) / count], dim=1))
        # how well each word fits the image, as the auxiliary tagger sees it: evidence, log-probability and
        # log-likelihood ratio against the average image (standardised features 0, evidence 0), so common
        # words do not win by being common; their mean, best and worst over the set are strong cues
        fit = (words * self.fit_dropout(x)[:, None, :]).sum(-1, keepdim=True)
        log_p = F.logsigmoid(fit + bias)
        llr = log_p - F.logsigmoid(bias)
        stats = torch.cat([self._pool(v, mask, count) for v in (fit, log_p, llr)], dim=1)
        skip = self.llr_scale * stats[:, 6] + self.llr_shift  # column 6: the mean likelihood ratio
        return self.classifier(torch.cat([image, text, image * text, stats], dim=1)).squeeze(1) + skip

    def tag_logits(self, image_features: torch.Tensor, tags: TagBatch) -> torch.Tensor:
        """(N, V) logits that each of V tags (``embed_tag_sets([[tag] for tag in tags])``) is in each image, from
        the same word fit the classifier reads (a tag of several words: their mean). Trained as an auxiliary
        tagger it gives the fit dense supervision: every tag, every image."""
        vectors = tags.vectors + (1 - tags.known)[..., None] * self.unknown
        weights, bias = self._fit_weights(vectors, tags.ids)
        mask = (torch.arange(vectors.shape[1])[None, :] < tags.lengths[:, None]).to(vectors.dtype)[..., None]
        count = tags.lengths[:, None].to(vectors.dtype)
        weights, bias = (weights * mask).sum(1) / count, (bias * mask).sum(1) / count
        x = self.fit_dropout((image_features - self.image_mean) / self.image_std)
        return x @ weights.T + bias.T

    def score(self, image_features: np.ndarray, tag_sets: Sequence[Sequence[str]]) -> np.ndarray:
        """Match probabilities (M,): one image's features (D,) against M tag sets, or N images (N, D) paired
        row by row with N tag sets."""
        features = np.asarray(image_features, dtype=np.float32)
        if not tag_sets:
            raise UsageError("no tag sets to score")
        if features.ndim == 1:
            features = np.broadcast_to(features, (len(tag_sets), features.shape[0]))
        if features.shape != (len(tag_sets), self.settings.image_dim):
            raise UsageError(
                f"image features of shape {features.shape} do not fit {len(tag_sets)} tag sets "
                f"of a matcher for {self.settings.image_dim}-d features"
            )
        self.eval()
        with torch.inference_mode():
            # a copy: a broadcast or stored (read-only) array would make torch warn that it is not writable
            logits = self(torch.from_numpy(np.array(features, dtype=np.float32)), *self.embed_tag_sets(tag_sets))
        return torch.sigmoid(logits).numpy()

    # ---- save / load ------------------------------------------------------------------------------------
    def save(self, directory: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        s = self.settings
        config = {
            "image_encoder": s.image_encoder,
            "word_vectors": s.word_vectors,
            "dims": {"image": s.image_dim, "word": s.word_dim, "hidden": s.hidden, "joint": s.joint},
            "dropout": s.dropout,
            "vocabulary": s.vocabulary,
            "metrics": metrics or s.extra.get("metrics", {}),
            "training": s.extra.get("training", {}),
        }
        write_card(directory, "matcher", config)
        return directory


def load_matcher(directory: str | Path | None = None) -> MatchModel:
    """Load a matcher: a directory, or a name looked up in ``$VISTEXT_HOME/models`` and then among the models
    shipped with vistext; ``None`` loads ``matcher-default``. Checks the card's format and version."""
    from safetensors.torch import load_file

    directory = resolve_model_dir(directory, "matcher")
    config = read_card(directory, "matcher")
    dims = config["dims"]
    settings = MatcherSettings(
        image_dim=dims["image"],
        word_dim=dims["word"],
        hidden=dims["hidden"],
        joint=dims["joint"],
        dropout=config.get("dropout", 0.2),
        image_encoder=config.get("image_encoder", "efficientnet-lite0"),
        word_vectors=config.get("word_vectors", WORD_VECTORS),
        vocabulary=list(config.get("vocabulary", [])),
        extra={"metrics": config.get("metrics", {}), "training": config.get("training", {})},
    )
    model = MatchModel(settings)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{weights}: match model weights missing")
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as error:
        raise ModelError(f"{weights}: weights do not fit the config ({str(error).splitlines()[0]})") from None
    return model.eval()
