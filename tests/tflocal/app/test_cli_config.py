"""Flags generated from the typed configs: precedence, nested flags, bad values, help text."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from tflocal.app.cli import main
from tflocal.app.flags import add_config_arguments, config_from_args, field_docs
from tflocal.config import load_config
from tflocal.errors import UserError


@dataclass
class Inner:
    lr: float = 0.1
    """Learning rate."""
    steps: int = 3


@dataclass
class Outer:
    out: str = "runs/x"
    """Output folder."""
    batch_size: int = 8
    """Pairs per step (100% of them)."""
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    items: list[int] = field(default_factory=lambda: [1])
    names: list[str] = field(default_factory=list, metadata={"commas": False})
    optim: Inner = field(default_factory=lambda: Inner(steps=5))
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("a", "b"):
            raise UserError(f"mode={self.mode!r} unknown; choices: a, b")


def parse(*argv: str, aliases=None) -> Outer:
    p = argparse.ArgumentParser()
    add_config_arguments(p, Outer, aliases)
    return config_from_args(Outer, p.parse_args(list(argv)))


def test_defaults_yaml_set_flags_in_that_order(tmp_path):
    assert parse() == Outer()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("batch_size: 16\nout: from_yaml\noptim: {lr: 0.5}\n")
    cfg = parse("--config", str(recipe))
    assert (cfg.batch_size, cfg.out, cfg.optim.lr) == (16, "from_yaml", 0.5)
    cfg = parse("--config", str(recipe), "--set", "batch_size=32", "--set", "optim.lr=0.25")
    assert (cfg.batch_size, cfg.out, cfg.optim.lr) == (32, "from_yaml", 0.25)
    cfg = parse("--config", str(recipe), "--set", "batch_size=32", "--batch-size", "64", "--optim.lr", "1")
    assert (cfg.batch_size, cfg.optim.lr) == (64, 1.0)


def test_nested_flags_keep_the_section_default():
    cfg = parse("--optim.lr", "0.01")
    assert cfg.optim == Inner(lr=0.01, steps=5)  # steps: Outer's default for the section, not Inner's
    assert parse("--set", "optim.steps=7").optim == Inner(lr=0.1, steps=7)


def test_spellings_bools_lists_and_aliases():
    assert parse("--batch_size", "4").batch_size == parse("--batch-size", "4").batch_size == 4
    assert parse("--flag").flag is True and parse("--flag", "false").flag is False
    assert parse("--items", "1,2", "--items", "3").items == [1, 2, 3]
    assert parse("--names", "a, b", "--names", "c").names == ["a, b", "c"]
    assert parse("-n", "x", aliases={"names": ("-n",)}).names == ["x"]
    assert parse("--quiet").progress is False


def test_bad_values_are_user_errors():
    with pytest.raises(UserError, match="batch_size"):
        parse("--batch-size", "many")
    with pytest.raises(UserError, match="mode"):
        parse("--mode", "c")
    with pytest.raises(UserError, match="unknown config key 'optim.lrr'"):
        parse("--set", "optim.lrr=1")
    with pytest.raises(UserError, match="not found"):
        parse("--config", "no/such.yaml")


def test_cli_bad_values_exit_2_with_one_line(capsys, tmp_path):
    assert main(["train", "--cache", "c.h5", "--epochs", "zero"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "epochs" in err
    assert main(["shapes", "--out", str(tmp_path), "--workers", "0"]) == 2
    assert main(["negatives", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert main(["search", "--cache", "c.h5"]) == 2


def test_help_comes_from_the_docstrings(capsys):
    assert field_docs(Outer)["batch_size"] == "Pairs per step (100% of them)."
    p = argparse.ArgumentParser()
    add_config_arguments(p, Outer)
    text = p.format_help()
    assert "Pairs per step (100% of them). (default: 8)" in " ".join(text.split())
    assert "{a,b}" in text and "--optim.lr" in text and "Learning rate." in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--model.readout" in shown and "Peak learning rate (AdamW)." in shown and "--out" in shown


def test_old_out_dir_key_is_still_read(tmp_path, capsys):
    from tflocal.training.config import TrainConfig

    recipe = tmp_path / "old.yaml"
    recipe.write_text("cache: c.h5\nout_dir: runs/old\n")
    cfg = load_config(TrainConfig, recipe)
    assert cfg.out == "runs/old" == cfg.out_dir
    assert "'out_dir' is now 'out'" in capsys.readouterr().err
    assert load_config(TrainConfig, recipe, ["out_dir=runs/new"]).out == "runs/new"
