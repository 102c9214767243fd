"""Training units and candidate sets from a cache.

A *unit* is one positive caption ``t`` (``positive_index[t] == -1``, ``image_index[t] >= 0``) with
its image ``i = image_index[t]``, its generated hard negatives (texts with ``positive_index == t``)
and, for the text→image direction, its negative images (other images of the same non-empty
``group``, e.g. BiVLC's negative image or Winoground's second image).

A batch of B units becomes B image→text candidate sets, each laid out as::

    column 0            the positive caption
    columns 1..n_neg    hard negatives (sampled when there are more, masked when fewer)
    next k_inbatch      positive captions of *other* images of the batch, the k most similar
                        by global embedding (mined, so a cross-encoder never scores all B² pairs)

plus one text→image set ``[image, negative images...]`` per unit that has negative images.
In-batch mining compares the image's global embedding with the other captions' global
embeddings when the cache's ``global_space`` is ``"joint"``. For unaligned towers
(``global_space == "none"``) image and text globals are not comparable, so it compares the
unit's caption with the other captions (text–text cosine) instead. Captions of the same image
and captions with the same string as the positive are never used as in-batch negatives.

Reads are grouped per batch (sorted unique image and text indices; the reader merges them into
contiguous slices); :func:`epoch_plan` offers chunk-level shuffling for on-disk caches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from cache_tools.store.reader import chunk_shuffle, open_cache
from tflocal.errors import UserError
from tflocal.pairs.assemble import (
    ImageSide,
    TextSide,
    images_from_cache,
    map_tensors,
    pair_batch,
    texts_from_cache,
)
from tflocal.pairs.batch import PairBatch


@dataclass
class Units:
    """U training units. text, image: int64 [U]; negs: int64 [U, Nn] hard-negative texts (-1 =
    none); neg_images: int64 [U, Ni] negative images (-1 = none)."""

    text: np.ndarray
    image: np.ndarray
    negs: np.ndarray
    neg_images: np.ndarray

    def __len__(self) -> int:
        return len(self.text)

    def subset(self, index: np.ndarray) -> Units:
        return Units(self.text[index], self.image[index], self.negs[index], self.neg_images[index])

    @property
    def n_hard(self) -> np.ndarray:
        """Hard negatives per unit: int64 [U]."""
        return (self.negs >= 0).sum(axis=1)


def _padded_groups(keys: np.ndarray, values: np.ndarray, n_keys: int, cap: int) -> np.ndarray:
    """Group ``values`` by ``keys`` (both [M]) into an int64 [n_keys, min(max count, cap)] table, -1 padded."""
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    counts = np.bincount(keys, minlength=n_keys) if len(keys) else np.zeros(n_keys, np.int64)
    width = int(min(counts.max(initial=0), cap))
    out = np.full((n_keys, width), -1, dtype=np.int64)
    if width == 0:
        return out
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(keys)) - starts[keys]
    keep = rank < width
    out[keys[keep], rank[keep]] = values[keep]
    return out


def build_units(cache: Any, max_negs: int = 64, max_neg_images: int = 8) -> Units:
    """All units of a cache (see module docstring), in text order."""
    pos, img = np.asarray(cache.positive_index), np.asarray(cache.image_index)
    text = np.flatnonzero((pos == -1) & (img >= 0)).astype(np.int64)
    if len(text) == 0:
        raise UserError(
            f"cache {getattr(cache, 'path', '')} has no positive caption attached to an image: "
            "training needs (image, caption) pairs"
        )
    neg_t = np.flatnonzero(pos >= 0)
    negs_by_text = _padded_groups(pos[neg_t], neg_t.astype(np.int64), cache.n_texts, max_negs)
    group = np.asarray(cache.image_group).astype(str)
    in_group = np.flatnonzero(group != "")
    mates = np.full((cache.n_images, 0), -1, dtype=np.int64)
    if len(in_group):
        _, gid = np.unique(group[in_group], return_inverse=True)
        members = _padded_groups(gid, in_group.astype(np.int64), int(gid.max()) + 1, max_neg_images + 1)
        rows = members[gid]  # [G_img, W]: the images of each grouped image's group
        rows = np.where(rows == in_group[:, None], -1, rows)
        rows = -np.sort(-rows, axis=1)[:, :max_neg_images]  # drop self, keep -1 at the end
        mates = np.full((cache.n_images, rows.shape[1]), -1, dtype=np.int64)
        mates[in_group] = rows
        mates = mates[:, : int((mates >= 0).sum(axis=1).max(initial=0))]
    image = img[text].astype(np.int64)
    return Units(text=text, image=image, negs=negs_by_text[text], neg_images=mates[image])


def split_by_image(units: Units, val_fraction: float, seed: int) -> tuple[Units, Units]:
    """Hold out ``val_fraction`` of the images (and so every unit of those images). Returns (train, val)."""
    images = np.unique(units.image)
    rng = np.random.default_rng(seed)
    n_val = int(round(len(images) * val_fraction))
    if val_fraction > 0 and n_val == 0 and len(images) > 1:
        n_val = 1
    if n_val >= len(images):
        raise UserError(f"data.val_fraction={val_fraction} leaves no training image out of {len(images)}")
    val_images = rng.choice(images, size=n_val, replace=False)
    is_val = np.isin(units.image, val_images)
    return units.subset(np.flatnonzero(~is_val)), units.subset(np.flatnonzero(is_val))


def epoch_plan(
    n_units: int,
    batch_size: int,
    epoch: int,
    seed: int,
    shuffle_chunk: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
    world: int = 1,
    rank: int = 0,
) -> list[np.ndarray]:
    """The batches of one epoch: lists of unit indices. shuffle_chunk > 0: chunk-level shuffle
    (``cache_tools.store.reader.chunk_shuffle``, contiguous reads on disk); 0: a full permutation.
    With ``world`` processes each gets every world-th batch, and all get the same count."""
    if not shuffle:
        order = np.arange(n_units)
    elif shuffle_chunk > 0:
        order = chunk_shuffle(n_units, shuffle_chunk, seed=seed * 100_003 + epoch)
    else:
        order = np.random.default_rng([seed, epoch]).permutation(n_units)
    if drop_last and n_units >= batch_size:
        n_batches = n_units // batch_size
    else:
        n_batches = -(-n_units // batch_size)
    batches = [order[b * batch_size : (b + 1) * batch_size] for b in range(n_batches)]
    if world > 1:
        batches = batches[: len(batches) - len(batches) % world][rank::world]
    return batches


@dataclass
class CandidateBatch:
    """Candidate sets over the distinct images and texts of one batch.

    images: :class:`~tflocal.pairs.assemble.ImageSide` of NI images; texts:
    :class:`~tflocal.pairs.assemble.TextSide` of NT texts (fields a head does not need are None).
    pair_image, pair_text: long [N] indices into those; rows, cols: long [N] place of each pair
    in the score matrix [n_sets, width] (column 0 = the positive). Sets 0..n_i2t-1 are
    image→text, the rest text→image. hard_cols: the columns holding hard negatives (1..n_neg).
    """

    images: ImageSide
    texts: TextSide
    pair_image: torch.Tensor
    pair_text: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    n_sets: int
    width: int
    n_i2t: int
    n_neg: int

    # the sides' payload, by PairBatch field name: patches [NI, P, D_img], image_global [NI, D_gi],
    # tokens [NT, T, D_txt], token_mask [NT, T], text_global [NT, D_gt], layout fields [NT, ...]
    patches = property(lambda self: self.images.patches)
    image_global = property(lambda self: self.images.image_global)
    tokens = property(lambda self: self.texts.tokens)
    token_mask = property(lambda self: self.texts.token_mask)
    text_global = property(lambda self: self.texts.text_global)
    segments = property(lambda self: self.texts.segments)

    @property
    def n_pairs(self) -> int:
        return int(self.pair_image.shape[0])

    def _map(self, fn: Any) -> CandidateBatch:
        """A copy with ``fn`` applied to every tensor, the sides' included."""
        return replace(
            map_tensors(self, fn), images=map_tensors(self.images, fn), texts=map_tensors(self.texts, fn)
        )

    def to(self, device: torch.device | str) -> CandidateBatch:
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> CandidateBatch:
        """Page-locked copy (DataLoader ``pin_memory=True`` calls this) for asynchronous GPU copies."""
        return self._map(lambda t: t.pin_memory())

    def pairs(self, needs: Sequence[str] | None = None, dedup_images: bool = False) -> PairBatch:
        """The N pairs as a PairBatch (:func:`tflocal.pairs.assemble.pair_batch`)."""
        return pair_batch(self.images, self.texts, self.pair_image, self.pair_text, needs, dedup_images)

    def score_matrix(self, scores: torch.Tensor) -> torch.Tensor:
        """scores [N] -> [n_sets, width], -inf where a set has no candidate."""
        m = torch.full((self.n_sets, self.width), float("-inf"), dtype=scores.dtype, device=scores.device)
        m[self.rows, self.cols] = scores
        return m


def mine_inbatch(
    units: Units, cache: Any, k: int, sim_text: np.ndarray, sim_image: np.ndarray | None
) -> np.ndarray:
    """For each unit of a batch, the k other units whose positive caption is most similar to it.

    units: the batch (B units); sim_image: float32 [B, D] image globals of the units (joint
    spaces) or None (towers: use the caption globals sim_text [B, D] on both sides).
    Returns int64 [B, k] unit positions in the batch, -1 where fewer than k are eligible.
    """
    B = len(units)
    out = np.full((B, k), -1, dtype=np.int64)
    if k <= 0 or B < 2:
        return out
    t = sim_text / np.maximum(np.linalg.norm(sim_text, axis=1, keepdims=True), 1e-12)
    q = (
        t
        if sim_image is None
        else sim_image / np.maximum(np.linalg.norm(sim_image, axis=1, keepdims=True), 1e-12)
    )
    sim = q @ t.T  # [B, B]
    strings = np.asarray(cache.strings)[units.text]
    bad = (units.image[:, None] == units.image[None, :]) | (strings[:, None] == strings[None, :])
    sim = np.where(bad, -np.inf, sim)
    kk = min(k, B - 1)
    top = np.argsort(-sim, axis=1, kind="stable")[:, :kk]
    ok = np.take_along_axis(sim, top, axis=1) > -np.inf
    out[:, :kk] = np.where(ok, top, -1)
    return out


def make_batch(
    cache: Any,
    units: Units,
    *,
    n_neg: int,
    k_inbatch: int,
    needs: Sequence[str],
    t2i: bool = True,
    rng: np.random.Generator | None = None,
    max_text_tokens: int | None = None,
) -> CandidateBatch:
    """Candidate sets of one batch of units (see module docstring), read in grouped calls.

    n_neg: hard negatives per set (randomly chosen with ``rng`` when a unit has more; the first
    n_neg when rng is None); k_inbatch: mined in-batch captions; needs: the head's PairBatch fields.
    """
    B = len(units)
    negs = units.negs
    if rng is not None and negs.shape[1] > n_neg:
        keys = rng.random(negs.shape) + (negs < 0)  # real negatives first, in random order
        negs = np.take_along_axis(negs, np.argsort(keys, axis=1), axis=1)
    negs = negs[:, :n_neg]
    negs = np.pad(negs, ((0, 0), (0, n_neg - negs.shape[1])), constant_values=-1)
    text_g = cache.text_global(units.text)
    joint = cache.spec.joint_globals
    img_g_units = cache.image_global(units.image) if joint and k_inbatch > 0 else None
    mined = mine_inbatch(units, cache, k_inbatch, text_g, img_g_units)
    neg_imgs = units.neg_images if t2i else units.neg_images[:, :0]

    # candidate (set, column, image, text) for every real pair
    width = max(1 + n_neg + k_inbatch, 1 + neg_imgs.shape[1])
    cand_text = np.concatenate(
        [units.text[:, None], negs, np.where(mined >= 0, units.text[mined.clip(0)], -1)], axis=1
    )
    r, c = np.nonzero(cand_text >= 0)
    set_rows, set_cols, pair_img, pair_txt = [r], [c], [units.image[r]], [cand_text[r, c]]
    t2i_units = np.flatnonzero((neg_imgs >= 0).any(axis=1)) if neg_imgs.shape[1] else np.empty(0, np.int64)
    if len(t2i_units):
        cand_img = np.concatenate([units.image[t2i_units, None], neg_imgs[t2i_units]], axis=1)
        r2, c2 = np.nonzero(cand_img >= 0)
        set_rows.append(B + r2)
        set_cols.append(c2)
        pair_img.append(cand_img[r2, c2])
        pair_txt.append(units.text[t2i_units][r2])
    rows, cols = np.concatenate(set_rows), np.concatenate(set_cols)
    pair_img, pair_txt = np.concatenate(pair_img), np.concatenate(pair_txt)

    images, pair_image = np.unique(pair_img, return_inverse=True)
    texts, pair_text = np.unique(pair_txt, return_inverse=True)
    return CandidateBatch(
        images=images_from_cache(cache, images, needs),
        texts=texts_from_cache(cache, texts, needs, max_text_tokens),
        pair_image=torch.from_numpy(pair_image.astype(np.int64).reshape(-1)),
        pair_text=torch.from_numpy(pair_text.astype(np.int64).reshape(-1)),
        rows=torch.from_numpy(rows.astype(np.int64)),
        cols=torch.from_numpy(cols.astype(np.int64)),
        n_sets=B + len(t2i_units),
        width=width,
        n_i2t=B,
        n_neg=n_neg,
    )


class BatchDataset(torch.utils.data.Dataset):
    """Item k = the CandidateBatch of batch k of the current epoch plan (use with
    ``DataLoader(batch_size=None)``). The cache is opened lazily in each worker process.
    ``max_batches``: the most batches an epoch takes (the plan's first ones; None: all)."""

    def __init__(
        self,
        cache_or_path: Any,
        units: Units,
        *,
        batch_size: int,
        n_neg: int,
        k_inbatch: int,
        needs: Sequence[str],
        seed: int,
        t2i: bool = True,
        shuffle: bool = True,
        shuffle_chunk: int = 0,
        drop_last: bool = True,
        world: int = 1,
        rank: int = 0,
        max_text_tokens: int | None = None,
        max_batches: int | None = None,
    ):
        self._cache = cache_or_path
        self.max_batches = max_batches
        self.units = units
        self.batch_size, self.n_neg, self.k_inbatch, self.needs = batch_size, n_neg, k_inbatch, tuple(needs)
        self.seed, self.t2i, self.shuffle, self.shuffle_chunk = seed, t2i, shuffle, shuffle_chunk
        self.drop_last, self.world, self.rank, self.max_text_tokens = drop_last, world, rank, max_text_tokens
        self.epoch, self.start = 0, 0
        self.set_epoch(0)

    @property
    def cache(self) -> Any:
        if isinstance(self._cache, (str, bytes)) or hasattr(self._cache, "__fspath__"):
            self._cache = open_cache(self._cache)
        return self._cache

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Plan epoch ``epoch``, skipping its first ``start`` batches (resume inside an epoch)."""
        self.epoch, self.start = epoch, start
        self.plan = epoch_plan(
            len(self.units),
            self.batch_size,
            epoch,
            self.seed,
            self.shuffle_chunk,
            self.shuffle,
            self.drop_last,
            self.world,
            self.rank,
        )[: self.max_batches][start:]

    def batches_per_epoch(self) -> int:
        return len(
            epoch_plan(
                len(self.units),
                self.batch_size,
                0,
                self.seed,
                0,
                False,
                self.drop_last,
                self.world,
                self.rank,
            )[: self.max_batches]
        )

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, k: int | tuple[int, int, int]) -> CandidateBatch:
        """Batch ``k`` of the current plan; or a key ``(epoch, start, k)`` of :class:`PlanSampler`,
        which first plans that epoch here if this copy (a persistent worker's) has another."""
        if isinstance(k, tuple):
            epoch, start, k = k
            if (epoch, start) != (self.epoch, self.start):
                self.set_epoch(epoch, start)
        rng = np.random.default_rng([self.seed, self.epoch, self.start + k]) if self.shuffle else None
        return make_batch(
            self.cache,
            self.units.subset(self.plan[k]),
            n_neg=self.n_neg,
            k_inbatch=self.k_inbatch,
            needs=self.needs,
            t2i=self.t2i,
            rng=rng,
            max_text_tokens=self.max_text_tokens,
        )


def _first(x: Any) -> Any:
    return x


class PlanSampler(torch.utils.data.Sampler):
    """Keys ``(epoch, start, k)`` over the dataset's current plan, read in the main process each
    time an iteration begins, so workers that outlive an epoch follow :meth:`BatchDataset.set_epoch`."""

    def __init__(self, dataset: BatchDataset):
        self.dataset = dataset

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        d = self.dataset
        return iter([(d.epoch, d.start, k) for k in range(len(d.plan))])

    def __len__(self) -> int:
        return len(self.dataset.plan)


def make_loader(
    dataset: BatchDataset, num_workers: int = 0, pin_memory: bool = False, persistent: bool = False
) -> torch.utils.data.DataLoader:
    """A DataLoader yielding the dataset's CandidateBatches in plan order; iterate it again after
    ``dataset.set_epoch`` for the next epoch. ``persistent``: its worker processes live as long
    as the loader, keeping what they computed (each caption's layout is parsed once a run, not
    once an epoch: that parsing was ~10 s of a worker's time per quickstart epoch)."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=PlanSampler(dataset),
        num_workers=num_workers,
        collate_fn=_first,
        pin_memory=pin_memory,
        persistent_workers=persistent and num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )
