"""Every YAML recipe under configs/ loads into its typed config and validates."""

from __future__ import annotations

import importlib

import pytest

from helpers import ROOT
from tflocal.config import load_config
from tflocal.errors import UserError

CONFIGS = ROOT / "configs"
KINDS = {
    "cache": "cache_tools.config:CacheConfig",
    "train": "tflocal.training.config:TrainConfig",
    "eval": "tflocal.evaluate.config:EvalConfig",
}


def _cls(kind: str):
    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


ALL = sorted(CONFIGS.glob("*/*.yaml"))


def test_every_config_folder_is_known():
    assert {p.parent.name for p in ALL} <= set(KINDS)
    assert len([p for p in ALL if p.parent.name == "cache"]) >= 4


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads_and_validates(path):
    cfg = load_config(_cls(path.parent.name), path)  # checks run in __post_init__
    assert isinstance(cfg, _cls(path.parent.name))


def test_unknown_key_names_the_key_and_the_choices(tmp_path):
    from cache_tools.config import CacheConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: openclip:ViT-B-32@openai\nbatchsize: 3\n")
    with pytest.raises(UserError, match=r"unknown config key 'batchsize'.*batch_size"):
        load_config(CacheConfig, bad)


def test_overrides_and_type_checks():
    from cache_tools.config import CacheConfig

    cfg = load_config(
        CacheConfig,
        None,
        ["batch_size=8", "options.split=test", "crops=true"],
        encoder="openclip:ViT-B-32@openai",
        data="jsonl:x.jsonl",
        out="o.h5",
    )
    assert cfg.batch_size == 8 and cfg.options == {"split": "test"} and cfg.crops is True
    with pytest.raises(UserError, match="batch_size"):
        load_config(CacheConfig, None, ["batch_size=many"])
    with pytest.raises(UserError, match="precision"):
        load_config(CacheConfig, None, ["precision=fp8"])


def test_unknown_encoder_and_format_stop_before_work():
    from cache_tools.config import CacheConfig

    with pytest.raises(UserError, match=r"unknown encoder.*openclip:"):
        CacheConfig(encoder="clip:ViT-B-32", data="jsonl:x.jsonl", out="o.h5")
    with pytest.raises(UserError, match=r"unknown data format.*jsonl:PATH"):
        CacheConfig(encoder="openclip:ViT-B-32@openai", data="parquet:x", out="o.h5")


def test_yaml_bare_no_stays_a_string_for_string_fields():
    from tflocal.training.loop import TrainConfig

    cfg = load_config(TrainConfig, None, ["mixed_precision=no"], cache="c.h5")
    assert cfg.mixed_precision == "no"
