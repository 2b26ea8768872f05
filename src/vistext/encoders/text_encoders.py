"""Text encoders for the joint space, registered by name in ``TEXT_ENCODERS``.

- ``minilm``: the bundled all-MiniLM-L6-v2 sentence encoder (mean-pooled, 384-d), frozen or with its top
  ``finetune_layers`` transformer layers trained. Loaded lazily, offline, on the first text it encodes.
- ``glove-gru`` / ``glove-lstm``: the seed-faithful encoder: a tokenizer + vocabulary saved with the model, an
  embedding layer initialised from GloVe (bundled 6B-50d or a GloVe/word2vec text file), frozen or fine-tuned,
  then a GRU/LSTM whose last hidden state is the text vector.

Every encoder is an ``nn.Module`` with ``dim``, ``cacheable`` (no trainable part: its outputs can be cached),
``prepare(texts) -> batch`` (tokenisation) and ``forward(batch) -> (N, dim)``. ``trainable_state()`` is what a
saved model stores (never the bundled backbone), ``save_assets(dir)``/``config()`` what it needs to rebuild.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vistext.encoders.minilm_graph import minilm_path
from vistext.errors import ModelError
from vistext.registry import Registry

log = logging.getLogger(__name__)

TEXT_ENCODERS: Registry[nn.Module] = Registry("text encoder")
VOCAB_FILE = "vocab.txt"


class TextEncoder(nn.Module):
    """Base class: see the module docstring for the interface."""

    name: str = ""
    dim: int = 0

    @property
    def cacheable(self) -> bool:
        return not any(p.requires_grad for p in self.parameters())

    def prepare(self, texts: list[str]) -> dict[str, torch.Tensor]:
        raise ModelError(f"text encoder {self.name!r} cannot tokenise")  # every registered encoder overrides

    def config(self) -> dict[str, Any]:
        return {}

    def save_assets(self, directory: Path) -> None:
        """Write files the encoder needs besides its weights (e.g. the vocabulary)."""

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)

    def frozen_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The part of ``forward`` with no trainable weights: what training caches when ``cacheable``."""
        return self(batch)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """The trainable rest of ``forward``, applied to ``frozen_features`` output."""
        return features

    @torch.no_grad()
    def encode_frozen(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """``frozen_features`` of ``texts`` in eval mode, batched."""
        was_training = self.training
        self.eval()
        out = [self.frozen_features(self.prepare(texts[s : s + batch_size])) for s in range(0, len(texts), batch_size)]
        self.train(was_training)
        return torch.cat(out)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Text features (N, dim) in eval mode, batched."""
        was_training = self.training
        self.eval()
        out = [self(self.prepare(texts[s : s + batch_size])) for s in range(0, len(texts), batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.dim)


# ---- MiniLM -----------------------------------------------------------------------------------------------


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2, mean-pooled and L2-normalised; the top ``finetune_layers`` layers train, the rest are
    frozen."""

    name = "minilm"
    dim = 384
    max_length = 64

    def __init__(self, finetune_layers: int = 0, **_: object) -> None:
        super().__init__()
        self.finetune_layers = int(finetune_layers)
        # Holder so the lazily built backbone is not a registered submodule (its weights never get saved).
        self._backbone: list[nn.Module] = []
        self._tokenizer: Any = None
        self._pending: dict[str, torch.Tensor] = {}
        self.tuned = nn.ModuleList()  # the fine-tuned top layers, when any (filled on load)

    @property
    def cacheable(self) -> bool:
        return self.finetune_layers == 0

    def _load(self) -> nn.Module:
        if self._backbone:
            return self._backbone[0]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # a weights bar for a 90 MB local load is noise, and breaks --quiet
        path = minilm_path()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            # the shipped weights are float16 on disk: compute in float32 as the graphs do
            model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32).eval()
        except OSError as error:
            raise ModelError(f"{path}: cannot load MiniLM ({error})") from None
        for p in model.parameters():
            p.requires_grad_(False)
        layers = model.encoder.layer
        if self.finetune_layers:
            top = list(layers[-self.finetune_layers :])
            self.tuned = nn.ModuleList(top)  # shared with the backbone: training them trains the backbone
            for p in self.tuned.parameters():
                p.requires_grad_(True)
            if self._pending:
                self.tuned.load_state_dict(self._pending)
                self._pending = {}
        self._backbone.append(model)
        return model

    def trainable_state(self) -> dict[str, torch.Tensor]:
        if not self.finetune_layers:
            return {}
        self._load()
        return {k: v.detach().clone() for k, v in self.tuned.state_dict().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        if not self.finetune_layers:
            return
        if self._backbone:
            self.tuned.load_state_dict(state)
        else:
            self._pending = dict(state)  # applied when MiniLM is first loaded

    def config(self) -> dict[str, Any]:
        return {"finetune_layers": self.finetune_layers}

    def trainable_parameters(self) -> list[nn.Parameter]:
        self._load()
        return list(self.tuned.parameters())

    def prepare(self, texts: list[str]) -> dict[str, torch.Tensor]:
        self._load()
        return dict(
            self._tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        )

    def _hidden(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        model = self._load()
        model.train(self.training and self.finetune_layers > 0)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.finetune_layers > 0):
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return hidden, batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden, mask = self._hidden(batch)
        # mean pooling + L2 normalisation: exactly the sentence-transformers pipeline of all-MiniLM-L6-v2
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0), dim=-1)


class MiniLMTokenPoolingEncoder(MiniLMEncoder):
    """Frozen MiniLM token states + a learned generalised pooling (GPO) over them, concatenated with the plain
    sentence vector: ``dim = 384 + width``. The token states (padded to ``max_tokens``, the mask as an extra
    channel) are what training caches; only the pooling trains."""

    name = "minilm-gpo"
    max_tokens = 32

    def __init__(self, width: int = 384, **kwargs: object) -> None:
        if kwargs.get("finetune_layers"):
            raise ModelError("minilm-gpo keeps MiniLM frozen; use 'minilm' to fine-tune its top layers")
        super().__init__(finetune_layers=0)
        self.width = int(width)
        self.dim = 384 + self.width
        self.norm = nn.LayerNorm(384)
        self.reduce = nn.Linear(384, self.width)
        self.position_logits = nn.Parameter(torch.zeros(self.max_tokens))

    @property
    def cacheable(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        return {"width": self.width}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)

    def prepare(self, texts: list[str]) -> dict[str, torch.Tensor]:
        self._load()
        return dict(
            self._tokenizer(
                list(texts), padding="longest", truncation=True, max_length=self.max_tokens, return_tensors="pt"
            )
        )

    def frozen_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # MiniLM runs on the batch's longest text only (a 12-word query costs half of 32 tokens); padding
        # tokens are masked out of attention, so the real tokens' states do not depend on the padded length
        hidden, mask = self._hidden(batch)
        features = torch.cat([hidden, mask], dim=-1)
        missing = self.max_tokens - features.shape[1]
        return F.pad(features, (0, 0, 0, missing)) if missing > 0 else features  # (N, max_tokens, 385)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        features = features.float()
        hidden, mask = features[..., :384], features[..., 384] > 0.5
        weights_mask = mask[..., None].to(hidden.dtype)
        sentence = F.normalize((hidden * weights_mask).sum(1) / weights_mask.sum(1).clamp(min=1.0), dim=-1)
        tokens = F.gelu(self.reduce(self.norm(hidden)))
        # GPO: per dimension, sort the real tokens' values (padding sorts last) and take a learned weighted sum
        ordered = tokens.masked_fill(~mask[..., None], float("-inf")).sort(dim=1, descending=True).values
        ordered = ordered.masked_fill(~torch.isfinite(ordered), 0.0)
        count = mask.sum(1, keepdim=True)
        positions = torch.arange(self.max_tokens, device=features.device)[None]
        # broadcast rather than expanded to len(features): a traced ONNX export keeps the batch size dynamic
        logits = self.position_logits[None].masked_fill(positions >= count, float("-inf"))  # (N, L)
        pooled = torch.einsum("nld,nl->nd", ordered, torch.softmax(logits, dim=1))
        return torch.cat([pooled, sentence], dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.pool(self.frozen_features(batch))


TEXT_ENCODERS.register("minilm")(MiniLMEncoder)
TEXT_ENCODERS.register("minilm-gpo")(MiniLMTokenPoolingEncoder)


# ---- GloVe + GRU/LSTM (seed-faithful) ---------------------------------------------------------------------


class GloveRNNEncoder(TextEncoder):
    """Tokenizer + vocabulary + GloVe-initialised embedding + GRU/LSTM; the text vector is the last hidden state.

    Built for training with ``vocab`` (a ``Vocabulary``) and ``vectors`` (``"glove-6b-50d"`` for the bundled
    GloVe, or a path to a GloVe/word2vec text file); a saved model rebuilds from ``assets`` (its directory,
    holding ``vocab.txt``) and the embedding weights in its safetensors.
    """

    max_length = 48

    def __init__(
        self,
        cell: str = "gru",
        hidden: int = 1024,
        vocab: object | None = None,
        vectors: str = "glove-6b-50d",
        freeze_embeddings: bool = False,
        assets: str | None = None,
        embedding_dim: int | None = None,
        seed: int = 0,
        **_: object,
    ) -> None:
        super().__init__()
        from vistext.text import Vocabulary, WordVectors

        self.name = f"glove-{cell}"
        self.cell, self.hidden, self.vectors_name = cell, int(hidden), vectors
        self.freeze_embeddings = bool(freeze_embeddings)
        if vocab is None:
            if assets is None:
                raise ModelError(f"text encoder {self.name!r} needs a vocabulary (vocab=...) or a saved model dir")
            vocab = Vocabulary.load(Path(assets) / VOCAB_FILE)
        self.vocab: Vocabulary = vocab  # type: ignore[assignment]
        if assets is None:  # training from scratch: initialise from the word vectors
            word_vectors = (
                WordVectors.bundled_glove() if vectors == "glove-6b-50d" else WordVectors.from_text_file(vectors)
            )
            log.info(
                "%s: %.1f%% of %d words have vectors",
                word_vectors.name,
                100 * word_vectors.coverage(self.vocab),
                len(self.vocab),
            )
            matrix = torch.from_numpy(word_vectors.matrix_for(self.vocab, rng=seed))
        else:  # loading: the trained embedding comes from the weights file
            matrix = torch.zeros(len(self.vocab), int(embedding_dim or 50))
        self.embedding = nn.Embedding.from_pretrained(matrix, freeze=self.freeze_embeddings, padding_idx=Vocabulary.PAD)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}.get(cell)
        if rnn is None:
            raise ModelError(f"unknown recurrent cell {cell!r}; known: gru, lstm")
        self.rnn = rnn(matrix.shape[1], self.hidden, batch_first=True)
        self.dim = self.hidden

    @property
    def cacheable(self) -> bool:
        return False

    def config(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "hidden": self.hidden,
            "vectors": self.vectors_name,
            "freeze_embeddings": self.freeze_embeddings,
            "embedding_dim": int(self.embedding.embedding_dim),
        }

    def save_assets(self, directory: Path) -> None:
        self.vocab.save(directory / VOCAB_FILE)

    def prepare(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids, lengths = self.vocab.encode_batch(list(texts), self.max_length)
        return {"ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(batch["ids"]), batch["lengths"].cpu(), batch_first=True, enforce_sorted=False
        )
        _, state = self.rnn(packed)
        last = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
        return last[-1]


@TEXT_ENCODERS.register("glove-gru")
def _glove_gru(**kwargs: Any) -> TextEncoder:
    kwargs.pop("cell", None)
    return GloveRNNEncoder(cell="gru", **kwargs)


@TEXT_ENCODERS.register("glove-lstm")
def _glove_lstm(**kwargs: Any) -> TextEncoder:
    kwargs.pop("cell", None)
    return GloveRNNEncoder(cell="lstm", **kwargs)
