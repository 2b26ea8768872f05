"""Commands that prepare data, train and evaluate models: tags-from-captions, train, eval."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vistext.cli.options import whole
from vistext.cli.output import emit_json, say
from vistext.errors import require_extra

SEED = whole(0, 2**32 - 1, "a seed")  # NumPy's generators take seeds below 2**32

if TYPE_CHECKING:
    from vistext.training.config import JointTrainConfig, MatcherTrainConfig, TaggerTrainConfig


def run_tags_from_captions(args: argparse.Namespace) -> int:
    from vistext.datasets import open_caption_dataset, tags_from_captions

    tagged = tags_from_captions(
        open_caption_dataset(args.data), top_n=args.top, min_captions=args.min_captions, progress=not args.quiet
    )
    out = tagged.write_csv(args.out)
    items = tagged.items()
    vocabulary = tagged.vocabulary()
    summary = {
        "out": str(out),
        "n_images": len(items),
        "n_tagged": sum(1 for item in items if item.tags),
        "n_tags": len(vocabulary),
        "top_tags": vocabulary[:20],
    }
    if args.json:
        emit_json(summary)
    else:
        say(f"wrote {out}: {summary['n_tags']} tags on {summary['n_tagged']} of {summary['n_images']} images")
        say("most frequent: " + ", ".join(vocabulary[:20]))
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tfc = commands.add_parser(
        "tags-from-captions", parents=[common], help="build a multi-label tag set (CSV) from a caption dataset"
    )
    tfc.add_argument("data", help="caption dataset as FORMAT:PATH, e.g. flickr8k:../shared/datasets/flickr8k")
    tfc.add_argument("--top", type=int, default=300, help="keep the N most frequent tags (default 300)")
    tfc.add_argument("--min-captions", type=int, default=2, help="a word must be in this many of an image's captions")
    tfc.add_argument("--out", type=Path, default=Path("tags.csv"), help="the CSV to write (default tags.csv)")
    tfc.set_defaults(run=run_tags_from_captions)
    register_training(commands, common)


def _print_metrics(metrics: dict, as_json: bool) -> None:
    if as_json:
        emit_json(metrics)
        return
    for key, value in metrics.items():
        say(f"{key}: {round(value, 4) if isinstance(value, float) else value}")


# option name -> config field, for the settings ``vistext train KIND`` exposes (their defaults come from the
# config dataclasses in vistext.training.config, the one home of training defaults)
JOINT_OPTIONS = ("text", "loss", "image_head", "epochs", "batch_size", "lr", "seed", "views", "hard_after",
                 "branches", "reduced_dim", "text_layers", "vectors", "freeze_embeddings", "hidden", "rnn_hidden",
                 "name")  # fmt: skip
TAGGER_OPTIONS = ("method", "backbone", "feature", "loss", "epochs", "seed", "max_images", "hidden", "top_stages",
                  "views")  # fmt: skip
MATCHER_OPTIONS = ("epochs", "seed", "max_images")


def joint_config(args: argparse.Namespace) -> JointTrainConfig:
    """The training config ``vistext train joint`` runs (``--reduced-dim 0``: keep all dims)."""
    from vistext.training.config import JointTrainConfig

    config = JointTrainConfig(data=args.data, out=str(args.out), **{k: getattr(args, k) for k in JOINT_OPTIONS})
    config.reduced_dim = config.reduced_dim or None
    return config


def tagger_config(args: argparse.Namespace) -> TaggerTrainConfig:
    from vistext.training.config import TaggerTrainConfig

    return TaggerTrainConfig(data=args.data, out=str(args.out), **{k: getattr(args, k) for k in TAGGER_OPTIONS})


def matcher_config(args: argparse.Namespace) -> MatcherTrainConfig:
    from vistext.training.config import MatcherTrainConfig

    return MatcherTrainConfig(data=args.data, out=str(args.out), **{k: getattr(args, k) for k in MATCHER_OPTIONS})


def run_train_joint(args: argparse.Namespace) -> int:
    require_extra("train", "vistext train")
    from vistext.training.joint import train_joint

    result = train_joint(joint_config(args), progress=not args.quiet)
    summary = {
        "out": str(result.out),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1),
        "dev": result.dev,
        "test": result.test,
    }
    _print_metrics(summary, args.json)
    return 0


def run_train_tagger(args: argparse.Namespace) -> int:
    require_extra("train", "vistext train")
    from vistext.training.tagger import train_tagger

    result = train_tagger(tagger_config(args), progress=not args.quiet)
    summary = {
        "out": str(result.out),
        "train_seconds": round(result.train_seconds, 1),
        "feature_seconds": round(result.feature_seconds, 1),
        "validation": result.metrics,
    }
    _print_metrics(summary, args.json)
    return 0


def run_train_matcher(args: argparse.Namespace) -> int:
    require_extra("train", "vistext train")
    from vistext.training.matcher import train_matcher

    result = train_matcher(matcher_config(args), progress=not args.quiet)
    summary = {"out": str(result.out), "train_seconds": round(result.train_seconds, 1), "validation": result.metrics}
    _print_metrics(summary, args.json)
    return 0


def run_train_concepts(args: argparse.Namespace) -> int:
    require_extra("train", "vistext train concepts", ("torch", "transformers"))
    from vistext.training.concept_methods import ConceptConfig
    from vistext.training.concepts import build_concept_space

    config = ConceptConfig(data=args.data, flickr=args.flickr, out=str(args.out), seed=args.seed, cache=args.cache)
    best = build_concept_space(config).saved
    settings = {k: v for k, v in best.chosen.items() if k != "labels"}
    _print_metrics({"out": str(args.out), "dev_primary": best.primary, "method": best.method.params, **settings},
                   args.json)  # fmt: skip
    return 0


def run_eval(args: argparse.Namespace) -> int:
    if args.data.startswith("classes:"):
        return _eval_classes(args)
    from vistext.service.evaluate import evaluate_model

    metrics = evaluate_model(args.model, args.data, args.split, progress=not args.quiet)
    _print_metrics(metrics, args.json)
    return 0


def _eval_classes(args: argparse.Namespace) -> int:
    """Open-domain figures of the shipped default (or ``--model``'s joint model fused with the concepts)."""
    from vistext.service import Service

    with Service(joint_model=args.model, progress=not args.quiet) as service:
        evaluation = service.evaluate_classes(args.data, args.split or "test", args.template)
    _print_metrics(evaluation.to_dict(), args.json)
    return 0


_D = " (default: %(default)s)"


def _register_concepts(kinds: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    concepts = kinds.add_parser("concepts", parents=[common], help="the concept space and its fusion, chosen on dev")
    concepts.add_argument("--data", required=True, help="the opendomain-classes folder (one folder per class)")
    concepts.add_argument("--flickr", required=True, help="the Flickr8k folder (its floors guard the choice)")
    concepts.add_argument("--out", required=True, type=Path, help="where the chosen concept space is saved")
    concepts.add_argument("--seed", type=SEED, default=0, help="seed of the stratified dev/test halves" + _D)
    concepts.add_argument("--cache", help="keep text embeddings in this directory between runs")
    concepts.set_defaults(run=run_train_concepts)


def register_training(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from vistext.training.config import (
        DEFAULT_EPOCHS,
        METHODS,
        JointTrainConfig,
        MatcherTrainConfig,
        TaggerTrainConfig,
        defaults,
    )

    train = commands.add_parser("train", help="train a joint image-text model, a tagger, a match model or concepts")
    kinds = train.add_subparsers(dest="kind", metavar="KIND", required=True)

    joint = kinds.add_parser("joint", parents=[common], help="image-text embeddings from a caption dataset")
    d = defaults(JointTrainConfig)
    joint.add_argument("--data", required=True, help="caption dataset FORMAT:PATH, e.g. flickr8k:DIR")
    joint.add_argument("--out", required=True, type=Path, help="model directory (resumes if a checkpoint is there)")
    joint.add_argument("--text", default=d["text"], help="text encoder: minilm-gpo, minilm, glove-gru, glove-lstm" + _D)
    joint.add_argument("--loss", default=d["loss"], help="infonce, vse-hardest, hinge-sum, triplet-semihard" + _D)
    joint.add_argument("--image-head", default=d["image_head"], help="pooled-mlp, grid-gpo, grid-attn" + _D)
    joint.add_argument("--epochs", type=int, default=d["epochs"], help=_D.strip(" ()"))
    joint.add_argument("--hidden", type=int, default=d["hidden"], help="width of the projection MLPs" + _D)
    joint.add_argument("--rnn-hidden", type=int, default=d["rnn_hidden"], help="GloVe encoders: GRU/LSTM size" + _D)
    joint.add_argument("--name", default=d["name"], help="the model's name (default: the --out folder's name)")
    joint.add_argument("--batch-size", type=int, default=d["batch_size"], help=_D.strip(" ()"))
    joint.add_argument("--lr", type=float, default=d["lr"], help=_D.strip(" ()"))
    joint.add_argument("--views", default=d["views"], help="training views per image" + _D)
    joint.add_argument(
        "--hard-after",
        type=int,
        default=d["hard_after"],
        help="switch to hardest negatives from this epoch (-1: never)" + _D,
    )
    joint.add_argument("--branches", type=int, default=d["branches"], help="ensemble members trained together" + _D)
    joint.add_argument(
        "--reduced-dim",
        type=int,
        default=d["reduced_dim"],
        help="several branches: reduce the joined embedding to this many dims (0: keep all)" + _D,
    )
    joint.add_argument(
        "--text-layers", type=int, default=d["text_layers"], help="MiniLM: fine-tune this many top layers" + _D
    )
    joint.add_argument("--vectors", default=d["vectors"], help="GloVe encoders: bundled vectors or a text file" + _D)
    joint.add_argument(
        "--freeze-embeddings",
        action="store_true",
        default=d["freeze_embeddings"],
        help="GloVe encoders: keep word vectors fixed",
    )
    joint.add_argument("--seed", type=SEED, default=d["seed"], help=_D.strip(" ()"))
    joint.set_defaults(run=run_train_joint)

    tagger = kinds.add_parser("tagger", parents=[common], help="a multi-label tagger for your own tags")
    d = defaults(TaggerTrainConfig)
    tagger.add_argument("--data", required=True, help="tagged dataset FORMAT:PATH (csv:, jsonl:, folder:, ...)")
    tagger.add_argument("--out", required=True, type=Path)
    tagger.add_argument("--method", default=d["method"], choices=list(METHODS), help=_D.strip(" ()"))
    tagger.add_argument("--backbone", default=d["backbone"], help=_D.strip(" ()"))
    tagger.add_argument("--feature", default=d["feature"], choices=["pooled", "grid"], help=_D.strip(" ()"))
    tagger.add_argument("--loss", default=d["loss"], choices=["bce", "cb-bce", "asl"], help=_D.strip(" ()"))
    tagger.add_argument("--hidden", type=int, default=d["hidden"], help="a hidden layer of this size in the head" + _D)
    tagger.add_argument(
        "--top-stages", type=int, default=d["top_stages"], help="finetune: how many top backbone stages train" + _D
    )
    tagger.add_argument("--views", type=int, default=d["views"], help="frozen-aug: augmented views per photo" + _D)
    tagger.add_argument(
        "--epochs",
        type=int,
        default=d["epochs"],
        help="default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items()),
    )
    tagger.add_argument("--max-images", type=int, default=d["max_images"], help="train on at most this many images")
    tagger.add_argument("--seed", type=SEED, default=d["seed"], help=_D.strip(" ()"))
    tagger.set_defaults(run=run_train_tagger)

    matcher = kinds.add_parser("matcher", parents=[common], help="image + tag set -> do they belong together")
    d = defaults(MatcherTrainConfig)
    matcher.add_argument("--data", required=True, help="tagged dataset FORMAT:PATH")
    matcher.add_argument("--out", required=True, type=Path)
    matcher.add_argument("--epochs", type=int, default=d["epochs"], help=_D.strip(" ()"))
    matcher.add_argument("--max-images", type=int, default=d["max_images"])
    matcher.add_argument("--seed", type=SEED, default=d["seed"], help=_D.strip(" ()"))
    matcher.set_defaults(run=run_train_matcher)

    _register_concepts(kinds, common)

    evaluate = commands.add_parser("eval", parents=[common], help="test metrics of a model on a dataset")
    evaluate.add_argument("--model", help="model directory or name (default: the shipped joint model)")
    evaluate.add_argument("--data", required=True, help="FORMAT:PATH")
    evaluate.add_argument("--split", default=None, help="test, dev, ... (joint default: test; tagger: whole dataset)")
    evaluate.add_argument(
        "--template", default="a photo of a {}", help="classes:DIR: the text-search query template" + _D
    )
    evaluate.set_defaults(run=run_eval)
