"""transformers adapters on tiny random-weight CLIP and SigLIP models: globals are
get_image_features / get_text_features, CLIP tokens are projected and post-layernormed,
SigLIP tokens are the towers' layernormed hidden states, real tokens only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cache_tools.encoders import load_encoder
from tflocal.errors import UserError

TEXTS = [
    "a red cube left of a blue ball",
    "two cats",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen",
]


def _pooled(out) -> torch.Tensor:
    """get_*_features returns a tensor (transformers 4.x) or an output with pooler_output (5.x)."""
    return out if torch.is_tensor(out) else out.pooler_output


def _pixels(enc, n: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40 + 5 * i, 36, 3), dtype=np.uint8)) for i in range(n)]
    return torch.stack([enc.preprocess(im) for im in images])


def _layernormed(x: torch.Tensor) -> bool:
    """Random-init LayerNorms have weight 1, bias 0: their outputs have mean 0, variance 1."""
    return bool(
        torch.allclose(x.mean(-1), torch.zeros(()), atol=1e-4)
        and torch.allclose(x.var(-1, unbiased=False), torch.ones(()), atol=1e-2)
    )


@pytest.fixture(scope="module")
def clip(tiny_hf_clip):
    return load_encoder(tiny_hf_clip)


@pytest.fixture(scope="module")
def siglip(tiny_hf_siglip):
    return load_encoder(tiny_hf_siglip)


def test_clip_metadata(clip):
    meta = clip.metadata()
    assert (meta["space"], meta["global_space"]) == ("joint", "joint")
    assert meta["grid"] == [4, 4] and meta["image_size"] == [32, 32] and meta["context_length"] == 16
    assert meta["image_dim"] == meta["text_dim"] == meta["global_image_dim"] == meta["global_text_dim"] == 16
    assert meta["preprocess"].startswith("CLIPImageProcessor")
    # shorter side resized, then the central square: where heatmaps are drawn (cache_tools.encoders.geometry)
    assert meta["patch_geometry"]["mode"] == "center_crop" and meta["patch_geometry"]["crop"] == 32


def test_clip_images(clip):
    x = _pixels(clip)
    assert x.shape == (3, 3, 32, 32)
    out = clip.encode_images(x)
    assert out.patches.shape == (3, 16, 16) and out.global_.shape == (3, 16)
    m = clip.model
    with torch.no_grad():
        assert torch.allclose(out.global_, _pooled(m.get_image_features(pixel_values=x)), atol=1e-6)
        hidden = m.vision_model(pixel_values=x, output_hidden_states=True).hidden_states[-1]  # no post-LN
        ref = m.visual_projection(m.vision_model.post_layernorm(hidden[:, 1:]))
        unnormed = m.visual_projection(hidden[:, 1:])
    assert torch.allclose(out.patches, ref, atol=1e-5)
    assert not torch.allclose(out.patches, unnormed, atol=1e-2)  # post_layernorm is applied


def test_clip_texts(clip):
    out = clip.encode_texts(TEXTS)
    inputs = clip.tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        ref = _pooled(clip.model.get_text_features(**inputs))
    assert torch.allclose(out.global_, ref, atol=1e-6)
    for i, toks in enumerate(out.tokens):
        assert torch.allclose(toks[-1], out.global_[i], atol=1e-5)  # projected EOS token
    assert out.token_strings[1] == ["<|startoftext|>", "two", "cats", "<|endoftext|>"]
    assert [len(t) for t in out.tokens] == [10, 4, 16]
    assert out.truncated == [False, False, True]
    # padding does not leak: alone or in a batch, same tokens
    single = clip.encode_texts([TEXTS[1]])
    assert torch.allclose(single.tokens[0], out.tokens[1], atol=1e-5)


def test_siglip_metadata(siglip):
    meta = siglip.metadata()
    assert (meta["space"], meta["global_space"]) == ("hidden", "joint")
    assert meta["grid"] == [4, 4] and meta["context_length"] == 16
    assert meta["image_dim"] == meta["text_dim"] == meta["global_image_dim"] == meta["global_text_dim"] == 24
    assert meta["patch_geometry"] == {"mode": "stretch", "crop": 32}  # SigLIP: resized to a square


def test_siglip_images(siglip):
    x = _pixels(siglip)
    out = siglip.encode_images(x)
    assert out.patches.shape == (3, 16, 24) and out.global_.shape == (3, 24)  # no CLS: 16 patches
    with torch.no_grad():
        assert torch.allclose(
            out.global_, _pooled(siglip.model.get_image_features(pixel_values=x)), atol=1e-6
        )
    assert _layernormed(out.patches)


def test_siglip_texts(siglip):
    out = siglip.encode_texts(TEXTS)
    ids = siglip.tokenizer(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    with torch.no_grad():
        ref = _pooled(siglip.model.get_text_features(input_ids=ids["input_ids"]))
    assert torch.allclose(out.global_, ref, atol=1e-6)
    # real tokens: the words and the closing </s>, none of the </s> padding (pad id == eos id)
    assert out.token_strings[0] == ["a", "red", "cube", "left", "of", "a", "blue", "ball", "</s>"]
    assert out.token_strings[1] == ["two", "<unk>", "</s>"]
    assert [len(t) for t in out.tokens] == [9, 3, 16] and out.tokens[0].shape[1] == 24
    assert out.truncated == [False, False, True]
    assert all(_layernormed(t) for t in out.tokens)
    # bidirectional tower: the padding is part of the input (max_length), the result does not
    # depend on the rest of the batch
    single = siglip.encode_texts([TEXTS[1]])
    assert torch.allclose(single.global_[0], out.global_[1], atol=1e-5)


def test_unsupported_model_type_and_missing_dir(tmp_path):
    from transformers import BertConfig

    BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    ).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="'bert'.*clip, siglip"):
        load_encoder(f"hf:{tmp_path}")
    with pytest.raises(UserError, match="could not read"):
        load_encoder(f"hf:{tmp_path}/missing")
