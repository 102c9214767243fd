"""Generate the 3D world: PNGs, one JSONL manifest per split, ``meta.json``.

Every item is made from its own random stream seeded by ``(seed, split, index)``, so the output
is identical for a seed whatever the number of workers, and a killed run resumes: each finished
item is written to ``parts/<split>/NNNNNN.json`` (after its images), and a run skips the items
whose part exists; the manifests are assembled from the parts at the end.

Splits:

* ``train`` — scenes and captions without any held-out combination
  (:data:`~tflocal.world3d.vocab.HELD_OUT_TRIPLES`, ``HELD_OUT_COUNTS``, ``HELD_OUT_FACTS``);
  a share ``train_pairs`` of the items also gets its minimal-pair twin (same ``group``, so
  training sees the twin as a negative image of the caption).
* ``test_id`` — like train, every item a minimal pair; categories cycle through
  :data:`~tflocal.world3d.pairs.CATEGORIES`.
* ``test_ood`` — every item a minimal pair whose first caption states a held-out combination of
  its category (a colour–material–shape, a count of a shape, a relation fact).
* ``test_novel`` — made as ``test_ood`` and renamed with words outside the shipped vocabulary
  (:mod:`tflocal.world3d.novel`).

A minimal pair is two manifest lines with the same ``group`` (``<split>/pairNNNNNN``), ``role``
``original`` and ``negative``, and ``category``; caption 0 of each is the pair's caption of that
image. Every caption also gets SWAP / REPLACE / ADD negatives made by :mod:`tflocal.concepts`
operators, kept only when the truth function says they are false of the image (and, in
``train`` and ``test_id``, when they name no held-out combination).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tflocal.world3d.pairs import CATEGORIES, minimal_pair, scene_captions
from tflocal.world3d.vocab import HELD_OUT_COUNTS, HELD_OUT_FACTS, HELD_OUT_TRIPLES, RELATION_TYPE

SPLITS = ("train", "test_id", "test_ood", "test_novel")

PLAN_RELATION: list[list[tuple[str, str | None]]] = [
    [("swap", "attribute")],
    [("swap", "attribute")] * 2,
    [("swap", "relation")],
    [("swap", "object")],
    [("replace", "relation")],
    [("replace", None)],
    [("add", None)],
    [("replace", None), ("swap", "attribute")],
]
"""Negatives planned for a caption with a relation (steps per negative)."""
PLAN_OTHER: list[list[tuple[str, str | None]]] = [
    [("swap", "attribute")],
    [("replace", "attribute")],
    [("replace", None)],
    [("add", None)],
    [("swap", None)],
    [("replace", None), ("add", None)],
]


@dataclass
class WorldConfig:
    """Generator settings (recorded in ``meta.json``)."""

    seed: int = 0
    image_size: int = 224
    train_pairs: float = 0.5
    """Share of ``train`` items that also get a minimal-pair twin."""
    held_out_triples: list = field(default_factory=lambda: [list(t) for t in HELD_OUT_TRIPLES])
    held_out_counts: list = field(default_factory=lambda: [list(c) for c in HELD_OUT_COUNTS])
    held_out_facts: list = field(default_factory=lambda: [list(f) for f in HELD_OUT_FACTS])
    equality_negatives: int = 0
    """Per ``train`` caption "A is the same color as B": up to this many more negatives with B
    replaced by another object of the scene, described without its colour, that is not A's
    colour (false only because of the colours). 0: none (renders made before this setting
    existed; the key is then left out of ``meta.json``)."""


def _held(cfg: dict) -> tuple[list, list, list]:
    return (
        [tuple(t) for t in cfg["held_out_triples"]],
        [(int(n), s) for n, s in cfg["held_out_counts"]],
        [tuple(f) for f in cfg["held_out_facts"]],
    )


def scene_has_held_out(scene: dict, cfg: dict) -> bool:
    """Does the scene hold a held-out triple, count or fact?"""
    from tflocal.world3d.scene import relation_holds

    triples, counts, facts = _held(cfg)
    objs = scene["objects"]
    if any((o["color"], o["material"], o["shape"]) in triples for o in objs):
        return True
    if any(sum(o["shape"] == s for o in objs) == n for n, s in counts):
        return True
    size = scene["image_size"]
    for ma, a, rel, mb, b in facts:
        for i, x in enumerate(objs):
            for j, y in enumerate(objs):
                if (
                    i != j
                    and (x["material"], x["shape"], y["material"], y["shape"]) == (ma, a, mb, b)
                    and relation_holds(objs, i, rel, j, size)
                ):
                    return True
    return False


def _hints(category: str, rng: random.Random, cfg: dict, forced: bool) -> tuple[dict, Any]:
    """sample_scene keyword arguments that make a minimal pair of ``category`` likely, and its
    anchor; with ``forced``, object 0 (and 1) carry the held-out combination of the category."""
    from tflocal.world3d.vocab import COLORS, SHAPES

    triples, counts, facts = _held(cfg)
    if category in ("color", "material", "size"):
        if not forced:
            return {}, None
        c, m, s = rng.choice(triples)
        return {"objects": [{"color": c, "material": m, "shape": s}]}, 0
    if category == "quantity":
        if forced:
            n, a = rng.choice(counts)
            m = rng.choice([k for k in (n - 1, n + 1) if k >= 2])
            b = rng.choice([s for s in SHAPES if s != a])
        else:  # neither image of the pair may hold a held-out count
            options = [
                (n, m, a, b)
                for n, m in [(2, 3), (3, 2), (3, 4), (4, 3)]
                for a in SHAPES
                for b in SHAPES
                if a != b and not {(n, a), (m, b), (m, a), (n, b)} & set(counts)
            ]
            n, m, a, b = rng.choice(options)
        objs = [{"shape": a}] * n + [{"shape": b}] * m
        return {"objects": objs, "n": (n + m, n + m)}, ((n, a) if forced else None)
    if not forced:
        if category == "support":
            return {"stack": 1.0}, None
        if category == "equality":
            c = rng.choice(list(COLORS))
            return {"objects": [{"color": c}, {"color": c}]}, None
        return {}, None
    ma, a, rel, mb, b = next(f for f in facts if RELATION_TYPE[f[2]] == category)
    objs: list[dict] = [{"shape": a, "material": ma}, {"shape": b, "material": mb}]
    kw: dict = {"objects": objs}
    if category == "support":
        kw["stack_on"] = (0, 1)
    elif category == "comparative":
        objs[0]["size"], objs[1]["size"] = ("large", "small") if rel == "bigger than" else ("small", "large")
    elif category == "equality":
        c = rng.choice(list(COLORS))
        objs[0]["color"] = objs[1]["color"] = c
        objs.append({"color": rng.choice([k for k in COLORS if k != c])})
    return kw, [0, rel, 1]


def _negatives(structs, captions, scene, cfg, key: str, closed: bool, train: bool = False) -> list[dict]:
    from tflocal.concepts.negatives import compose
    from tflocal.world3d.captions import from_text, mentions_held_out, to_text
    from tflocal.world3d.truth import caption_true_for_scene
    from tflocal.world3d.vocab import world_vocabulary

    triples, counts, facts = _held(cfg)

    def accept(text: str) -> bool:
        st = from_text(text)
        if st is None or caption_true_for_scene(st, scene):
            return False
        return not (closed and mentions_held_out(st, triples, counts, facts))

    out = []
    n_equal = int(cfg.get("equality_negatives", 0)) if train else 0
    for ci, (struct, cap) in enumerate(zip(structs, captions)):
        plan = PLAN_RELATION if struct["relations"] else PLAN_OTHER
        seen = {cap.lower()}
        for pi, steps in enumerate(plan):
            neg = compose(cap, steps, random.Random(f"{key}-{ci}-{pi}"), world_vocabulary(), accept)
            if neg is None or neg.text.lower() in seen:
                continue
            seen.add(neg.text.lower())
            out.append(neg.to_json(positive=ci))
        if n_equal:
            rng = random.Random(f"{key}-{ci}-equal")
            for neg_struct in equality_negatives(struct, scene, rng, n_equal):
                text = to_text(neg_struct, rng)
                if text.lower() in seen or not accept(text):
                    continue
                seen.add(text.lower())
                out.append(
                    {
                        "text": text,
                        "op": "replace",
                        "kind": "object",
                        "depth": 1,
                        "chain": "replace",
                        "positive": ci,
                    }
                )
    return out


def equality_negatives(struct: dict, scene: dict, rng: random.Random, n: int) -> list[dict]:
    """Up to ``n`` structured negatives of a caption "A is the same color as B": B replaced by
    another scene object described without its colour, such that both mentions still fit
    objects of the scene but the caption is false (no fitting object has A's colour)."""
    from tflocal.world3d.captions import describe
    from tflocal.world3d.truth import caption_true_for_scene

    rels = [r for r in struct["relations"] if r[1] == "same color as"]
    if not rels:
        return []
    _, rel, j = rels[0]
    objs = scene["objects"]
    out: list[dict] = []
    seen: set[str] = set()
    for k in rng.sample(range(len(objs)), len(objs)):
        mentions = [dict(m) for m in struct["objects"]]
        mentions[j] = describe(objs[k], rng, omit=("color",))
        neg = {"objects": mentions, "relations": [list(r) for r in struct["relations"]]}
        exists = {"objects": mentions, "relations": [r for r in neg["relations"] if r[1] != rel]}
        sig = json.dumps(mentions, sort_keys=True)
        if sig in seen or caption_true_for_scene(neg, scene) or not caption_true_for_scene(exists, scene):
            continue
        seen.add(sig)
        out.append(neg)
        if len(out) == n:
            break
    return out


def _line(item_id, rel, split, scene, structs, key, cfg, closed, rng, extra) -> dict:
    from tflocal.world3d.captions import to_text

    captions = [to_text(s, rng) for s in structs]
    line = {
        "id": item_id,
        "image": rel,
        "captions": captions,
        "negatives": _negatives(structs, captions, scene, cfg, key, closed, split == "train"),
        "split": split,
        "scene": scene,
        "structured_captions": structs,
    }
    line.update(extra)
    return line


def make_item(task: tuple[dict, str, int, str]) -> list[dict]:
    """Sample, render and write one item (one image, or a minimal pair of two); return its
    manifest lines."""
    from tflocal.world3d.render import render

    lines = build_item(task)
    out_dir = Path(task[3])
    for line in lines:
        render(line["scene"]).save(out_dir / line["image"], compress_level=1)
    return lines


def build_item(task: tuple[dict, str, int, str]) -> list[dict]:
    """The manifest lines of one item (see the module docstring), images not rendered: each
    line's ``image`` is where :func:`make_item` writes its ``scene``."""
    from tflocal.world3d.captions import mentions_held_out
    from tflocal.world3d.scene import sample_scene
    from tflocal.world3d.truth import caption_true_for_scene

    cfg, split, index, _ = task
    key = f"{cfg['seed']}-{split}-{index}"
    rng = random.Random(key)
    triples, counts, facts = _held(cfg)
    closed = split in ("train", "test_id")
    forced = split in ("test_ood", "test_novel")
    want_pair = split != "train" or rng.random() < cfg["train_pairs"]
    category = CATEGORIES[index % len(CATEGORIES)] if split != "train" else rng.choice(CATEGORIES)

    def valid(scene: dict) -> bool:
        return not (closed and scene_has_held_out(scene, cfg))

    def fine(struct: dict) -> bool:
        return not (closed and mentions_held_out(struct, triples, counts, facts))

    for attempt in range(400):
        kw, anchor = _hints(category, rng, cfg, forced) if want_pair else ({}, None)
        try:
            scene = sample_scene(rng, cfg["image_size"], valid=valid, **kw)
        except RuntimeError:
            continue
        pair = minimal_pair(scene, category, rng, anchor, valid) if want_pair else None
        if want_pair and (pair is None or not fine(pair[0]) or not fine(pair[1])):
            if split == "train" and attempt > 20:
                want_pair = False  # a train item without its twin rather than none
            continue
        break
    else:
        raise RuntimeError(f"world3d: no {category} item found for {split}/{index:06d}")
    item_id = f"{split}/{index:06d}"
    extras = [s for s in scene_captions(scene, rng) if fine(s)]
    if pair is None:
        rel = f"images/{split}/{index:06d}.png"
        # never empty: the list caption is true, and names no held-out combination where the
        # scene holds none
        return [_line(item_id, rel, split, scene, extras, key, cfg, closed, rng, {})]
    c0, c1, twin = pair
    group = f"{split}/pair{index:06d}"
    lines = []
    twin_extras = [s for s in scene_captions(twin, rng) if fine(s)]
    for role, sc, first, own, other in (
        ("original", scene, c0, extras, twin),
        ("negative", twin, c1, twin_extras, scene),
    ):
        suffix = "" if role == "original" else "b"
        rel = f"images/{split}/{index:06d}{suffix}.png"
        structs = [first] + [s for s in own if not caption_true_for_scene(s, other)][:2]
        lines.append(
            _line(
                f"{item_id}{suffix}",
                rel,
                split,
                sc,
                structs,
                f"{key}{suffix}",
                cfg,
                closed,
                rng,
                {"group": group, "role": role, "category": category, "held_out": forced},
            )
        )
    if split == "test_novel":
        from tflocal.world3d.novel import rename_item

        for line in lines:
            rename_item(line)
    return lines


def _write_part(task: tuple[dict, str, int, str]) -> int:
    cfg, split, index, out_dir = task
    part = Path(out_dir) / "parts" / split / f"{index:06d}.json"
    if not part.exists():
        lines = make_item(task)
        tmp = part.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(lines))
        os.replace(tmp, part)
    return index


def generate(
    out_dir: str | Path,
    n_train: int,
    n_test: int,
    n_novel: int | None = None,
    seed: int = 0,
    image_size: int = 224,
    workers: int = 2,
    train_pairs: float = 0.5,
    progress: bool = True,
    equality_negatives: int = 0,
) -> dict[str, Any]:
    """Write the world under ``out_dir`` (see the module docstring): ``n_train`` train items,
    ``n_test`` minimal pairs in each of test_id and test_ood, ``n_novel`` (default ``n_test``) in
    test_novel. Resumes a killed run. Returns the summary also stored in ``meta.json``."""
    from multiprocessing import get_context

    from tqdm import tqdm

    from tflocal.errors import UserError

    n_novel = n_test if n_novel is None else n_novel
    if min(n_train, n_test, n_novel) < 0 or image_size < 48:
        raise UserError("world3d: item counts must be >= 0 and --image-size >= 48")
    if not 0.0 <= train_pairs <= 1.0:
        raise UserError(f"world3d: --train-pairs is a share of the train items, 0..1 (got {train_pairs})")
    out = Path(out_dir)
    if equality_negatives < 0:
        raise UserError(f"world3d: equality_negatives must be >= 0 (got {equality_negatives})")
    cfg = asdict(
        WorldConfig(
            seed=seed, image_size=image_size, train_pairs=train_pairs, equality_negatives=equality_negatives
        )
    )
    if not cfg["equality_negatives"]:
        del cfg["equality_negatives"]  # the settings of renders made before the key existed
    meta_path = out / "meta.json"
    config_path = out / "parts" / "config.json"
    if config_path.exists() and json.loads(config_path.read_text()) != cfg:
        raise UserError(
            f"world3d: {out} holds a render made with other settings ({config_path}); "
            "give another --out or delete the folder"
        )
    counts = {"train": n_train, "test_id": n_test, "test_ood": n_test, "test_novel": n_novel}
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "parts" / split).mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(cfg, sort_keys=True))
    stats: dict[str, dict[str, int]] = {}
    pool = get_context("fork").Pool(workers) if workers > 1 else None
    try:
        for split in [s for s in SPLITS if counts[s] > 0]:
            tasks = [(cfg, split, i, str(out)) for i in range(counts[split])]
            todo = [t for t in tasks if not (out / "parts" / split / f"{t[2]:06d}.json").exists()]
            it = pool.imap_unordered(_write_part, todo, chunksize=4) if pool else map(_write_part, todo)
            for _ in tqdm(
                it,
                total=len(tasks),
                initial=len(tasks) - len(todo),
                desc=f"world3d {split}",
                disable=not progress,
            ):
                pass
            stats[split] = _assemble(out, split, counts[split])
    finally:
        if pool:
            pool.close()
            pool.join()
    meta = {"generator": "tflocal.world3d", "config": cfg, "counts": stats}
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta


def _assemble(out: Path, split: str, n: int) -> dict[str, int]:
    """``<split>.jsonl`` from the split's parts, in index order; the split's counts."""
    st: dict[str, int] = {"items": n, "images": 0, "captions": 0, "negatives": 0, "pairs": 0}
    with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            lines = json.loads((out / "parts" / split / f"{i:06d}.json").read_text())
            for line in lines:
                f.write(json.dumps(line) + "\n")
                st["images"] += 1
                st["captions"] += len(line["captions"])
                st["negatives"] += len(line["negatives"])
                if line.get("role") == "original":
                    st["pairs"] += 1
                    key = f"pairs/{line['category']}"
                    st[key] = st.get(key, 0) + 1
    return st
