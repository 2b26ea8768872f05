"""One default per setting: the config dataclasses hold the shipped recipes, and ``vistext train`` builds
exactly the config the Python API builds from the same data (the CLI's option defaults come from the fields)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from importlib.resources import files

import pytest

from vistext.cli.main import build_parser
from vistext.cli.training import joint_config, matcher_config, tagger_config
from vistext.training.config import JointTrainConfig, MatcherTrainConfig, TaggerTrainConfig, defaults


@pytest.mark.parametrize(
    ("kind", "build", "config_class"),
    [("joint", joint_config, JointTrainConfig), ("tagger", tagger_config, TaggerTrainConfig),
     ("matcher", matcher_config, MatcherTrainConfig)],
)  # fmt: skip
def test_the_cli_and_the_python_api_train_the_same_recipe(kind: str, build, config_class: type) -> None:
    args = build_parser().parse_args(["train", kind, "--data", "csv:tags.csv", "--out", "models/m"])
    assert build(args) == config_class(data="csv:tags.csv", out="models/m")


def test_cli_options_override_the_recipe() -> None:
    args = build_parser().parse_args(
        ["train", "joint", "--data", "D", "--out", "O", "--text", "glove-gru", "--branches", "1", "--reduced-dim", "0"]
    )
    config = joint_config(args)
    assert (config.text, config.branches, config.reduced_dim) == ("glove-gru", 1, None)
    assert config.hidden == JointTrainConfig(data="D", out="O").hidden


def test_joint_defaults_are_the_shipped_models_recipe() -> None:
    card = json.loads(files("vistext").joinpath("models", "pretrained", "joint-default", "config.json").read_text())
    shipped = card["training"]["config"]
    ours = asdict(JointTrainConfig(data=shipped["data"], out=shipped["out"]))
    assert ours == {k: shipped[k] for k in ours}
    assert set(shipped) == {f.name for f in fields(JointTrainConfig)}


def test_defaults_lists_every_field_with_a_default() -> None:
    joint = defaults(JointTrainConfig)
    assert "data" not in joint and "out" not in joint and joint["branches"] == 5 and joint["text"] == "minilm-gpo"
    assert defaults(TaggerTrainConfig)["epochs"] is None  # per method: DEFAULT_EPOCHS


def test_matcher_defaults_are_the_shipped_matchers_recipe() -> None:
    card = json.loads(files("vistext").joinpath("models", "pretrained", "matcher-default", "config.json").read_text())
    shipped = card["training"]
    ours = asdict(MatcherTrainConfig(data="D"))
    same = {k for k in ours if k in shipped and k not in ("data", "max_images", "threads")}  # threads: how, not what
    assert {k: ours[k] for k in same} == {k: shipped[k] for k in same}
    assert {"epochs", "lr", "hidden", "pretrain_epochs", "seed"} <= same
