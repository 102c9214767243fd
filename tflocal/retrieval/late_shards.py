"""One late-interaction index per cache shard, searched as one (faiss ``IndexShards`` conventions).

A cache written by several processes is shard files under one small merged file
(:func:`cache_tools.store.shards.shard_layout`). :func:`build_shard_indexes` builds one index
(:func:`~tflocal.retrieval.late_build.build_late_index`) per shard file, over that file alone;
under ``accelerate launch`` process k of W builds shards k, k + W, ... A folder of them::

    DIR/shards.json     format "tflocal-index-shards", version, cache (the merged file), n_images,
                        shards: [{"index": "shard00000", "cache": shard file, "image_start",
                        "n_images"}, ...] in the merged cache's row order
    DIR/shard00000/     an ordinary index (:mod:`.store`) of the first shard's images, ...

:class:`ShardedLateIndex` searches each shard's index for its top k and merges them as
``faiss.IndexShards`` does with successive ids: shard s's rows are offset by the images of the
shards before it (so ids are rows of the merged cache) and ``faiss.ResultHeap`` keeps the k
largest scores (:func:`merge_topk`). Scores are each shard's exact scores under the head, so when
every shard's search is exhaustive the merged top k is the top k of one index over the whole
cache. The merge reads only (ids, scores) lists, so the shards' searches can run anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from cache_tools.store.reader import Cache
from cache_tools.store.shards import ShardRows, shard_layout
from tflocal.errors import UserError
from tflocal.pairs.assemble import TextSide, texts_from_cache
from tflocal.retrieval.late_build import build_late_index
from tflocal.retrieval.late_index import LateIndex
from tflocal.retrieval.store import VectorStore

MANIFEST = "shards.json"
FORMAT = "tflocal-index-shards"
VERSION = 1


def merge_topk(results: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-shard results (ids [n_s] int64, already offset to global ids; scores [n_s]) -> the
    global top k (ids [k'] int64, scores [k'] float32, best first; k' = min(k, all results)),
    through ``faiss.ResultHeap`` keeping the largest scores. Equal scores come in heap order."""
    heap = faiss.ResultHeap(1, int(k), keep_max=True)
    for ids, scores in results:
        ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        if ids.size:
            heap.add_result(np.asarray(scores, dtype=np.float32).reshape(1, -1), ids)
    heap.finalize()
    found = heap.I[0] >= 0
    return heap.I[0][found], heap.D[0][found]


def shard_folder(out: str | Path, shard: int) -> Path:
    return Path(out) / f"shard{shard:05d}"


def _layout(cache_path: str | Path) -> list[ShardRows]:
    layout = shard_layout(cache_path)
    if not layout:
        raise UserError(
            f"cache {cache_path} is one file, not shards (it was written by one process): index it "
            "without --per-shard"
        )
    return layout


def build_shard_indexes(
    cache_path: str | Path,
    head: torch.nn.Module,
    out: str | Path,
    rank: int = 0,
    world: int = 1,
    **kwargs: Any,
) -> list[Path]:
    """Index shard files rank, rank + world, ... of the merged cache ``cache_path`` into
    ``out/shardNNNNN/`` (``kwargs``: :func:`build_late_index`'s), each over its shard file alone.
    With ``world`` 1 every shard is built and ``out/shards.json`` written; with more, the
    caller writes it (:func:`write_manifest`) once all processes are done. Returns the folders built."""
    layout = _layout(cache_path)
    out = Path(out)
    if out.exists() and any(p.name != MANIFEST and not p.name.startswith("shard") for p in out.iterdir()):
        raise UserError(f"{out} exists and is not a folder of shard indexes: choose another --out folder")
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for i in range(rank, len(layout), world):
        with Cache(layout[i].path) as shard:
            build_late_index(shard, head, shard_folder(out, i), **kwargs)
        built.append(shard_folder(out, i))
    if world == 1:
        write_manifest(out, cache_path)
    return built


def write_manifest(out: str | Path, cache_path: str | Path) -> Path:
    """``out/shards.json`` for the shard indexes of ``cache_path`` (each must be built)."""
    out = Path(out)
    layout = _layout(cache_path)
    missing = [
        shard_folder(out, i).name
        for i in range(len(layout))
        if not (shard_folder(out, i) / "meta.json").is_file()
    ]
    if missing:
        raise UserError(
            f"{out}: shard index(es) {', '.join(missing[:3])} missing: run the same `tflocal index --per-shard` again"
        )
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "cache": str(cache_path),
        "n_images": layout[-1].image_stop,
        "shards": [
            {
                "index": shard_folder(out, i).name,
                "cache": str(s.path),
                "image_start": s.image_start,
                "n_images": s.n_images,
            }
            for i, s in enumerate(layout)
        ],
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / MANIFEST)
    return out / MANIFEST


class ShardedLateIndex:
    """The shard indexes of folder ``path`` (see module docstring) for ``scorer``, whose cache is
    the merged cache they were built from; ``kwargs``: :class:`LateIndex`'s (per shard). Each
    shard's index is bound to its own shard file (opened here); ids are merged-cache rows."""

    def __init__(self, path: str | Path, scorer: Any, **kwargs: Any):
        self.path = Path(path)
        manifest = json.loads((self.path / MANIFEST).read_text())
        if manifest.get("format") != FORMAT or int(manifest.get("version", -1)) != VERSION:
            raise UserError(
                f"{self.path} is not a version-{VERSION} folder of shard indexes: rebuild it with `tflocal index --per-shard`"
            )
        self.scorer, self.cache = scorer, scorer.cache
        layout = shard_layout(self.cache.path)
        listed = [(s["image_start"], s["n_images"]) for s in manifest["shards"]]
        if [(s.image_start, s.n_images) for s in layout] != listed:
            raise UserError(
                f"index {self.path} was built over the shards of {manifest['cache']} ({manifest['n_images']} images), "
                f"not over cache {self.cache.path} ({self.cache.n_images} images): rebuild it for this cache"
            )
        self.starts = np.array([s.image_start for s in layout], np.int64)
        self.parts = [
            LateIndex(VectorStore(self.path / s["index"]), scorer, cache=Cache(rows.path), **kwargs)
            for s, rows in zip(manifest["shards"], layout)
        ]

    @property
    def n_images(self) -> int:
        return int(sum(p.store.n_images for p in self.parts))

    def encode_caption(self, caption: str) -> TextSide:
        return self.parts[0].encode_caption(caption)

    def cached_caption(self, row: int) -> TextSide:
        """Caption ``row`` of the merged cache (its stored tokens)."""
        return texts_from_cache(self.cache, np.array([row]), self.parts[0]._text_needs)

    def search(
        self, texts: TextSide | str, k: int = 10, extra: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """As :meth:`LateIndex.search`: each shard's top k (``extra``: merged-cache rows, each
        scored by its own shard), merged -> (merged-cache rows [k], exact scores [k], images
        scored exactly over all shards). The caption's text states are computed once."""
        if isinstance(texts, str):
            texts = self.encode_caption(texts)
        states = self.parts[0].text_states(texts)
        extra = None if extra is None else np.asarray(extra, dtype=np.int64).reshape(-1)
        results, scored = [], 0
        for part, start in zip(self.parts, self.starts):
            mine = None
            if extra is not None:
                mine = extra[(extra >= start) & (extra < start + part.store.n_images)] - start
            ids, scores, n = part.search(texts, k=k, extra=mine, states=states)
            results.append((ids + start, scores))
            scored += n
        ids, scores = merge_topk(results, k)
        return ids, scores, scored

    def exhaustive(self, texts: TextSide, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over every shard, merged -> (merged-cache rows [k], scores [k])."""
        results = []
        for part, start in zip(self.parts, self.starts):
            ids, scores = part.exhaustive(texts, k=k)
            results.append((ids + start, scores))
        return merge_topk(results, k)

    def close(self) -> None:
        for part in self.parts:
            part.cache.close()
