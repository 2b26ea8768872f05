"""Commands that prepare data, train and evaluate models: tags-from-captions, train, eval."""

from __future__ import annotations

import argparse
from pathlib import Path

from vistext.cli.output import emit_json, say


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


def run_train_joint(args: argparse.Namespace) -> int:
    from vistext.training.joint import JointTrainConfig, train_joint

    config = JointTrainConfig(
        data=args.data,
        out=str(args.out),
        text=args.text,
        loss=args.loss,
        image_head=args.image_head,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        views=args.views,
        hard_after=args.hard_after,
        branches=args.branches,
        reduced_dim=args.reduced_dim or None,
        text_layers=args.text_layers,
        vectors=args.vectors,
        freeze_embeddings=args.freeze_embeddings,
        hidden=args.hidden,
        rnn_hidden=args.rnn_hidden,
        name=args.name,
    )
    result = train_joint(config, progress=not args.quiet)
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
    from vistext.training.tagger import TaggerTrainConfig, train_tagger

    config = TaggerTrainConfig(
        data=args.data,
        out=args.out,
        method=args.method,
        backbone=args.backbone,
        feature=args.feature,
        loss=args.loss,
        epochs=args.epochs,
        seed=args.seed,
        max_images=args.max_images,
        hidden=args.hidden,
        top_stages=args.top_stages,
        views=args.views,
    )
    result = train_tagger(config, progress=not args.quiet)
    summary = {
        "out": str(result.out),
        "train_seconds": round(result.train_seconds, 1),
        "feature_seconds": round(result.feature_seconds, 1),
        "validation": result.metrics,
    }
    _print_metrics(summary, args.json)
    return 0


def run_train_matcher(args: argparse.Namespace) -> int:
    from vistext.training.matcher import MatcherTrainConfig, train_matcher

    config = MatcherTrainConfig(
        data=args.data, out=args.out, epochs=args.epochs or 12, seed=args.seed, max_images=args.max_images
    )
    result = train_matcher(config, progress=not args.quiet)
    summary = {"out": str(result.out), "train_seconds": round(result.train_seconds, 1), "validation": result.metrics}
    _print_metrics(summary, args.json)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from vistext.models.card import load_model, model_kind, resolve_model_dir

    directory = resolve_model_dir(args.model, "joint" if args.model is None else None)
    kind, model = model_kind(directory), load_model(directory)
    progress = not args.quiet
    if kind == "joint":
        from vistext.datasets import open_caption_dataset
        from vistext.evaluation.retrieval import evaluate_joint

        metrics = evaluate_joint(model, open_caption_dataset(args.data), split=args.split or "test", progress=progress)
    elif kind == "tagger":
        from vistext.training.tagger import evaluate_tagger

        metrics = evaluate_tagger(model, args.data, split=args.split, progress=progress)
    else:
        from vistext.training.matcher import evaluate_matcher

        metrics = evaluate_matcher(model, args.data, split=args.split, progress=progress)
    _print_metrics(metrics, args.json)
    return 0


def register_training(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    train = commands.add_parser("train", help="train a joint image-text model, a tagger or a match classifier")
    kinds = train.add_subparsers(dest="kind", metavar="KIND", required=True)

    joint = kinds.add_parser("joint", parents=[common], help="image-text embeddings from a caption dataset")
    joint.add_argument("--data", required=True, help="caption dataset FORMAT:PATH, e.g. flickr8k:DIR")
    joint.add_argument("--out", required=True, type=Path, help="model directory (resumes if a checkpoint is there)")
    joint.add_argument("--text", default="minilm-gpo", help="text encoder: minilm-gpo, minilm, glove-gru, glove-lstm")
    joint.add_argument("--loss", default="infonce", help="infonce, vse-hardest, hinge-sum, triplet-semihard")
    joint.add_argument("--image-head", default="pooled-mlp", help="pooled-mlp, grid-gpo, grid-attn")
    joint.add_argument("--epochs", type=int, default=5)
    joint.add_argument("--hidden", type=int, default=256, help="width of the projection MLPs")
    joint.add_argument("--rnn-hidden", type=int, default=1024, help="GloVe encoders: GRU/LSTM state size")
    joint.add_argument("--name", default=None, help="the model's name (default: the --out folder's name)")
    joint.add_argument("--batch-size", type=int, default=128)
    joint.add_argument("--lr", type=float, default=1e-3)
    joint.add_argument("--views", default="orig,flip,crop-tl,crop-br,crop-c", help="training views per image")
    joint.add_argument(
        "--hard-after", type=int, default=2, help="switch to hardest negatives from this epoch (-1: never)"
    )
    joint.add_argument("--branches", type=int, default=5, help="ensemble members trained together")
    joint.add_argument(
        "--reduced-dim", type=int, default=512, help="several branches: reduce the joined embedding to this many dims"
    )
    joint.add_argument("--text-layers", type=int, default=0, help="MiniLM: fine-tune this many top layers")
    joint.add_argument("--vectors", default="glove-6b-50d", help="GloVe encoders: bundled vectors or a text file")
    joint.add_argument("--freeze-embeddings", action="store_true", help="GloVe encoders: keep word vectors fixed")
    joint.add_argument("--seed", type=int, default=0)
    joint.set_defaults(run=run_train_joint)

    tagger = kinds.add_parser("tagger", parents=[common], help="a multi-label tagger for your own tags")
    tagger.add_argument("--data", required=True, help="tagged dataset FORMAT:PATH (csv:, jsonl:, folder:, ...)")
    tagger.add_argument("--out", required=True, type=Path)
    tagger.add_argument("--method", default="cached", choices=["cached", "frozen-aug", "finetune"])
    tagger.add_argument("--backbone", default="efficientnet-lite0")
    tagger.add_argument("--feature", default="pooled", choices=["pooled", "grid"])
    tagger.add_argument("--loss", default="bce", choices=["bce", "cb-bce", "asl"])
    tagger.add_argument("--hidden", type=int, default=0, help="a hidden layer of this size in the head")
    tagger.add_argument("--top-stages", type=int, default=2, help="finetune: how many top backbone stages train")
    tagger.add_argument("--views", type=int, default=4, help="frozen-aug: augmented views per photo")
    tagger.add_argument("--epochs", type=int, default=None)
    tagger.add_argument("--max-images", type=int, default=None, help="train on at most this many images")
    tagger.add_argument("--seed", type=int, default=0)
    tagger.set_defaults(run=run_train_tagger)

    matcher = kinds.add_parser("matcher", parents=[common], help="image + tag set -> do they belong together")
    matcher.add_argument("--data", required=True, help="tagged dataset FORMAT:PATH")
    matcher.add_argument("--out", required=True, type=Path)
    matcher.add_argument("--epochs", type=int, default=None)
    matcher.add_argument("--max-images", type=int, default=None)
    matcher.add_argument("--seed", type=int, default=0)
    matcher.set_defaults(run=run_train_matcher)

    evaluate = commands.add_parser("eval", parents=[common], help="test metrics of a model on a dataset")
    evaluate.add_argument("--model", help="model directory or name (default: the shipped joint model)")
    evaluate.add_argument("--data", required=True, help="FORMAT:PATH")
    evaluate.add_argument("--split", default=None, help="test, dev, ... (joint default: test; tagger: whole dataset)")
    evaluate.set_defaults(run=run_eval)
