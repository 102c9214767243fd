"""PLAID-style late-interaction retrieval over a whole corpus, scored exactly by the head.

For one caption:

1. **query vectors** q [M, d]: its object-phrase vectors (``segments``) or token vectors
   (MaxSim), from the head's text side (:mod:`.head_sides`);
2. **candidate generation**: centroid scores S = q @ centroids.T [M, C]; each query vector
   probes its ``nprobe`` best centroids, whose inverted lists give the candidate images;
3. **pruning** (PLAID's centroid interaction): each candidate's approximate score is the mean
   over query vectors of the best centroid score among its probed centroids (a query vector
   that probed none of the image's centroids counts the best unprobed score, an upper bound);
   the ``refine * n_candidates`` best go on;
4. **centroid interaction**: each of those scores mean over query vectors of the best centroid
   score over *all* its vectors (``codes`` [n, P]: S[:, codes] [M, n, P], max over P); the
   ``n_candidates`` best are kept;
5. **exact scoring**: the head's own ``forward`` on the kept candidates, its image tower
   replaced by the stored vectors (:func:`.towers.score_stored`) and its text tower run once
   per query (the states of step 1 are reused); the candidates go through in as few forwards as
   ``score_bytes`` allows (one, at 1,024 candidates of 49 x 128-d); the top ``k`` are returned.

``extra`` candidates (e.g. a global first stage's top k) join step 5: fusion of both stages.
A head with a separable global path (``model.global_form: dual``) has its global term searched
over every image (the index stores its image side, d floats per image), since candidate
generation from phrase vectors cannot see it: its ``global_candidates`` best images join the
pool of step 4, and step 4 keeps the best by ``w_local * centroid score + w_global * global
term`` (:class:`GlobalPrior`, the weights the head mixes them with).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tflocal.errors import UserError
from tflocal.pairs.assemble import ImageSide, TextSide, encode_text_side, images_from_cache, texts_from_cache
from tflocal.retrieval.head_sides import image_needs, score_stored, separable_global, text_needs, tower_of
from tflocal.retrieval.store import VectorStore
from tflocal.scoring.head import check_caption_length


@dataclass
class GlobalPrior:
    """A separable global path's term for one caption: ``rows`` [k] where it is highest, the
    caption's vector ``b`` [d] (the term of image r is ``stored_r · b``), and the weights the
    head mixes it with the phrase term the centroid stages estimate."""

    rows: np.ndarray
    b: torch.Tensor
    store: VectorStore
    w_local: float
    w_global: float

    def values(self, rows: np.ndarray) -> np.ndarray:
        """The term's exact values [n] for sorted image ``rows`` [n]."""
        return (self.store.global_vectors(rows) @ self.b).numpy()


class LateIndex:
    """A :class:`VectorStore` bound to the head that built it (refused otherwise) and its cache.

    scorer: a :class:`~tflocal.scoring.HeadScorer` (its ``head``, ``cache`` and ``encoder``).
    nprobe: centroids probed per query vector; n_candidates: images scored exactly; refine:
    ``refine * n_candidates`` images pass the probed-centroid pruning to the centroid interaction
    over all their vectors (1: skip that stage). Exact scoring runs the head on up to
    ``score_bytes`` of float32 image vectors per forward (at least the scorer's ``batch_size``
    images): a query's candidates in one forward, rather than in many small ones.
    global_candidates: with a separable global path, the images of best global term that are
    also scored exactly (None: ``n_candidates // 2``; 0: none). cache: the cache whose images
    the store holds (None: the scorer's; a shard file of it for one index of a
    :class:`~tflocal.retrieval.late_shards.ShardedLateIndex`).
    """

    def __init__(
        self,
        store: VectorStore | str,
        scorer: Any,
        nprobe: int = 8,
        n_candidates: int = 256,
        refine: int = 4,
        score_bytes: int = 64 << 20,
        global_candidates: int | None = None,
        cache: Any = None,
    ):
        self.store = store if isinstance(store, VectorStore) else VectorStore(store)
        self.scorer, self.head = scorer, getattr(scorer, "run_head", scorer.head)  # forwards run this copy
        self.cache = scorer.cache if cache is None else cache
        self.tower = tower_of(self.head, scorer.name)
        self.store.check(scorer.head, self.cache, scorer.name)  # the float32 weights it was built with
        self.nprobe, self.n_candidates, self.refine = int(nprobe), int(n_candidates), int(refine)
        self._centroids = torch.from_numpy(self.store.codec.centroids)
        per_image = 4 * int(self.store.meta["n_patches"]) * int(self.store.meta["dim"])
        self.score_batch = max(int(scorer.batch_size), int(score_bytes) // max(1, per_image))
        self._text_needs = text_needs(self.head)
        self._image_needs = image_needs(self.head)
        self._globals: torch.Tensor | None = None  # [N, D_gi], read by _image_inputs
        self._separable = separable_global(self.head) if self.store.has_globals else None
        self.global_candidates = global_candidates  # None: n_candidates // 2 (when separable)

    # -- text side ---------------------------------------------------------------------------
    def encode_caption(self, caption: str) -> TextSide:
        """A new caption, encoded with the cache's encoder (as :meth:`Scorer.score_text_query`)."""
        return encode_text_side(self.scorer.encoder, [caption], self._text_needs)

    def cached_caption(self, row: int) -> TextSide:
        """Caption ``row`` of the cache (its stored tokens)."""
        return texts_from_cache(self.cache, np.array([row]), self._text_needs)

    def _check_length(self, texts: TextSide) -> None:
        """The scorer's one-line UserError for a caption longer than the head was trained for."""
        check_caption_length(self.head, self.scorer.name, texts.token_mask)

    # -- the stages --------------------------------------------------------------------------
    def text_states(self, texts: TextSide) -> torch.Tensor | None:
        """TextSide of NT -> the head's text tower states [NT, T, d] on the scorer's device
        (None: the head has no text tower). Computed once per query, read by both stages."""
        self._check_length(texts)
        if self.tower.text is None:
            return None
        with torch.inference_mode(), self.scorer.autocast():
            return self.tower.text(self.head, texts.to(self.scorer.device))

    def query_vectors(self, texts: TextSide, states: torch.Tensor | None = None) -> torch.Tensor:
        """TextSide of 1 -> unit query vectors [M, d] (``states``: :meth:`text_states` of it)."""
        if states is None:
            self._check_length(texts)
        with torch.inference_mode(), self.scorer.autocast():
            return self.tower.query(self.head, texts.to(self.scorer.device), states).float().cpu()

    def candidates(self, q: torch.Tensor, prior: GlobalPrior | None = None) -> tuple[np.ndarray, np.ndarray]:
        """q [M, d] -> (image rows [n] int64, approximate scores [n]), best first, n <= n_candidates.
        ``prior``: a separable global term (:meth:`global_prior`): its best rows join the pool
        before the centroid interaction, and the final cut ranks ``w_local * approx + w_global *
        its exact value``, as the head mixes the two."""
        S = (q @ self._centroids.T).numpy()  # [M, C]
        M, C = S.shape
        nprobe = min(self.nprobe, C)
        if nprobe < C:  # the nprobe best centroids of each query vector, and the next best score
            part = np.argpartition(-S, nprobe, axis=1)
            probed, floor = part[:, :nprobe], S[np.arange(M), part[:, nprobe]]
        else:
            probed, floor = np.tile(np.arange(C), (M, 1)), np.full(M, -1.0, np.float32)
        off, lists, n = self.store.ivf_offsets, self.store.ivf_images, self.store.n_images
        # sum over query vectors: the floor of every query vector, plus (best - floor) where
        # probed. Dense [N] buffers instead of sorting the (image, query vector) pairs.
        gain, best = np.zeros(n, np.float32), np.zeros(n, np.float32)
        seen = np.zeros(n, bool)
        for m in range(M):
            parts = [lists[off[c] : off[c + 1]] for c in probed[m]]
            for c, part in zip(probed[m], parts):
                best[part] = np.maximum(best[part], S[m, c] - floor[m])  # >= 0: probed beat the floor
            touched = np.concatenate(parts) if parts else np.zeros(0, np.int32)
            gain[touched] += best[touched]  # repeated rows add once (fancy-index assignment)
            best[touched] = 0
            seen[touched] = True
        uimg = np.flatnonzero(seen)
        if uimg.size == 0 and prior is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        approx = (floor.sum() + gain[uimg]) / M
        keep = np.argsort(-approx, kind="stable")[: self.refine * self.n_candidates]
        uimg, approx = uimg[keep], approx[keep].astype(np.float32)
        if prior is not None:  # the global term's best rows join; every row gets the interaction
            uimg = np.union1d(uimg, prior.rows)
        if (self.refine > 1 and uimg.size > self.n_candidates) or prior is not None:
            # centroid interaction over all of each image's vectors: mean_m max_p S[m, code[p]]
            rows = np.sort(uimg)
            codes = torch.from_numpy(np.asarray(self.store.codes[rows], dtype=np.int64))  # [n, P]
            ST = torch.from_numpy(np.ascontiguousarray(S.T))  # [C, M]: one row gathered per code
            full = ST.index_select(0, codes.reshape(-1)).view(*codes.shape, M).amax(1).mean(1).numpy()  # [n]
            if prior is not None:
                full = prior.w_local * full + prior.w_global * prior.values(rows)
            keep = np.argsort(-full, kind="stable")[: self.n_candidates]
            uimg, approx = rows[keep], full[keep]
        return uimg, approx[: self.n_candidates]

    def global_prior(self, texts: TextSide) -> GlobalPrior | None:
        """With a separable global path: its term for this caption (the caption's global vector
        against the stored ones), its ``global_candidates`` best rows (a bfloat16 scan of all
        stored vectors) and the weights the head mixes it with; else None."""
        k = self.n_candidates // 2 if self.global_candidates is None else int(self.global_candidates)
        weights = self.tower.estimate(self.head) if self.tower.estimate is not None else None
        if self._separable is None or k <= 0 or texts.text_global is None or weights is None:
            return None
        with torch.inference_mode(), self.scorer.autocast():
            b = self._separable.encode_text_global(texts.text_global[:1].to(self.scorer.device))
        b = b[0].float().cpu()
        return GlobalPrior(self.store.search_globals(b, k), b, self.store, *weights)

    def _image_inputs(self, rows: np.ndarray) -> ImageSide:
        """Image inputs the head reads besides the stored vectors (e.g. image_global) of sorted
        ``rows``; the cache's globals are held in RAM once read, when under 1 GiB."""
        if not self._image_needs or self.store.has_globals:
            return ImageSide()  # nothing else, or the global path's image side is stored
        if self._image_needs == ("image_global",):
            if self._globals is None and self.store.n_images * self.cache.spec.global_image_dim * 4 <= 2**30:
                self._globals = torch.from_numpy(self.cache.image_global(np.arange(self.store.n_images)))
            if self._globals is not None:
                return ImageSide(image_global=self._globals[torch.from_numpy(rows)])
        return images_from_cache(self.cache, rows, self._image_needs)

    def score(
        self, texts: TextSide, image_rows: Sequence[int] | np.ndarray, states: torch.Tensor | None = None
    ) -> np.ndarray:
        """Exact scores [K] of one caption against images image_rows [K], from stored vectors.
        ``states``: :meth:`text_states` of the caption when already computed."""
        rows = np.asarray(image_rows, dtype=np.int64).reshape(-1)
        out = np.empty(rows.size, np.float32)
        order = np.argsort(rows, kind="stable")  # read in row order (page cache), write back in place
        srt, bs, dev = rows[order], self.score_batch, self.scorer.device
        texts = texts.to(dev)
        with torch.inference_mode(), self.scorer.autocast():
            states = self.text_states(texts) if states is None else states
            for s in range(0, rows.size, bs):
                r = srt[s : s + bs]
                v = self.store.vectors(r).to(dev)
                idx = torch.arange(r.size, device=dev)
                g = self.store.global_vectors(r)
                sc = score_stored(
                    self.head,
                    v,
                    texts,
                    idx,
                    torch.zeros_like(idx),
                    self._image_inputs(r).to(dev),
                    states,
                    None if g is None else g.to(dev),
                )
                out[order[s : s + r.size]] = sc.float().cpu().numpy()
        return out

    def search(
        self,
        texts: TextSide | str,
        k: int = 10,
        extra: np.ndarray | None = None,
        states: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """One caption (a string or a TextSide of 1) -> (image rows [k], exact scores [k],
        number of images scored exactly). ``extra``: more candidate rows scored exactly (fusion).
        ``states``: :meth:`text_states` of the caption when already computed."""
        if isinstance(texts, str):
            texts = self.encode_caption(texts)
        states = self.text_states(texts) if states is None else states
        ids, _ = self.candidates(self.query_vectors(texts, states), self.global_prior(texts))
        if extra is not None:
            extra = np.asarray(extra, dtype=np.int64).reshape(-1)
            ids = np.unique(np.concatenate([ids, extra[extra >= 0]]))
        if ids.size == 0:
            return ids, np.zeros(0, np.float32), 0
        s = self.score(texts, ids, states)
        order = np.argsort(-s, kind="stable")[:k]
        return ids[order], s[order], int(ids.size)

    def exhaustive(self, texts: TextSide, k: int = 10, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Brute force: the head's exact score against every image -> (rows [k], scores [k])."""
        if self.store.n_images == 0:
            raise UserError(f"index {self.store.path} is empty")
        states = self.text_states(texts)
        s = np.concatenate(
            [
                self.score(texts, np.arange(a, min(a + block, self.store.n_images)), states)
                for a in range(0, self.store.n_images, block)
            ]
        )
        order = np.argsort(-s, kind="stable")[:k]
        return order.astype(np.int64), s[order]


def open_late_index(path: str, scorer: Any, **kwargs: Any) -> Any:
    """``LateIndex(VectorStore(path), scorer, **kwargs)``: refuses another checkpoint or cache.
    A folder of per-shard indexes (``shards.json``, ``tflocal index --per-shard``) opens as a
    :class:`~tflocal.retrieval.late_shards.ShardedLateIndex` with the same search."""
    from tflocal.retrieval.late_shards import MANIFEST, ShardedLateIndex

    if (Path(path) / MANIFEST).is_file():
        return ShardedLateIndex(path, scorer, **kwargs)
    return LateIndex(VectorStore(path), scorer, **kwargs)
