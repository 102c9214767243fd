"""End to end against a reference: benchmark files on disk -> source -> cache (tiny random
open_clip) -> cosine scorer -> metric, compared with the same metric computed directly from
the model's own ``encode_image`` / ``encode_text`` on the same images and captions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cache_tools.encoders import load_encoder
from cache_tools.sources import open_source
from cache_tools.store.reader import open_cache
from cache_tools.write.writer import write_cache
from helpers.tiny_models import make_tiny_openclip
from tflocal.app.cli import main
from tflocal.evaluate import evaluate
from tflocal.evaluate.report import read_json
from tflocal.scoring.load import load_scorer

WORDS = "red blue green cube ball cone left right of above below a the small big".split()


def caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 8))))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import open_clip

    d = tmp_path_factory.mktemp("tiny")
    name = make_tiny_openclip(d)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{d / 'tiny_openclip'}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{d / 'tiny_openclip'}")

    @torch.no_grad()
    def cos(images: list[Image.Image], texts: list[str]) -> np.ndarray:
        """[I, T] cosine from the model's own encode_image / encode_text."""
        a = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        b = model.encode_text(tokenizer(texts), normalize=True)
        return (a @ b.T).numpy()

    return name, load_encoder(name), cos


def save_image(path: Path, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.fromarray((rng.random((40 + seed % 7, 44, 3)) * 255).astype("uint8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return Image.open(path).convert("RGB")


def sugarcrepe_data(root: Path, cos) -> dict[str, list[bool]]:
    """Write 3 SugarCrepe subset files (6 items each) over 5 images; return the model's own verdicts."""
    rng = np.random.default_rng(0)
    images = {f"{k:012d}.jpg": save_image(root / "val2017" / f"{k:012d}.jpg", k) for k in range(5)}
    files = list(images)
    expected: dict[str, list[bool]] = {}
    for subset in ("add_att", "replace_obj", "swap_att"):
        items = {}
        for j in range(6):
            fn = files[int(rng.integers(len(files)))]
            items[str(j)] = {"filename": fn, "caption": caption(rng), "negative_caption": caption(rng)}
            s = cos([images[fn]], [items[str(j)]["caption"], items[str(j)]["negative_caption"]])[0]
            expected.setdefault(subset, []).append(bool(s[0] > s[1]))
        (root / f"{subset}.json").write_text(json.dumps(items))
    return expected


def check_sugarcrepe(got: dict[str, tuple[float, int]], expected: dict[str, list[bool]]) -> None:
    for subset, c in expected.items():
        assert got[subset] == (pytest.approx(np.mean(c), abs=1e-9), 6)
    everything = [x for c in expected.values() for x in c]
    assert got["all"] == (pytest.approx(np.mean(everything)), 18)
    assert 0 < np.mean(everything) < 1  # a random model gets some right and some wrong


def test_sugarcrepe_cosine_equals_model(tmp_path, tiny):
    _, encoder, cos = tiny
    root = tmp_path / "sugarcrepe"
    expected = sugarcrepe_data(root, cos)
    write_cache(open_source(f"sugarcrepe:{root}"), encoder, tmp_path / "sc.h5", batch_size=4, progress=False)
    with open_cache(tmp_path / "sc.h5") as cache:
        rows = evaluate("sugarcrepe", cache, load_scorer("cosine", cache))
    check_sugarcrepe({r.subset: (r.value, r.n) for r in rows}, expected)


def test_eval_command_builds_the_missing_cache(tmp_path, tiny):
    name, _, cos = tiny
    root = tmp_path / "sugarcrepe"
    expected = sugarcrepe_data(root, cos)
    out = tmp_path / "results"
    argv = [
        "eval",
        "--bench",
        "sugarcrepe",
        "--data",
        str(root),
        "--encoder",
        name,
        "--scorer",
        "cosine",
        "--out",
        str(out),
        "--heatmaps",
        "1",
        "--quiet",
    ]
    assert main(argv) == 0
    assert (out / "cache.h5").is_file() and (out / "bars_sugarcrepe.png").is_file()
    rows = read_json(out / "results.json")
    check_sugarcrepe({r.subset: (r.value, r.n) for r in rows}, expected)
    assert {r.encoder for r in rows} == {name}
    assert (
        len(list((out / "heatmaps").glob("token_patch_cosine_*.png"))) == 1
    )  # the image drawn from the source


def test_winoground_cosine_equals_model(tmp_path, tiny):
    _, encoder, cos = tiny
    rng = np.random.default_rng(1)
    root = tmp_path / "winoground"
    lines, ref = [], []
    for item in range(8):
        ims = [save_image(root / "images" / f"ex_{item}_img_{x}.png", 10 * item + x) for x in (0, 1)]
        caps = [caption(rng), caption(rng)]
        lines.append(
            json.dumps(
                {
                    "id": item,
                    "image_0": f"ex_{item}_img_0",
                    "image_1": f"ex_{item}_img_1",
                    "caption_0": caps[0],
                    "caption_1": caps[1],
                    "tag": "Object",
                }
            )
        )
        s = cos(ims, caps).T  # s[c, i]
        text = s[0, 0] > s[1, 0] and s[1, 1] > s[0, 1]
        image = s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0]
        ref.append((text, image, text and image))
    (root / "examples.jsonl").write_text("\n".join(lines) + "\n")
    write_cache(open_source(f"winoground:{root}"), encoder, tmp_path / "w.h5", batch_size=4, progress=False)
    with open_cache(tmp_path / "w.h5") as cache:
        rows = evaluate("winoground", cache, load_scorer("cosine", cache))
    got = {r.metric: (r.value, r.n) for r in rows}
    ref_a = np.array(ref, dtype=float)
    assert got == {
        "text": (pytest.approx(ref_a[:, 0].mean()), 8),
        "image": (pytest.approx(ref_a[:, 1].mean()), 8),
        "group": (pytest.approx(ref_a[:, 2].mean()), 8),
    }
