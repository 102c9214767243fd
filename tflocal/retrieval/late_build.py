"""Build a late-interaction index: run a head's image tower over a cache once and store the vectors.

Pass 1 reads the cache's patches in batches ([b, P, D_img]), runs the head's image side
(:mod:`.head_sides`: [b, P, d] unit vectors) and writes them to ``vectors.npy`` (float16 or
float32, memory-mapped). k-means over a sample of the vectors gives the centroids; pass 2
assigns every vector its centroid (``codes.npy`` [N, P]), writes the residual codes when the
storage is ``"residual"`` (then ``vectors.npy`` is removed) and the inverted lists (centroid ->
images). A head with a separable global path (``model.global_form: dual``) also gets its image
side stored ([N, d], ``globals.npy``). The folder is written under ``DIR.tmp`` and renamed when complete.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache_tools.infra.progress import progress as progress_bar
from tflocal.errors import UserError
from tflocal.retrieval.compress import Codec, train_codec
from tflocal.retrieval.head_sides import fingerprint, separable_global, tower_of
from tflocal.retrieval.store import STORAGES, VectorStore, ids_digest, plain_signature, write_ivf, write_meta


def default_centroids(n_vectors: int) -> int:
    """A power of two near 4 * sqrt(n_vectors) (ColBERTv2 uses 16 *; fewer keeps k-means cheap on CPUs)."""
    return int(2 ** max(4, int(np.floor(np.log2(4 * np.sqrt(max(1, n_vectors)))))))


def build_late_index(
    cache: Any,
    head: torch.nn.Module,
    out: str | Path,
    storage: str = "float16",
    nbits: int = 2,
    n_centroids: int | None = None,
    batch_size: int = 256,
    sample_vectors: int = 262_144,
    device: str = "cpu",
    name: str = "",
    checkpoint: str = "",
    progress: bool = True,
    seed: int = 0,
) -> VectorStore:
    """Index every image of ``cache`` under ``head`` (a SegmentHead, MaxSimHead or another
    registered tower) into folder ``out``; returns it opened. ``storage``: "float16" |
    "float32" (vectors kept exactly) | "residual" (centroid id + ``nbits`` bits per dimension)."""
    if storage not in STORAGES:
        raise UserError(f"index storage {storage!r} unknown; choices: {', '.join(STORAGES)}")
    tower = tower_of(head, name)
    out = Path(out)
    if out.exists() and not (out / "meta.json").is_file() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not a tflocal index: choose another --out folder")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    head = head.to(device).eval()
    n, t0 = cache.n_images, time.perf_counter()
    if n == 0:
        raise UserError(f"cache {cache.path} has no images to index")
    plan = _IndexPlan(
        cache=cache,
        head=head,
        tower=tower,
        tmp=tmp,
        n=n,
        dtype=np.float32 if storage == "float32" else np.float16,
        storage=storage,
        nbits=nbits,
        batch_size=batch_size,
        device=device,
        progress=progress,
        seed=seed,
        name=name,
        checkpoint=checkpoint,
        t0=t0,
    )
    vectors = _image_vectors(plan)
    _global_vectors(plan)
    t_tower = time.perf_counter() - t0
    P, d = vectors.shape[1:]
    codec = _fit_codec(plan, vectors, n_centroids, sample_vectors)
    _write_codes(plan, vectors, codec)
    del vectors
    if storage == "residual":
        (tmp / "vectors.npy").unlink()
    write_ivf(tmp, np.load(tmp / "codes.npy", mmap_mode="r"), codec.centroids.shape[0])
    write_meta(tmp, _meta(plan, codec, P, d, t_tower))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return VectorStore(out)


@dataclass(frozen=True)
class _IndexPlan:
    """One index build: the ``n`` images of ``cache`` through ``head`` (already on ``device``,
    in eval mode) and its image ``tower``, ``batch_size`` images at a time, written under ``tmp``.

    ``dtype`` is that of the stored vectors (``vectors.npy`` [n, P, d], ``globals.npy`` [n, d]):
    float32 for ``storage`` "float32", else float16; ``nbits``: residual bits per dimension.
    """

    cache: Any
    head: torch.nn.Module
    tower: Any
    tmp: Path
    n: int
    dtype: type
    storage: str
    nbits: int
    batch_size: int
    device: str
    progress: bool
    seed: int
    name: str
    checkpoint: str
    t0: float


def _image_vectors(plan: _IndexPlan) -> np.ndarray:
    """Pass 1: the tower's vectors of every image, written to ``vectors.npy``: memmap [n, P, d]."""
    n, batch_size, device = plan.n, plan.batch_size, plan.device
    vectors = None
    starts = range(0, n, batch_size)
    with torch.inference_mode():
        for s in progress_bar(
            starts, desc="index: image tower", unit="batch", disable=not plan.progress or len(starts) < 5
        ):
            rows = np.arange(s, min(n, s + batch_size))
            p = torch.from_numpy(np.ascontiguousarray(plan.cache.patches(rows))).to(device)
            v = (
                plan.tower.image(plan.head, p, torch.ones(p.shape[:2], dtype=torch.bool, device=device))
                .float()
                .cpu()
                .numpy()
            )
            if vectors is None:
                vectors = np.lib.format.open_memmap(
                    plan.tmp / "vectors.npy", "w+", plan.dtype, (n, *v.shape[1:])
                )
            vectors[s : s + v.shape[0]] = v
    vectors.flush()
    return vectors


def _global_vectors(plan: _IndexPlan) -> None:
    """The separable global path's image side, once per image as the regions: ``globals.npy`` [n, d]
    (nothing when the head has no such path)."""
    glob = separable_global(plan.head)
    if glob is None:
        return
    n = plan.n
    gv = None
    with torch.inference_mode():
        for s in range(0, n, 4096):
            rows = np.arange(s, min(n, s + 4096))
            g = glob.encode_image_global(torch.from_numpy(plan.cache.image_global(rows)).to(plan.device))
            if gv is None:
                gv = np.lib.format.open_memmap(plan.tmp / "globals.npy", "w+", plan.dtype, (n, g.shape[1]))
            gv[s : s + g.shape[0]] = g.float().cpu().numpy()
    gv.flush()
    del gv


def _fit_codec(plan: _IndexPlan, vectors: np.ndarray, n_centroids: int | None, sample_vectors: int) -> Codec:
    """k-means over a sample of ``vectors`` [n, P, d] (at least ``4 * n_centroids`` of them); the codec is
    saved to ``codec.npz``. ``n_centroids`` None: :func:`default_centroids`."""
    n_vec = plan.n * vectors.shape[1]
    d = vectors.shape[2]
    n_centroids = int(n_centroids or default_centroids(n_vec))
    rng = np.random.default_rng(plan.seed)
    pick = np.sort(rng.choice(n_vec, min(n_vec, max(sample_vectors, 4 * n_centroids)), replace=False))
    sample = np.asarray(vectors.reshape(n_vec, d)[pick], dtype=np.float32)
    codec = train_codec(sample, n_centroids, plan.nbits if plan.storage == "residual" else 0, seed=plan.seed)
    np.savez(plan.tmp / "codec.npz", **codec.arrays())
    return codec


def _write_codes(plan: _IndexPlan, vectors: np.ndarray, codec: Codec) -> None:
    """Pass 2: every vector's centroid (``codes.npy`` [n, P] int32) and, for storage "residual", its
    residual code (``residuals.npy`` [n, P, ceil(d * nbits / 8)] uint8)."""
    n, P, d = vectors.shape
    codes = np.lib.format.open_memmap(plan.tmp / "codes.npy", "w+", np.int32, (n, P))
    residuals = None
    if plan.storage == "residual":
        nb = (d * plan.nbits + 7) // 8
        residuals = np.lib.format.open_memmap(plan.tmp / "residuals.npy", "w+", np.uint8, (n, P, nb))
    block = max(1, 65536 // P)
    for s in range(0, n, block):
        x = np.asarray(vectors[s : s + block], dtype=np.float32).reshape(-1, d)
        c, r = codec.encode(x)
        codes[s : s + block] = c.reshape(-1, P)
        if residuals is not None:
            residuals[s : s + block] = r.reshape(-1, P, r.shape[1])
    codes.flush()
    if residuals is not None:
        residuals.flush()


def _meta(plan: _IndexPlan, codec: Codec, n_patches: int, dim: int, t_tower: float) -> dict[str, Any]:
    """What ``meta.json`` records about the build."""
    cache, head = plan.cache, plan.head
    return {
        "head": type(head).__name__,
        "scorer": plan.name,
        "checkpoint": plan.checkpoint,
        "fingerprint": fingerprint(head),
        "cache": str(getattr(cache, "path", "")),
        "cache_signature": plain_signature(cache.attrs),
        "image_ids_sha256": ids_digest(cache.image_ids),
        "n_images": plan.n,
        "n_patches": int(n_patches),
        "dim": int(dim),
        "storage": plan.storage,
        "nbits": int(codec.nbits),
        "n_centroids": int(codec.centroids.shape[0]),
        "seconds_image_tower": round(t_tower, 2),
        "seconds_total": round(time.perf_counter() - plan.t0, 2),
    }
