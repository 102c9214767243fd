"""Training set-up shared by the training, integrity and bad-input tests: a synthetic cache where
only binding separates a caption from its negative, a small TrainConfig over it, the run log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cache_tools.write.arrays import write_arrays
from tflocal.config import load_config
from tflocal.training.loop import TrainConfig

SMALL = ["model.width=32", "model.depth=2", "model.heads=4", "data.num_workers=0", "progress=false"]


def binding_cache(
    path: Path, n_images: int = 48, d_img: int = 24, d_txt: int = 16, seed: int = 0, **attrs
) -> Path:
    """Each image: two objects on a 2x2 grid (patch = color + shape vector), background elsewhere.
    Caption tokens [color_a, shape_a, and, color_b, shape_b]; its negative swaps the two colors.
    Globals are means (image: of patches; text: of tokens, the same vector for the positive and its
    negative), so nothing that sees only globals can separate a caption from its swap."""
    rng = np.random.default_rng(seed)
    col_i, shp_i = rng.normal(size=(4, d_img)), rng.normal(size=(4, d_img))
    col_t, shp_t, and_t = rng.normal(size=(4, d_txt)), rng.normal(size=(4, d_txt)), rng.normal(size=d_txt)
    bg = rng.normal(size=d_img)
    patches, texts, tokens, image_index, positive_index, text_global = [], [], [], [], [], []
    for i in range(n_images):
        ca, cb = rng.choice(4, 2, replace=False)
        sa, sb = rng.choice(4, 2, replace=False)
        where = rng.choice(4, 2, replace=False)
        p = np.tile(bg, (4, 1))
        p[where[0]], p[where[1]] = col_i[ca] + shp_i[sa], col_i[cb] + shp_i[sb]
        patches.append(p)
        for c1, c2 in [(ca, cb), (cb, ca)]:  # the positive, then its color swap
            tok = (
                np.stack([col_t[c1], shp_t[sa], and_t, col_t[c2], shp_t[sb]])
                .astype(np.float16)
                .astype(np.float32)
            )
            tokens.append(tok)
            texts.append(f"c{c1} s{sa} and c{c2} s{sb}")
            image_index.append(i)
        positive_index += [-1, len(texts) - 2]
        g = tokens[-2].mean(0)
        text_global += [g, g]
    patches = np.asarray(patches, np.float16).astype(np.float32)
    meta = {
        "encoder": "synthetic:binding",
        "grid": [2, 2],
        "context_length": 8,
        "space": "hidden",
        "global_space": "none",
    }
    return write_arrays(
        path, {**meta, **attrs}, image_ids=[f"i{i}" for i in range(n_images)], patches=patches,
        image_global=patches.mean(1), texts=texts, tokens=tokens, text_global=np.stack(text_global),
        image_index=image_index, positive_index=positive_index, op=["", "swap"] * n_images,
    )  # fmt: skip


def config(cache: Path, out: Path, *overrides: str, **fields) -> TrainConfig:
    return load_config(
        TrainConfig, None, [*SMALL, *overrides], cache=str(cache), out=str(out), device="cpu", **fields
    )


def read_log(out: Path, event: str) -> list[dict]:
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["event"] == event]
