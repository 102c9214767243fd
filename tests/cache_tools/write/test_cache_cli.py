"""`tflocal cache` end to end on tiny random-weight models loaded from a local path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cache_tools.store.reader import open_cache
from helpers import ROOT
from tflocal.app.cli import main

CAPTIONS = [
    ("a red cube left of a blue ball", "a blue cube left of a red ball"),
    ("two dogs on a green field", "two cats on a green field"),
    ("a man riding a brown horse", "a brown man riding a horse"),
    ("a small yellow star", "a small yellow star above a purple circle"),
]


@pytest.fixture()
def manifest(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    (tmp_path / "img").mkdir()
    for i, (cap, neg) in enumerate(CAPTIONS):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
        lines.append({"image": f"img/{i}.png", "captions": [cap], "negatives": [{"text": neg, "op": "swap"}]})
    lines.append({"image": "img/missing.png", "captions": ["nothing here"]})
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def _own_scores_openclip(name: str, images: list[Path], texts: list[str]) -> np.ndarray:
    """Cosine from the model's own encode_image / encode_text, loaded directly with open_clip."""
    import open_clip

    model_dir = Path(name.split(":", 1)[1])
    cfg = json.loads((model_dir / "open_clip_config.json").read_text())
    model = open_clip.CLIP(**cfg["model_cfg"])
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(model_dir / "open_clip_model.safetensors")))
    model.eval()
    pp = cfg["preprocess_cfg"]
    tf = open_clip.image_transform(
        pp["size"], is_train=False, mean=pp["mean"], std=pp["std"], interpolation=pp["interpolation"]
    )
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=cfg["model_cfg"]["text_cfg"]["context_length"])
    with torch.no_grad():
        im = model.encode_image(
            torch.stack([tf(Image.open(p).convert("RGB")) for p in images]), normalize=True
        )
        tx = model.encode_text(tok(texts), normalize=True)
    return (im @ tx.T).numpy()


def _own_scores_hf(name: str, images: list[Path], texts: list[str]) -> np.ndarray:
    from transformers import CLIPModel, CLIPProcessor

    d = name.split(":", 1)[1]
    model, proc = CLIPModel.from_pretrained(d).eval(), CLIPProcessor.from_pretrained(d)
    with torch.no_grad():
        px = proc(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")["pixel_values"]
        ids = proc(text=texts, return_tensors="pt", padding=True)
        im = model.get_image_features(pixel_values=px)
        tx = model.get_text_features(**ids)
        im = getattr(im, "pooler_output", im)
        tx = getattr(tx, "pooler_output", tx)
    im, tx = torch.nn.functional.normalize(im, dim=-1), torch.nn.functional.normalize(tx, dim=-1)
    return (im @ tx.T).numpy()


@pytest.mark.parametrize("model", ["tiny_openclip", "tiny_hf_clip"])
def test_cache_cosine_equals_model_own_score(model, manifest, tmp_path, request, capsys):
    name = request.getfixturevalue(model)
    out = tmp_path / "c.h5"
    rc = main(
        [
            "cache",
            "--encoder",
            name,
            "--data",
            f"jsonl:{manifest}",
            "--out",
            str(out),
            "--crops",
            "--batch-size",
            "3",
            "--quiet",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr()
    assert "4 images" in printed.out and "1 skipped" in printed.out and "missing.png" in printed.err
    c = open_cache(out)
    assert c.attrs["encoder"] == name and c.attrs["space"] == "joint" and c.has_crops
    assert c.crops_global([0]).shape == (1, 13, c.attrs["global_image_dim"])
    gi = c.image_global(np.arange(c.n_images))
    gt = c.text_global(np.arange(c.n_texts))
    cached = (gi / np.linalg.norm(gi, axis=1, keepdims=True)) @ (
        gt / np.linalg.norm(gt, axis=1, keepdims=True)
    ).T
    images = [manifest.parent / "img" / f"{i}.png" for i in range(4)]
    own = (_own_scores_openclip if model == "tiny_openclip" else _own_scores_hf)(
        name, images, list(c.strings)
    )
    np.testing.assert_allclose(cached, own, atol=1e-5)
    # joint space: the projected EOT/EOS token equals the global text embedding (up to fp16)
    last = np.stack([t[-1].astype(np.float32) for t in c.tokens(np.arange(c.n_texts))])
    np.testing.assert_allclose(last, gt, atol=2e-2, rtol=2e-2)
    assert c.skipped and "missing" in c.skipped[0][0]


def test_unknown_names_stop_before_any_work(manifest, tmp_path, capsys):
    out = tmp_path / "c.h5"
    assert (
        main(["cache", "--encoder", "clip:ViT-B-32", "--data", f"jsonl:{manifest}", "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert "unknown encoder" in err and "openclip:" in err and "towers:" in err
    assert (
        main(
            ["cache", "--encoder", "openclip:ViT-B-32@openai", "--data", f"csv:{manifest}", "--out", str(out)]
        )
        == 2
    )
    assert "unknown data format" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_two_processes_write_two_shards_that_open_as_one_cache(tiny_openclip, manifest, tmp_path):
    """Launched like `accelerate launch --multi_gpu` does it (torchrun env: RANK, WORLD_SIZE...);
    on CPU accelerate's own launcher needs MPI, so the test uses torchrun directly."""
    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun not installed")
    ref = tmp_path / "ref.h5"
    assert (
        main(
            [
                "cache",
                "--encoder",
                tiny_openclip,
                "--data",
                f"jsonl:{manifest}",
                "--out",
                str(ref),
                "--quiet",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    out = tmp_path / "multi" / "c.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        str(Path(sys.executable).parent / "torchrun"),
        "--nproc_per_node",
        "2",
        "-m",
        "tflocal.app.cli",
        "cache",
        "--encoder",
        tiny_openclip,
        "--data",
        f"jsonl:{manifest}",
        "--out",
        str(out),
        "--quiet",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = sorted(out.parent.glob("c.shard*.h5"))
    assert len(shards) == 2
    a, b = open_cache(ref), open_cache(out)
    assert list(a.image_ids) == list(b.image_ids) and list(a.strings) == list(b.strings)
    np.testing.assert_array_equal(a.positive_index, b.positive_index)
    np.testing.assert_allclose(a.patches(np.arange(a.n_images)), b.patches(np.arange(b.n_images)), atol=1e-3)
    assert len(b.skipped) == 1
