"""Generate the ShapesWorld dataset: PNGs, one JSONL manifest per split, ``meta.json``.

Every image is made from its own random stream seeded by ``(seed, split, index)``, so the
output is identical for a seed whatever the number of worker processes.

Per image: 2 captions (a relation caption whenever the scene has 2+ objects, and a second of
another form) and hard negatives made by the SWAP / REPLACE / ADD operators of
:mod:`tflocal.concepts` at depths 1-3; SWAP-attribute (same words, different binding) is
planned at every depth. Each negative is parsed back to a structured caption and kept only
if :func:`~tflocal.shapesworld.truth.caption_true_for_scene` says it is false for the scene
(and, in ``train``, if it names no held-out combination).

With ``counterfactual=True`` each ``train`` image also gets, where one exists, a *counterfactual
twin*: the same scene with one attribute (colour, size, texture or shape) swapped between two
objects so that one of the image's SWAP negatives becomes true and its caption false. The twin is
written as its own manifest line (id ``<id>cf``, caption = that negative, negative = the original
caption) in the same ``group`` as the original, so training sees a minimal pair in both
directions: caption -> {its image, the twin} and image -> {its caption, the swap}.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tflocal.shapesworld.config import ShapesConfig

SPLITS = ("train", "test_id", "test_ood", "test_novel")
"""``test_novel``: scenes like ``test_ood``'s, every object and attribute named with a word the
shipped vocabulary does not hold (:mod:`tflocal.shapesworld.novel`); written only when asked for."""

PLAN_RELATION: list[list[tuple[str, str | None]]] = [
    [("swap", "attribute")],
    [("swap", "attribute")] * 2,
    [("swap", "attribute")] * 3,
    [("swap", "relation")],
    [("swap", "object")],
    [("replace", None)],
    [("add", None)],
    [("replace", None), ("swap", "attribute")],
    [("swap", None), ("replace", None), ("add", None)],
]
"""Negatives planned for a caption with a relation (steps per negative)."""

PLAN_OTHER: list[list[tuple[str, str | None]]] = [
    [("replace", None)],
    [("add", None)],
    [("swap", None)],
    [("replace", None), ("add", None)],
]


def _captions(scene: dict, rng: random.Random, force: dict | None) -> list[dict]:
    """Structured captions for a scene (mention indices refer to ``objs`` order chosen here)."""
    from tflocal.shapesworld.captions import describe

    objs = scene["objects"]
    n = len(objs)
    structs = []
    order = list(range(n))
    rng.shuffle(order)
    if force:
        order.remove(0)
        order.insert(0, 0)
        if "fact" in force:
            order.remove(1)
            order.insert(1, 1)
    if n >= 2:
        a, b = order[0], order[1]
        if force and "fact" in force:
            rel = force["fact"][1]
        else:
            rel = rng.choice([r for i, r, j in scene["relations"] if i == a and j == b])
        mentions = [
            describe(objs[a], rng, must_color=bool(force and "pair" in force)),
            describe(objs[b], rng),
        ]
        rels = [[0, rel, 1]]
        if n >= 3 and rng.random() < 0.5:
            mentions.append(describe(objs[order[2]], rng))
            if n == 4 and rng.random() < 0.5:
                c, d = order[2], order[3]
                mentions.append(describe(objs[d], rng))
                rels.append([2, rng.choice([r for i, r, j in scene["relations"] if i == c and j == d]), 3])
        structs.append({"objects": mentions, "relations": rels})
        rest = order[:]
        rng.shuffle(rest)
        if force:
            rest = [0] + [k for k in rest if k != 0]
        k = rng.randint(1, n)
        structs.append(
            {
                "objects": [
                    describe(objs[i], rng, must_color=bool(force and "pair" in force) and i == 0)
                    for i in rest[:k]
                ],
                "relations": [],
            }
        )
    else:
        structs.append({"objects": [describe(objs[0], rng, must_color=bool(force))], "relations": []})
    return structs


CF_KEYS = ("color", "size", "texture", "shape")


def counterfactual_scene(
    scene: dict,
    true_structs: list[dict],
    false_struct: dict,
    rng: random.Random,
    banned_pairs: list,
    banned_facts: list,
) -> dict | None:
    """The scene with one attribute swapped between two of its objects such that ``false_struct``
    becomes true and every one of ``true_structs`` (the image's captions) false — so the twin is
    a valid negative image for all of them — avoiding held-out combinations; None when no single
    swap does it. Positions are kept (a size swap rescales the radius)."""
    from tflocal.shapesworld.scene import RADIUS, has_color_shape, has_relation_fact, scene_relations
    from tflocal.shapesworld.truth import caption_true_for_scene

    objs = scene["objects"]
    cell = scene["image_size"] / scene["grid"]
    options = [
        (i, j, k)
        for i in range(len(objs))
        for j in range(i + 1, len(objs))
        for k in CF_KEYS
        if objs[i][k] != objs[j][k]
    ]
    rng.shuffle(options)
    for i, j, k in options:
        new = [dict(o) for o in objs]
        new[i][k], new[j][k] = objs[j][k], objs[i][k]
        for o in (new[i], new[j]):
            o["r"] = round(RADIUS[o["size"]] * cell, 2)
        twin = {**scene, "objects": new}
        if has_color_shape(new, banned_pairs) or has_relation_fact(new, banned_facts, cell):
            continue
        if caption_true_for_scene(false_struct, twin) and not any(
            caption_true_for_scene(t, twin) for t in true_structs
        ):
            twin["relations"] = scene_relations(new, cell)
            return twin
    return None


def make_item(task: tuple[dict, str, int, str]) -> dict[str, Any]:
    """Sample, render and write one image; return its manifest line (as a dict)."""
    from tflocal.concepts.negatives import compose
    from tflocal.shapesworld.captions import from_text, mentions_held_out, to_text
    from tflocal.shapesworld.draw import draw_scene
    from tflocal.shapesworld.scene import sample_scene
    from tflocal.shapesworld.truth import caption_true_for_scene
    from tflocal.shapesworld.vocab import shapes_vocabulary

    cfg, split, index, out_dir = task
    rng = random.Random(f"{cfg['seed']}-{split}-{index}")
    pairs = [tuple(p) for p in cfg["held_out_color_shape"]]
    facts = [tuple(f) for f in cfg["held_out_relations"]]
    force = None
    if split in ("test_ood", "test_novel"):
        items = [{"pair": p} for p in pairs] + [{"fact": f} for f in facts]
        force = items[index % len(items)]
    scene = sample_scene(rng, cfg["image_size"], [] if force else pairs, [] if force else facts, force)
    structs = _captions(scene, rng, force)
    captions = [to_text(s, rng) for s in structs]
    train = split == "train"

    def accept(text: str) -> bool:
        st = from_text(text)
        if st is None or caption_true_for_scene(st, scene):
            return False
        return not (train and mentions_held_out(st, pairs, facts))

    vocab = shapes_vocabulary()
    negatives = []
    for ci, (struct, cap) in enumerate(zip(structs, captions)):
        plan = PLAN_RELATION if struct["relations"] else PLAN_OTHER
        seen = {cap.lower()}
        for pi, steps in enumerate(plan):
            neg = compose(
                cap, steps, random.Random(f"{cfg['seed']}-{split}-{index}-{ci}-{pi}"), vocab, accept
            )
            if neg is None or neg.text.lower() in seen:
                continue
            seen.add(neg.text.lower())
            negatives.append(neg.to_json(positive=ci))
    rel = f"images/{split}/{index:06d}.png"
    draw_scene(scene).save(Path(out_dir) / rel, compress_level=1)
    item_id = f"{split}/{index:06d}"
    twin = None
    if train and cfg.get("counterfactual"):
        crng = random.Random(f"{cfg['seed']}-{split}-{index}-cf")
        swaps = [n for n in negatives if n["op"] == "swap" and n["depth"] == 1]
        crng.shuffle(swaps)
        for neg in swaps:
            st = from_text(neg["text"])
            ci = neg["positive"]
            cf = st and counterfactual_scene(scene, structs, st, crng, pairs, facts)
            if cf:
                cf_rel = f"images/{split}/{index:06d}cf.png"
                draw_scene(cf).save(Path(out_dir) / cf_rel, compress_level=1)
                back = {
                    "text": captions[ci],
                    "op": "swap",
                    "kind": neg["kind"],
                    "depth": 1,
                    "chain": "swap",
                    "positive": 0,
                }
                twin = {
                    "id": f"{item_id}cf",
                    "image": cf_rel,
                    "captions": [neg["text"]],
                    "negatives": [back],
                    "split": split,
                    "scene": cf,
                    "structured_captions": [st],
                    "held_out": None,
                    "group": item_id,
                    "counterfactual_of": item_id,
                }
                break
    out = {
        "id": item_id,
        "image": rel,
        "captions": captions,
        "negatives": negatives,
        "split": split,
        "scene": scene,
        "structured_captions": structs,
        "held_out": force,
    }
    if twin is not None:
        out["group"] = item_id
        out["counterfactual"] = twin
    if split == "test_novel":
        from tflocal.shapesworld.novel import rename_item

        rename_item(out)
    elif train and cfg.get("vary_names", 0.0) > 0:
        from tflocal.shapesworld.novel import rename_item, sample_names

        nrng = random.Random(f"{cfg['seed']}-{split}-{index}-names")
        if nrng.random() < cfg["vary_names"]:
            names = sample_names(nrng)
            rename_item(out, names)
            if twin is not None:
                rename_item(twin, names)
    return out


def _meta(out_dir: str | Path) -> dict[str, Any]:
    """``out_dir/meta.json`` as written by :func:`generate`; {} where there is none (or unreadable)."""
    try:
        return json.loads((Path(out_dir) / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def rendered_splits(out_dir: str | Path) -> set[str]:
    """The splits whose render finished under ``out_dir`` (the counts :func:`generate` records
    in ``meta.json`` once a split is done); empty where there is none."""
    return set(_meta(out_dir).get("counts", {}))


def generate(
    out_dir: str | Path,
    n_train: int,
    n_test_id: int,
    n_test_ood: int,
    seed: int = 0,
    image_size: int = 224,
    workers: int = 2,
    progress: bool = True,
    counterfactual: bool = False,
    n_test_novel: int = 0,
    vary_names: float = 0.0,
    splits: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ShapesWorld under ``out_dir``: ``images/<split>/NNNNNN.png``, ``<split>.jsonl``
    and ``meta.json`` (``test_novel`` only when ``n_test_novel`` > 0; a share ``vary_names`` of
    ``train`` images named with other words). Returns the summary also stored in ``meta.json``.

    ``splits``: only these (each item depends on its split and index alone, so rendering the
    splits in several calls gives the same files); ``meta.json`` then keeps the counts of the
    splits an earlier call of the same config rendered."""
    from multiprocessing import get_context

    from tqdm import tqdm

    from tflocal.errors import UserError

    if min(n_train, n_test_id, n_test_ood, n_test_novel) < 0 or image_size < 48:
        raise UserError("shapes: image counts must be >= 0 and --image-size >= 48")
    if not 0.0 <= vary_names <= 1.0:
        raise UserError(f"shapes: --vary-names is a share of the train images, 0..1 (got {vary_names})")
    out = Path(out_dir)
    cfg = asdict(
        ShapesConfig(seed=seed, image_size=image_size, counterfactual=counterfactual, vary_names=vary_names)
    )
    counts = {"train": n_train, "test_id": n_test_id, "test_ood": n_test_ood, "test_novel": n_test_novel}
    stats: dict[str, dict[str, int]] = {}
    meta_path = out / "meta.json"
    if splits is not None:
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown:
            raise UserError(f"shapes: unknown split(s) {', '.join(unknown)}; choices: {', '.join(SPLITS)}")
        earlier = _meta(out)
        if earlier.get("config") == cfg:
            stats.update({k: v for k, v in earlier.get("counts", {}).items() if k not in splits})
    todo = [s for s in SPLITS if (s != "test_novel" or n_test_novel > 0) and (splits is None or s in splits)]
    pool = get_context("fork").Pool(workers) if workers > 1 and todo else None
    try:
        for split in todo:
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            tasks = [(cfg, split, i, str(out)) for i in range(counts[split])]
            it = pool.imap(make_item, tasks, chunksize=32) if pool else map(make_item, tasks)
            st: dict[str, int] = {"images": 0, "captions": 0, "negatives": 0}
            with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for item in tqdm(it, total=len(tasks), desc=f"shapes {split}", disable=not progress):
                    twin = item.pop("counterfactual", None)
                    f.write(json.dumps(item) + "\n")
                    if twin is not None:
                        f.write(json.dumps(twin) + "\n")
                        st["counterfactual_images"] = st.get("counterfactual_images", 0) + 1
                    st["images"] += 1
                    st["captions"] += len(item["captions"])
                    st["negatives"] += len(item["negatives"])
                    for neg in item["negatives"]:
                        key = f"{neg['op']}/{neg['kind']}/depth{neg['depth']}"
                        st[key] = st.get(key, 0) + 1
            stats[split] = st
    finally:
        if pool:
            pool.close()
            pool.join()
    meta = {"generator": "tflocal.shapesworld", "config": cfg, "counts": {s: stats[s] for s in SPLITS if s in stats}}
    tmp = meta_path.with_name(meta_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, meta_path)
    return meta
