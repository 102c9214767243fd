"""Build a late-interaction index: run a head's image tower over a cache once and store the vectors.

Pass 1 reads the cache's patches in batches ([b, P, D_img]), runs the head's image side
(:mod:`.towers`: [b, P, d] unit vectors) and writes them to ``vectors.npy`` (float16 or
float32, memory-mapped). k-means over a sample of the vectors gives the centroids; pass 2
assigns every vector its centroid (``codes.npy`` [N, P]), writes the residual codes when the
storage is ``"residual"`` (then ``vectors.npy`` is removed) and the inverted lists (centroid ->
images). A head with a separable global path (``model.global_form: dual``) also gets its image
side stored ([N, d], ``globals.npy``). The folder is written under ``DIR.tmp`` and renamed when complete.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache_tools.infra.progress import progress as progress_bar
from tflocal.errors import UserError
from tflocal.retrieval.compress import train_codec
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
    vectors = None
    dtype = np.float32 if storage == "float32" else np.float16
    starts = range(0, n, batch_size)
    with torch.inference_mode():
        for s in progress_bar(
            starts, desc="index: image tower", unit="batch", disable=not progress or len(starts) < 5
        ):
            rows = np.arange(s, min(n, s + batch_size))
            p = torch.from_numpy(np.ascontiguousarray(cache.patches(rows))).to(device)
            v = (
                tower.image(head, p, torch.ones(p.shape[:2], dtype=torch.bool, device=device))
                .float()
                .cpu()
                .numpy()
            )
            if vectors is None:
                vectors = np.lib.format.open_memmap(tmp / "vectors.npy", "w+", dtype, (n, *v.shape[1:]))
            vectors[s : s + v.shape[0]] = v
    vectors.flush()
    glob = separable_global(head)
    if glob is not None:  # the separable global path's image side: [N, d] once, as the regions
        gv = None
        with torch.inference_mode():
            for s in range(0, n, 4096):
                rows = np.arange(s, min(n, s + 4096))
                g = glob.encode_image_global(torch.from_numpy(cache.image_global(rows)).to(device))
                if gv is None:
                    gv = np.lib.format.open_memmap(tmp / "globals.npy", "w+", dtype, (n, g.shape[1]))
                gv[s : s + g.shape[0]] = g.float().cpu().numpy()
        gv.flush()
        del gv
    t_tower = time.perf_counter() - t0
    P, d = vectors.shape[1:]
    n_vec = n * P
    n_centroids = int(n_centroids or default_centroids(n_vec))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n_vec, min(n_vec, max(sample_vectors, 4 * n_centroids)), replace=False))
    sample = np.asarray(vectors.reshape(n_vec, d)[pick], dtype=np.float32)
    codec = train_codec(sample, n_centroids, nbits if storage == "residual" else 0, seed=seed)
    np.savez(tmp / "codec.npz", **codec.arrays())
    codes = np.lib.format.open_memmap(tmp / "codes.npy", "w+", np.int32, (n, P))
    residuals = None
    if storage == "residual":
        nb = (d * nbits + 7) // 8
        residuals = np.lib.format.open_memmap(tmp / "residuals.npy", "w+", np.uint8, (n, P, nb))
    block = max(1, 65536 // P)
    for s in range(0, n, block):
        x = np.asarray(vectors[s : s + block], dtype=np.float32).reshape(-1, d)
        c, r = codec.encode(x)
        codes[s : s + block] = c.reshape(-1, P)
        if residuals is not None:
            residuals[s : s + block] = r.reshape(-1, P, r.shape[1])
    codes.flush()
    del vectors
    if residuals is not None:
        residuals.flush()
        (tmp / "vectors.npy").unlink()
    write_ivf(tmp, np.load(tmp / "codes.npy", mmap_mode="r"), codec.centroids.shape[0])
    write_meta(
        tmp,
        {
            "head": type(head).__name__,
            "scorer": name,
            "checkpoint": checkpoint,
            "fingerprint": fingerprint(head),
            "cache": str(getattr(cache, "path", "")),
            "cache_signature": plain_signature(cache.attrs),
            "image_ids_sha256": ids_digest(cache.image_ids),
            "n_images": n,
            "n_patches": int(P),
            "dim": int(d),
            "storage": storage,
            "nbits": int(codec.nbits),
            "n_centroids": int(codec.centroids.shape[0]),
            "seconds_image_tower": round(t_tower, 2),
            "seconds_total": round(time.perf_counter() - t0, 2),
        },
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return VectorStore(out)
