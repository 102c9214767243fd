"""The search engine behind ``tflocal serve``: one cache, its index, several scorers.

Text -> image: a first stage (faiss over the images' global vectors when the cache's global
space is joint; otherwise every searchable image, as unaligned towers have no comparable
globals) keeps ``k_rerank`` candidates, then each scorer re-ranks the same candidates with
:meth:`Scorer.score_text_query`. Image -> text: an uploaded image is encoded once and scored
against the cache's distinct positive captions. Word -> region maps use a head's own
``word_region_attention`` (what ``plot_word_maps`` draws) for a new query on a cached image.

Thread safety: the encoder (its tokenizer is not re-entrant) is shared by all scorers behind a
lock; scoring itself runs concurrently; matplotlib drawing is serialized.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tflocal.errors import UserError
from tflocal.models.base import Head

log = logging.getLogger("tflocal.app.serve")


class LockedEncoder:
    """An encoder whose ``encode_texts`` / ``encode_images`` run one at a time; else the same."""

    def __init__(self, encoder: Any):
        self._inner = encoder
        self._lock = threading.Lock()

    def encode_texts(self, *a: Any, **kw: Any) -> Any:
        with self._lock:
            return self._inner.encode_texts(*a, **kw)

    def encode_images(self, *a: Any, **kw: Any) -> Any:
        with self._lock:
            return self._inner.encode_images(*a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def has_attention(scorer: Any) -> bool:
    """Whether the scorer's head draws word -> region maps of its own."""
    head = getattr(scorer, "head", None)  # scorers without a head module (e.g. sgi) have none
    return isinstance(head, Head) and head.word_maps


class SearchEngine:
    """Searches ``cache`` with named scorers (see the module docstring).

    Args:
        cache: an open cache.
        scorers: label -> scorer over ``cache`` (all sharing one encoder).
        index: faiss index over the global vectors of ``rows``, in that order (None: built when
            the global space is joint, else no first stage).
        rows: the searchable image rows (default all).
        images: an :class:`~tflocal.app.serve.images.ImageStore` or None.
        k_rerank: first-stage candidates re-ranked.
        preload_bytes: per scorer, the searchable images' inputs are held in RAM as float32
            tensors up to this size (queries then skip the cache reads).
    """

    def __init__(
        self,
        cache: Any,
        scorers: dict[str, Any],
        index: Any = None,
        rows: np.ndarray | None = None,
        images: Any = None,
        k_rerank: int = 100,
        preload_bytes: int = 2 << 30,
    ):
        if not scorers:
            raise UserError("serve: give at least one --scorer")
        self.cache = cache
        self.scorers = scorers
        self.rows = np.arange(cache.n_images, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        if not self.rows.size:
            raise UserError(f"serve: no searchable images in {cache.path}")
        self.joint = cache.attrs.get("global_space") == "joint"
        self.index = index
        if self.joint and index is None:
            from tflocal.retrieval.first_stage import build_faiss_index

            self.index = build_faiss_index(cache.image_global(self.rows))
        if self.index is not None and self.index.ntotal != self.rows.size:
            raise UserError(
                f"index holds {self.index.ntotal} vectors but {self.rows.size} images are searchable: rebuild it"
            )
        self.images = images
        self.k_rerank = int(k_rerank)
        self.id_to_row = {str(i): r for r, i in enumerate(cache.image_ids)}
        self.encoder = next(iter(scorers.values())).encoder
        self._plot_lock = threading.Lock()
        self._captions: tuple[np.ndarray, list[str]] | None = None
        self._pos = np.full(cache.n_images, -1, dtype=np.int64)
        self._pos[self.rows] = np.arange(self.rows.size)
        self._pre = {name: self._preload(sc, preload_bytes) for name, sc in scorers.items()}

    def _preload(self, sc: Any, budget: int) -> tuple[Any, dict[str, torch.Tensor]] | None:
        """(scorer, the image inputs it reads for every searchable row as tensors) when they fit
        in ``budget`` bytes; late-interaction heads get their region vectors computed here once
        (:mod:`tflocal.app.serve.fast`). None: read per query (always for crop-based scorers)."""
        from tflocal.app.serve.fast import late_interaction
        from tflocal.app.serve.inputs import IMAGE_FIELDS, image_inputs

        needs = [n for n in sc.needs if n in IMAGE_FIELDS]
        if "crops" in needs:
            return None
        a = self.cache.attrs
        row = (4 * int(a.get("global_image_dim") or 0)) if "image_global" in needs else 0
        if {"patches", "patch_mask"} & set(needs):
            row += (4 * int(a["image_dim"]) + 1) * int(np.prod(a["grid"]))
        if row * self.rows.size > budget:
            return None
        fields = image_inputs(self.cache, self.rows, needs)
        # the preloaded path must give the scorer's own numbers, else it is not used
        query, pos = "a red cube left of a blue ball", np.arange(min(8, self.rows.size))
        try:
            same = np.allclose(
                self._score_fields(sc, fields, query, pos),
                sc.score_text_query(query, self.rows[pos]),
                rtol=1e-4,
                atol=1e-4,
            )
        except Exception as err:  # noqa: BLE001 - any misfit: serve the plain way
            log.info("serve: %s scored the plain way (%s: %s)", sc.name, type(err).__name__, err)
            return None
        if not same:
            log.info("serve: %s scored the plain way (preloaded inputs disagree)", sc.name)
            return None
        return late_interaction(sc, fields, (query, pos, self._score_fields)) or (sc, fields)

    def _score_fields(self, sc: Any, fields: dict[str, torch.Tensor], query: str, pos: Any) -> np.ndarray:
        """Scores of ``query`` against the preloaded rows at positions ``pos`` (a slice or [K])."""
        from tflocal.app.serve.inputs import pairs

        text = self._encode_query(query, [sc.name]) if isinstance(query, str) else query
        txt = {k: v for k, v in text.items() if k in sc.needs}
        sel = {k: v[pos] for k, v in fields.items()}
        n = len(next(iter(sel.values())))
        out = np.empty(n, dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, n, sc.batch_size):
                f = {k: v[s : s + sc.batch_size] for k, v in sel.items()}
                b = len(next(iter(f.values())))
                out[s : s + b] = sc.score_pairs_batch(pairs(f, txt, b)).float().cpu().numpy()
        return out

    # -- text -> image ---------------------------------------------------------------------
    def first_stage(self, query: str, k_rerank: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(candidate image rows [K], their global cosine [K] or None when there is no index)."""
        if self.index is None:
            return self.rows, None
        from tflocal.retrieval.first_stage import search

        with torch.inference_mode():
            q = self.encoder.encode_texts([query]).global_.detach().float().cpu().numpy()
        D, I = search(self.index, q, k_rerank or self.k_rerank)  # noqa: E741 (faiss naming)
        keep = I[0] >= 0
        return self.rows[I[0][keep]], D[0][keep]

    def search(self, query: str, k: int, scorers: list[str]) -> dict[str, Any]:
        """Top ``k`` images for ``query`` per scorer: {"candidates", "results": {name: [hit]}}.

        A hit: {"id", "row", "rank", "score", "first_stage"} (first_stage: global cosine or None)."""
        t0 = time.perf_counter()
        rows, first = self.first_stage(query)
        timings = {"first_stage_ms": round(1e3 * (time.perf_counter() - t0), 2)}
        results = {}
        t1 = time.perf_counter()
        text = self._encode_query(query, scorers)
        timings["encode_ms"] = round(1e3 * (time.perf_counter() - t1), 2)
        for name in scorers:
            t1 = time.perf_counter()
            s = self._score(name, query, text, rows)
            order = np.argsort(-s, kind="stable")[:k]
            results[name] = [
                {
                    "id": str(self.cache.image_ids[rows[j]]),
                    "row": int(rows[j]),
                    "rank": r + 1,
                    "score": float(s[j]),
                    "first_stage": None if first is None else float(first[j]),
                }
                for r, j in enumerate(order)
            ]
            timings[f"{name}_ms"] = round(1e3 * (time.perf_counter() - t1), 2)
        return {"candidates": int(rows.size), "results": results, "timings": timings}

    def _encode_query(self, query: str, scorers: list[str]) -> dict[str, Any]:
        """The query's text inputs for all ``scorers`` at once (one encoder pass)."""
        from tflocal.app.serve.inputs import query_inputs

        needs = {n for name in scorers for n in self.scorers[name].needs}
        return query_inputs(self.encoder, query, sorted(needs))

    def _score(self, name: str, query: str, text: dict[str, Any], rows: np.ndarray) -> np.ndarray:
        """Scores [K] of the query against image ``rows`` [K]; the same numbers as
        :meth:`Scorer.score_text_query`, from the preloaded image inputs when there are any."""
        pre = self._pre[name]
        if pre is None:
            return self.scorers[name].score_text_query(query, rows)
        sc, fields = pre
        whole = rows.size == self.rows.size and bool((rows == self.rows).all())
        return self._score_fields(
            sc, fields, text, slice(None) if whole else torch.from_numpy(self._pos[rows])
        )

    # -- image -> text ---------------------------------------------------------------------
    def caption_rows(self) -> tuple[np.ndarray, list[str]]:
        """Distinct positive captions of the searchable images: (text rows [C], strings [C])."""
        if self._captions is None:
            c = self.cache
            ok = (c.image_index >= 0) & (c.positive_index < 0) & np.isin(c.image_index, self.rows)
            seen: dict[str, int] = {}
            for t in np.flatnonzero(ok):
                seen.setdefault(str(c.strings[t]), int(t))
            self._captions = (np.fromiter(seen.values(), np.int64, len(seen)), list(seen))
        return self._captions

    def search_image(self, image: Any, k: int, scorers: list[str]) -> dict[str, Any]:
        """Top ``k`` cached captions for a PIL image, per scorer (first stage: global cosine
        when the space is joint, else every caption)."""
        from tflocal.app.serve.inputs import cached_text_inputs, encoded_image_inputs, pairs

        rows, strings = self.caption_rows()
        if not rows.size:
            raise UserError("serve: the cache holds no positive captions to rank")
        results = {}
        for name in scorers:
            sc = self.scorers[name]
            img, crops = encoded_image_inputs(sc.encoder, image, sc.needs, sc._crop_boxes())
            out = np.empty(rows.size, dtype=np.float32)
            with torch.inference_mode():
                for s in range(0, rows.size, sc.batch_size):
                    sl = rows[s : s + sc.batch_size]
                    txt = cached_text_inputs(self.cache, sl, sc.needs)
                    batch = pairs(txt, img, len(sl), crops)
                    out[s : s + len(sl)] = sc.score_pairs_batch(batch).float().cpu().numpy()
            order = np.argsort(-out, kind="stable")[:k]
            results[name] = [
                {"text_row": int(rows[j]), "caption": strings[j], "rank": r + 1, "score": float(out[j])}
                for r, j in enumerate(order)
            ]
        return {"candidates": int(rows.size), "results": results}

    # -- word -> region maps ---------------------------------------------------------------
    def attention_scorers(self) -> list[str]:
        """Scorers that can draw word -> region maps (own attention, or token-patch cosine on a
        joint-space cache)."""
        joint = self.cache.attrs.get("space") == "joint"
        return [n for n, s in self.scorers.items() if has_attention(s) or (joint and hasattr(s, "head"))]

    def word_map(self, row: int, query: str, scorer: str | None = None) -> tuple[str, list[str], np.ndarray]:
        """(scorer used, T words, [T, P] weights of each query word over the image's patches)."""
        from tflocal.app.serve.inputs import image_inputs, pairs, query_inputs
        from tflocal.scoring.head import token_patch_attention

        able = self.attention_scorers()
        if scorer is None:
            own = [n for n in able if has_attention(self.scorers[n])]
            if not (own or able):
                raise UserError(
                    "no scorer served here has word->region attention (e.g. a TFLocal checkpoint)"
                )
            scorer = (own or able)[0]
        elif scorer not in able:
            raise UserError(
                f"scorer {scorer!r} has no word->region attention; those that have: {', '.join(able) or 'none'}"
            )
        sc = self.scorers[scorer]
        needs = {"patches", "patch_mask", "tokens", "token_mask", *sc.needs} - {"captions", "crops"}
        batch = pairs(
            image_inputs(self.cache, np.array([row]), needs), query_inputs(self.encoder, query, needs), 1
        ).batch
        words = self.encoder.encode_texts([query]).token_strings[0]
        with torch.inference_mode():
            if has_attention(sc):
                att = sc.head.word_region_attention(batch.to(sc.device)).float().cpu()
            else:
                att = token_patch_attention(batch.tokens, batch.patches, self.cache.attrs)
        n = int(batch.token_mask[0].sum())
        return scorer, list(words)[:n], att[0, :n].numpy()

    def heatmap_png(self, row: int, query: str, scorer: str | None = None) -> tuple[str, bytes]:
        """(scorer used, PNG of one panel per word over the image), drawn by the evaluation's
        :func:`~tflocal.evaluate.plots.alignment_plot`."""
        from tflocal.evaluate.plots import alignment_plot

        scorer, words, att = self.word_map(row, query, scorer)
        photo = None
        if self.images is not None:
            try:
                photo = self.images.open(str(self.cache.image_ids[row]))
            except LookupError:
                photo = None
        with self._plot_lock, tempfile.TemporaryDirectory(prefix="tflocal-heat-") as d:
            path = alignment_plot(
                att, words, self.cache.attrs["grid"], Path(d) / "h.png", image=photo, caption=query
            )
            return scorer, path.read_bytes()
