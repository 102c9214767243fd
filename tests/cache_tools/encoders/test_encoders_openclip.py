"""open_clip adapter on a tiny random-weight ViT CLIP: globals are the model's own, tokens are
in the joint space, real tokens only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cache_tools.encoders import load_encoder
from tflocal.errors import UserError

TEXTS = [
    "a red cube left of a blue ball!",
    "hello",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen",
]


@pytest.fixture(scope="module")
def enc(tiny_openclip):
    return load_encoder(tiny_openclip)


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 3 * i, 50, 3), dtype=np.uint8)) for i in range(n)]


def _reference_vit_tokens(visual, x: torch.Tensor) -> torch.Tensor:
    """The ViT forward written out: conv patches, CLS + positions, ln_pre, blocks, ln_post ->
    [B, 1 + P, width]."""
    p = visual.conv1(x).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(p.shape[0], 1, -1)
    h = torch.cat([cls, p], dim=1) + visual.positional_embedding
    return visual.ln_post(visual.transformer(visual.ln_pre(h)))


def test_metadata(enc, tiny_openclip):
    meta = enc.metadata()
    assert meta["encoder"] == tiny_openclip
    assert (meta["space"], meta["global_space"]) == ("joint", "joint")
    assert meta["grid"] == [4, 4] and meta["image_size"] == [32, 32] and meta["context_length"] == 16
    assert meta["image_dim"] == meta["text_dim"] == meta["global_image_dim"] == meta["global_text_dim"] == 16
    assert "Normalize" in meta["preprocess"]


def test_images_global_is_encode_image_and_patches_are_projected_tokens(enc):
    x = torch.stack([enc.preprocess(im) for im in _images()])
    assert x.shape == (3, 3, 32, 32)
    out = enc.encode_images(x)
    assert out.patches.shape == (3, 16, 16) and out.global_.shape == (3, 16)
    with torch.no_grad():
        assert torch.allclose(out.global_, enc.model.encode_image(x), atol=1e-6)
        ref = _reference_vit_tokens(enc.model.visual, x)
        # the global vector is the projected CLS; patches are the other tokens, projected
        assert torch.allclose(ref[:, 0] @ enc.model.visual.proj, out.global_, atol=1e-5)
        assert torch.allclose(ref[:, 1:] @ enc.model.visual.proj, out.patches, atol=1e-5)
    assert enc.model.visual.output_tokens is False  # the adapter restores the flag


def test_texts_global_is_encode_text_and_eot_token_equals_it(enc):
    out = enc.encode_texts(TEXTS)
    ids = enc.tokenizer(TEXTS)
    with torch.no_grad():
        ref = enc.model.encode_text(ids)
    assert torch.allclose(out.global_, ref, atol=1e-6)
    for i, toks in enumerate(out.tokens):
        assert toks.shape[1] == 16
        assert torch.allclose(toks[-1], out.global_[i], atol=1e-5)  # EOT token, projected
    assert [len(t) for t in out.tokens] == [len(s) for s in out.token_strings]
    assert out.token_strings[0] == [
        "<start_of_text>",
        "a",
        "red",
        "cube",
        "left",
        "of",
        "a",
        "blue",
        "ball",
        "!",
        "<end_of_text>",
    ]
    assert out.token_strings[1] == ["<start_of_text>", "hello", "<end_of_text>"]
    assert out.truncated == [False, False, True]
    assert len(out.tokens[2]) == 16 and out.token_strings[2][-1] == "<end_of_text>"


def test_text_tokens_are_causal_and_batch_independent(enc):
    full = enc.encode_texts(["a red cube left of a blue ball"]).tokens[0]
    prefix = enc.encode_texts(["a red cube"]).tokens[0]
    # causal text tower: SOT a red cube are the same in both captions
    assert torch.allclose(full[:4], prefix[:4], atol=1e-5)
    assert not torch.allclose(full[4], prefix[4], atol=1e-3)
    batch = enc.encode_texts(TEXTS)
    for i, text in enumerate(TEXTS):
        single = enc.encode_texts([text])
        assert torch.allclose(single.tokens[0], batch.tokens[i], atol=1e-5)


def test_model_at_checkpoint_form_matches_directory_form(enc, tiny_openclip, tmp_path):
    import json

    import open_clip

    model_dir = tiny_openclip.split(":", 1)[1]
    cfg = json.loads(open(f"{model_dir}/open_clip_config.json").read())["model_cfg"]
    (tmp_path / "tflocal-tiny-vit.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "tflocal-tiny-vit.json")
    other = load_encoder(f"openclip:tflocal-tiny-vit@{model_dir}/open_clip_model.safetensors")
    assert other.metadata()["grid"] == [4, 4]
    assert torch.allclose(
        other.encode_texts(TEXTS[:1]).global_, enc.encode_texts(TEXTS[:1]).global_, atol=1e-6
    )


def test_bf16_outputs_are_float32_and_close(tiny_openclip, enc):
    low = load_encoder(tiny_openclip, precision="bf16")
    x = torch.stack([enc.preprocess(im) for im in _images(2)])
    a, b = enc.encode_images(x), low.encode_images(x)
    assert b.patches.dtype == torch.float32 and b.global_.dtype == torch.float32
    assert torch.allclose(a.global_, b.global_, atol=0.1, rtol=0.05)


def test_non_vit_tower_rejected():
    import open_clip

    from cache_tools.encoders.openclip import OpenClipEncoder

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    }
    model = open_clip.CLIP(**cfg)  # ModifiedResNet tower
    with pytest.raises(UserError, match="ViT"):
        OpenClipEncoder(model, None, open_clip.get_tokenizer("ViT-B-32"), name="openclip:rn")
