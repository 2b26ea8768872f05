"""The training recipes: every setting of the three trainers and its one default.

The defaults are the recipes the shipped models were trained with; ``vistext train`` takes its option defaults
from these fields, so the Python API and the CLI train the same model. This module imports nothing heavy, so
the CLI can read it at start-up.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vistext.datasets import TaggedDataset

METHODS = ("cached", "frozen-aug", "finetune")
DEFAULT_EPOCHS = {"cached": 25, "frozen-aug": 25, "finetune": 6}
BUNDLED = "efficientnet-lite0"


@dataclass
class JointTrainConfig:
    """Everything that defines a training run (saved in the checkpoint and the model card).

    The defaults are the recipe of the shipped ``joint-default`` model, and ``vistext train joint`` takes its
    option defaults from these fields: the Python API and the CLI train the same model."""

    data: str  # a caption dataset spec, e.g. "flickr8k:/path/to/flickr8k"
    out: str  # the output model directory (also holds the resumable checkpoint)
    text: str = "minilm-gpo"  # registered text encoder: minilm-gpo, minilm, glove-gru, glove-lstm
    loss: str = "infonce"  # registered loss: infonce, vse-hardest, hinge-sum, triplet-semihard
    image_head: str = "pooled-mlp"  # registered image head: pooled-mlp, grid-gpo, grid-attn
    dim: int = 512
    hidden: int = 256  # width of the projection MLPs
    dropout: float = 0.5
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    margin: float = 0.2
    views: str = "orig,flip,crop-tl,crop-br,crop-c"  # training views per image (dev/test always "orig")
    hard_after: int = 2  # switch the loss to vse-hardest from this epoch on (-1: never)
    patience: int = 3  # early stopping: epochs without a better dev recall sum
    branches: int = 5  # ensemble members trained together (one joint model)
    reduced_dim: int | None = 512  # several branches: joined embeddings reduced to this many dims (None: keep all)
    hubness_bank: int = 1000  # CSLS hubness correction: reference train images/captions kept (0: off)
    hubness_k: int = 10
    text_layers: int = 0  # MiniLM: fine-tune this many top layers
    text_lr: float = 5e-5
    text_width: int = 384  # minilm-gpo: width of the learned token pooling
    rnn_hidden: int = 1024  # GloVe encoders
    vectors: str = "glove-6b-50d"  # GloVe encoders: bundled vectors or a GloVe/word2vec text file
    freeze_embeddings: bool = False
    min_count: int = 1  # GloVe vocabulary: minimum word count in the training captions
    name: str | None = None  # the model's name (its index space is "joint:NAME"); default: the out dir's name
    seed: int = 0
    # torch CPU threads: the heads are small, and on a shared machine 2+ threads spend their time waiting on
    # each other (measured: 8 min vs 23 s per epoch); None keeps torch's default
    threads: int | None = 1
    max_train_images: int | None = None  # smoke runs: only the first N train images
    max_eval_images: int | None = None  # smoke runs: only the first N dev/test images
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaggerTrainConfig:
    """Everything ``train_tagger`` needs; ``vistext train tagger`` takes its option defaults from these fields."""

    data: str | TaggedDataset  # FORMAT:PATH or an opened dataset
    out: str | Path | None = None  # model directory (None: a fresh temporary directory)
    method: str = "cached"  # cached | frozen-aug | finetune
    backbone: str = BUNDLED  # a registered backbone name (see vistext.models.backbones)
    feature: str = "pooled"  # pooled | grid (grid: class-specific attention over the feature map; cached only)
    hidden: int = 0  # >0: a hidden layer of this size in the head
    loss: str = "bce"  # bce | cb-bce | asl (bench: same mAP, bce best P@k, cb-bce best macro-F1)
    epochs: int | None = None  # None: a per-method default
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr: float = 3e-4
    weight_decay: float = 0.05  # strong: 300 sigmoid outputs over 1280 features overfit a few thousand photos fast
    dropout: float = 0.5
    views: int = 4  # augmented views per photo (frozen-aug; finetune uses min(views, 2))
    top_stages: int = 2  # finetune: how many top backbone stages train
    patience: int | None = 5  # stop after this many epochs without a better validation mAP (None: never)
    val_fraction: float = 0.1  # held out of train when the dataset has no dev/val split
    pretrained: bool = True
    threads: int | None = None
    seed: int = 0
    max_images: int | None = None  # cap on training images (quick experiments)


@dataclass
class MatcherTrainConfig:
    """Everything ``train_matcher`` needs; ``vistext train matcher`` takes its option defaults from these fields."""

    data: str | TaggedDataset  # FORMAT:PATH or an opened dataset (multi-label tags per image)
    out: str | Path | None = None  # None: a fresh temporary directory
    epochs: int = 8  # the shipped matcher-default was trained with 8
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    hidden: int = 128
    joint: int = 256
    hard_negatives: bool = True
    neighbours: int = 10  # hard negatives come from this many nearest images
    max_overlap: float = 0.5  # ...whose tag sets overlap (Jaccard) less than this
    tag_dropout: float = 0.2  # chance of dropping each tag of a positive (at least one kept)
    aux_weight: float = 0.1  # weight of the auxiliary tagging loss on the word fit (0: off)
    pretrain_epochs: int = 30  # epochs of the word fit alone as a tagger first (cheap: no GRU)
    patience: int | None = None  # stop after this many epochs without a better two-choice accuracy (None: never)
    threads: int | None = None
    seed: int = 0
    max_images: int | None = None


def defaults(config_class: type) -> dict[str, Any]:
    """``{field: default}`` of a config dataclass (fields without a default are left out)."""
    return {f.name: f.default for f in fields(config_class) if f.default is not MISSING}
