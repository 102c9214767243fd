"""The on-disk late-interaction index of one cache under one head: a folder of plain arrays.

::

    DIR/meta.json       format "tflocal-index", version, head, scorer, checkpoint, fingerprint
                        (sha256 of the head's weights and config), cache, cache_signature,
                        image_ids_sha256, n_images, n_patches, dim, storage, nbits, n_centroids
    DIR/vectors.npy     [N, P, d] float16 | float32 image vectors (storage "float16"/"float32")
    DIR/residuals.npy   [N, P, d*nbits/8] uint8 residual codes (storage "residual")
    DIR/globals.npy     [N, d] the image side of a separable global path (``global_form: dual``)
    DIR/codes.npy       [N, P] int32 nearest centroid of every vector (always)
    DIR/codec.npz       centroids [C, d], bucket cutoffs / weights, nbits (:mod:`.compress`)
    DIR/ivf.npz         offsets int64 [C + 1], images int32 [L]: the images with at least one
                        vector in centroid c are images[offsets[c]:offsets[c + 1]] (sorted)

``.npy`` files are memory-mapped, so reading candidates costs page-cache reads of their rows.
An index is tied to the head it was computed with: :meth:`VectorStore.check` refuses another
checkpoint (different weights) or another cache.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cache_tools.store.schema import encoder_signature
from tflocal.errors import UserError
from tflocal.retrieval.compress import Codec
from tflocal.retrieval.head_sides import fingerprint

FORMAT = "tflocal-index"
VERSION = 1
STORAGES = ("float16", "float32", "residual")


def _json(o: Any) -> Any:
    return o.tolist() if hasattr(o, "tolist") else str(o)


def plain_signature(attrs: Any) -> dict[str, Any]:
    """The cache's encoder signature as plain JSON values (what meta.json records)."""
    return json.loads(json.dumps(encoder_signature(attrs), default=_json))


def ids_digest(image_ids: Any) -> str:
    """sha256 of the cache's image ids in row order (the index's rows are the cache's rows)."""
    h = hashlib.sha256()
    for i in image_ids:
        h.update(str(i.decode() if isinstance(i, bytes) else i).encode() + b"\0")
    return h.hexdigest()


def _map_tensor(array: np.ndarray) -> torch.Tensor:
    """A read-only memory-mapped array as a tensor over the same memory (no copy; never written
    through, so torch's warning about a non-writable array is silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


class VectorStore:
    """An index folder opened read-only (see module docstring). ``meta``: the meta.json dict."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise UserError(
                f"{self.path} is not a tflocal index (no meta.json): build one with "
                "`tflocal index --cache CACHE --scorer CKPT --out DIR`"
            )
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT or int(self.meta.get("version", -1)) != VERSION:
            raise UserError(
                f"{self.path} is not a version-{VERSION} tflocal index: rebuild it with `tflocal index`"
            )
        self.storage = self.meta["storage"]
        self.codes = np.load(self.path / "codes.npy", mmap_mode="r")
        with np.load(self.path / "codec.npz") as z:
            self.codec = Codec.from_arrays(dict(z))
        with np.load(self.path / "ivf.npz") as z:
            self.ivf_offsets, self.ivf_images = z["offsets"], z["images"]
        name = "residuals.npy" if self.storage == "residual" else "vectors.npy"
        self._data = np.load(self.path / name, mmap_mode="r")
        self._view: torch.Tensor | None = None  # _data as a tensor, made when first read
        g = self.path / "globals.npy"
        self._globals = np.load(g, mmap_mode="r") if g.is_file() else None  # [N, d], memory-mapped
        self._globals_view: torch.Tensor | None = None
        self._globals_bf16: torch.Tensor | None = None  # for search_globals, made when first used

    @property
    def n_images(self) -> int:
        return int(self.meta["n_images"])

    def vectors(self, rows: np.ndarray) -> torch.Tensor:
        """Image rows [U] -> their stored vectors float32 [U, P, d] (decoded when compressed)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size > 1 and bool((rows[1:] < rows[:-1]).any()):
            # sorted reads are kinder to the page cache; the rows come back in the order asked
            order = np.argsort(rows, kind="stable")
            return self.vectors(rows[order])[torch.from_numpy(np.argsort(order, kind="stable"))]
        if self.storage == "residual":
            data = self.codec.decode(np.asarray(self.codes[rows]), self._data[rows])
            return torch.from_numpy(data).float()
        # torch's gather and float16 -> float32 conversion run multi-threaded over the memory
        # map, numpy's fancy index in one thread
        return self._tensor().index_select(0, torch.from_numpy(rows)).float()

    @property
    def has_globals(self) -> bool:
        """Whether the index stores a separable global path's image side (``globals.npy``)."""
        return self._globals is not None

    def global_vectors(self, rows: np.ndarray) -> torch.Tensor | None:
        """Image rows [U] -> the stored image side of a separable global path, float32 [U, d];
        None when the index has none."""
        if self._globals is None:
            return None
        if self._globals_view is None:
            self._globals_view = _map_tensor(self._globals)
        idx = torch.from_numpy(np.asarray(rows, dtype=np.int64).reshape(-1))
        return self._globals_view.index_select(0, idx).float()

    def search_globals(self, query: torch.Tensor, k: int) -> np.ndarray:
        """query [d] -> the rows of the k stored global vectors of highest dot product (best
        first). Over a bfloat16 copy held in RAM (2 d bytes per image): the scan is memory-bound,
        so half the bytes of float32 make it faster, and candidates are scored exactly afterwards."""
        if self._globals is None or k <= 0:
            return np.zeros(0, np.int64)
        if self._globals_bf16 is None:
            self._globals_bf16 = torch.from_numpy(np.asarray(self._globals, dtype=np.float32)).bfloat16()
        s = F.linear(self._globals_bf16, query.reshape(1, -1).to(torch.bfloat16))[:, 0]  # [N]
        return torch.topk(s.float(), min(int(k), s.shape[0])).indices.numpy().astype(np.int64)

    def _tensor(self) -> torch.Tensor:
        """The stored vectors [N, P, d] as a tensor over the (read-only) memory map, no copy."""
        if self._view is None:
            self._view = _map_tensor(self._data)
        return self._view

    def bytes_per_image(self) -> float:
        """Index bytes on disk per image (vectors or residuals + codes + inverted lists + codec)."""
        files = [
            "codes.npy",
            "codec.npz",
            "ivf.npz",
            "residuals.npy" if self.storage == "residual" else "vectors.npy",
        ]
        files += ["globals.npy"] if (self.path / "globals.npy").is_file() else []
        return sum((self.path / f).stat().st_size for f in files) / max(1, self.n_images)

    def check(self, head: torch.nn.Module, cache: Any = None, name: str = "") -> None:
        """Refuse a head with other weights than the index's, or a cache other than its own."""
        if fingerprint(head) != self.meta["fingerprint"]:
            raise UserError(
                f"index {self.path} was built with {self.meta.get('checkpoint') or self.meta.get('scorer')!r}, not "
                f"with {name or 'this head'} (weights differ): rebuild it with `tflocal index --scorer ... --out {self.path}`"
            )
        if cache is None:
            return
        if plain_signature(cache.attrs) != self.meta["cache_signature"] or cache.n_images != self.n_images:
            raise UserError(
                f"index {self.path} was built over cache {self.meta['cache']} ({self.n_images} images), not over "
                f"{getattr(cache, 'path', 'this cache')} ({cache.n_images} images): rebuild it for this cache"
            )
        if cache.n_images <= 2_000_000 and ids_digest(cache.image_ids) != self.meta["image_ids_sha256"]:
            raise UserError(
                f"index {self.path} holds other images than cache {getattr(cache, 'path', '')}: rebuild it for this cache"
            )


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    meta = {"format": FORMAT, "version": VERSION, **meta}
    tmp = path / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, default=_json))
    tmp.replace(path / "meta.json")


def write_ivf(path: Path, codes: np.ndarray, n_centroids: int, block: int = 65536) -> None:
    """Inverted lists centroid -> sorted distinct images from codes [N, P] (see module docstring)."""
    keys = []
    for s in range(0, codes.shape[0], block):
        c = np.asarray(codes[s : s + block], dtype=np.int64)
        img = np.arange(s, s + c.shape[0], dtype=np.int64)[:, None]
        keys.append(np.unique((c * codes.shape[0] + img).ravel()))
    k = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    cent, img = k // codes.shape[0], (k % codes.shape[0]).astype(np.int32)
    offsets = np.zeros(n_centroids + 1, np.int64)
    np.cumsum(np.bincount(cent, minlength=n_centroids), out=offsets[1:])
    np.savez(path / "ivf.npz", offsets=offsets, images=img)
