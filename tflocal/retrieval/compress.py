"""Centroid + residual codes (ColBERTv2): each unit vector is stored as the id of its nearest
centroid plus a ``nbits``-bit code per dimension of its residual.

Training (:func:`train_codec`): k-means (faiss) over a sample of vectors [S, d] gives the
centroids [C, d]; residuals ``v - centroid`` are quantized per dimension into ``2**nbits``
buckets whose cutoffs are quantiles of all residual values and whose value is the bucket's
mean (ColBERTv2's ``bucket_cutoffs`` / ``bucket_weights``). Encoding: codes int32 [N] and
packed residual bits uint8 [N, d * nbits / 8]. Decoding: ``centroid[code] + weights[bucket]``,
renormalized. A 128-d vector costs 4 + 16 (1 bit) or 4 + 32 (2 bits) bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from tflocal.errors import UserError


@dataclass
class Codec:
    """centroids float32 [C, d] (unit norm); cutoffs float32 [2**nbits - 1]; weights float32
    [2**nbits]; nbits 0 (centroid ids only, residuals kept elsewhere), 1 or 2."""

    centroids: np.ndarray
    cutoffs: np.ndarray
    weights: np.ndarray
    nbits: int

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """vectors [N, d] -> nearest centroid (inner product) int32 [N]."""
        index = faiss.IndexFlatIP(self.dim)
        index.add(self.centroids)
        _, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        return ids[:, 0].astype(np.int32)

    def encode(self, vectors: np.ndarray, codes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """vectors [N, d] -> (codes int32 [N], residual bits uint8 [N, d*nbits/8])."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        codes = self.assign(x) if codes is None else codes
        if self.nbits == 0:
            return codes, np.zeros((x.shape[0], 0), np.uint8)
        buckets = np.searchsorted(self.cutoffs, x - self.centroids[codes]).astype(np.uint8)  # [N, d]
        bits = np.unpackbits(buckets[..., None], axis=-1)[..., 8 - self.nbits :]  # [N, d, nbits]
        return codes, np.packbits(bits.reshape(x.shape[0], -1), axis=1)

    def decode(self, codes: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """codes [...], residual bits [..., d*nbits/8] -> unit vectors float32 [..., d]."""
        lead = codes.shape
        c = self.centroids[codes.reshape(-1)]
        if self.nbits and (self.dim * self.nbits) % 8 == 0:
            # one lookup per byte: byte value -> the residual values of its 8 / nbits dimensions
            c = c + self._byte_table()[residuals.reshape(c.shape[0], -1)].reshape(c.shape[0], self.dim)
        elif self.nbits:
            bits = np.unpackbits(residuals.reshape(c.shape[0], -1), axis=1)[:, : self.dim * self.nbits]
            bits = bits.reshape(c.shape[0], self.dim, self.nbits)
            bucket = (bits * (1 << np.arange(self.nbits - 1, -1, -1, dtype=np.uint8))).sum(-1)
            c = c + self.weights[bucket]
        c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        return c.reshape(*lead, self.dim)

    def _byte_table(self) -> np.ndarray:
        """[256, 8 / nbits] float32: the residual values packed in each byte value (MSB first)."""
        if getattr(self, "_table", None) is None:
            per = 8 // self.nbits
            b = np.arange(256)[:, None] >> (8 - self.nbits * (np.arange(per)[None, :] + 1))
            self._table = self.weights[b & ((1 << self.nbits) - 1)].astype(np.float32)
        return self._table

    def bytes_per_vector(self) -> int:
        return 4 + (self.dim * self.nbits + 7) // 8

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "centroids": self.centroids,
            "cutoffs": self.cutoffs,
            "weights": self.weights,
            "nbits": np.array(self.nbits),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Codec:
        return cls(a["centroids"], a["cutoffs"], a["weights"], int(a["nbits"]))


def train_codec(
    sample: np.ndarray, n_centroids: int, nbits: int = 2, niter: int = 10, seed: int = 0
) -> Codec:
    """k-means over sample [S, d] unit vectors -> a :class:`Codec` (see module docstring)."""
    if nbits not in (0, 1, 2):
        raise UserError(f"residual bits per dimension must be 0, 1 or 2, not {nbits}")
    x = np.ascontiguousarray(sample, dtype=np.float32)
    n_centroids = int(min(n_centroids, max(1, x.shape[0] // 4)))
    km = faiss.Kmeans(x.shape[1], n_centroids, niter=niter, seed=seed, spherical=True, verbose=False)
    km.train(x)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    codec = Codec(centroids, np.zeros(0, np.float32), np.zeros(1, np.float32), nbits)
    if nbits:
        r = (x - centroids[codec.assign(x)]).ravel()
        q = np.linspace(0, 1, 2**nbits + 1)
        codec.cutoffs = np.quantile(r, q[1:-1]).astype(np.float32)
        edges = np.concatenate([[-np.inf], codec.cutoffs, [np.inf]])
        which = np.searchsorted(codec.cutoffs, r)
        codec.weights = np.array(
            [
                r[which == b].mean() if (which == b).any() else (edges[b] + edges[b + 1]) / 2
                for b in range(2**nbits)
            ],
            dtype=np.float32,
        )
    return codec
