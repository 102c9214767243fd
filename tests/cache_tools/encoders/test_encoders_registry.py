"""Registry names, open_clip specs, token helpers and the cache recipes' encoders (no model is built
here)."""

from __future__ import annotations

import pytest
import torch

from cache_tools.encoders import ENCODERS, load_encoder, split_name
from cache_tools.encoders.openclip import resolve_spec
from cache_tools.encoders.tokens import clean_piece, lengths_to_mask, split_real
from cache_tools.infra.precision import check_precision
from helpers import ROOT
from tflocal.errors import UserError


def test_split_name_and_unknown_prefix_lists_choices():
    assert split_name("openclip:ViT-B-32@openai") == ("openclip", "ViT-B-32@openai")
    assert split_name("hf:/a/b:c") == ("hf", "/a/b:c")
    with pytest.raises(UserError) as e:
        load_encoder("clip:ViT-B-32")
    assert all(p in str(e.value) for p in ENCODERS)
    with pytest.raises(UserError, match="names no model"):
        split_name("hf:")


def test_openclip_spec_quickgelu_from_tag():
    spec = resolve_spec("ViT-B-32@openai")
    assert (spec.model_name, spec.pretrained, spec.force_quick_gelu) == ("ViT-B-32", "openai", True)
    assert resolve_spec("ViT-B-32@laion2b_s34b_b79k").force_quick_gelu is False
    assert resolve_spec("ViT-B-32-quickgelu@openai").force_quick_gelu is False  # config has it already
    assert resolve_spec("hf-hub:org/repo").model_name == "hf-hub:org/repo"


def test_openclip_spec_local_forms(tmp_path):
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"")
    assert resolve_spec(f"ViT-B-32@{ckpt}").pretrained == str(ckpt)
    assert resolve_spec(str(tmp_path)).model_name == f"local-dir:{tmp_path}"


def test_openclip_spec_errors_name_the_choices():
    with pytest.raises(UserError) as e:
        resolve_spec("ViT-B-33@openai")
    assert "ViT-B-32" in str(e.value) and "list_models" in str(e.value)
    with pytest.raises(UserError, match="laion2b_s34b_b79k"):
        resolve_spec("ViT-B-32@nonsense")
    with pytest.raises(UserError, match="openai"):
        resolve_spec("ViT-B-32")


def test_towers_unknown_pair():
    with pytest.raises(UserError, match="effnet-lite0\\+minilm"):
        load_encoder("towers:resnet+bert")


def test_clean_piece():
    assert clean_piece("cat</w>") == "cat"
    assert clean_piece("▁cat") == "cat"
    assert clean_piece("Ġcat") == "cat"
    assert clean_piece("##at") == "##at"
    assert clean_piece("<|endoftext|>") == "<|endoftext|>"
    assert clean_piece("▁") == "▁"


def test_split_real_and_lengths_to_mask():
    states = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = lengths_to_mask(torch.tensor([2, 4]), 4)
    assert mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    out = split_real(states, mask)
    assert [t.shape for t in out] == [(2, 3), (4, 3)]
    assert torch.equal(out[0], states[0, :2]) and torch.equal(out[1], states[1])


def test_cache_recipes_have_the_cache_keys_and_valid_encoders():
    import yaml

    keys = {"encoder", "data", "out", "images", "batch_size", "crops", "precision", "device", "num_workers"}
    recipes = sorted((ROOT / "configs" / "cache").glob("*.yaml"))
    assert len(recipes) >= 4
    for path in recipes:
        cfg = yaml.safe_load(path.read_text())
        assert keys <= set(cfg) <= keys | {"options", "limit"}, path.name
        prefix, spec = split_name(cfg["encoder"])
        check_precision(cfg["precision"])
        if prefix == "openclip":
            resolve_spec(spec)  # known model and tag, no download
