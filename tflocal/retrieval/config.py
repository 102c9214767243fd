"""The recipe of ``tflocal index``: a head's image-side vectors over a cache, indexed once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tflocal.errors import UserError

Storage = Literal["float16", "float32", "residual"]


@dataclass
class IndexConfig:
    cache: str = ""
    """Cache (.h5) whose images are indexed."""
    scorer: str = ""
    """maxsim | CHECKPOINT of a segments head (heads whose image side does not read the caption)."""
    out: str = ""
    """Index folder to write (replaced when it is an index)."""
    storage: Storage = "float16"
    """float16 | float32 (exact vectors) or residual (centroid id + nbits per dimension, ColBERTv2)."""
    nbits: int = 2
    """Residual bits per dimension (storage residual): 1 or 2."""
    centroids: int | None = None
    """k-means centroids (default about 4 sqrt(vectors))."""
    batch_size: int = 256
    """Images per forward of the head's image tower."""
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("cache", "scorer", "out"):
            if not getattr(self, name):
                raise UserError(f"index: missing '{name}': give --{name}")
        if self.storage not in ("float16", "float32", "residual"):
            raise UserError(f"index: storage {self.storage!r}: choose float16, float32 or residual")
        if self.nbits not in (1, 2):
            raise UserError(f"index: nbits={self.nbits}: choose 1 or 2")
        if self.batch_size < 1 or (self.centroids is not None and self.centroids < 1):
            raise UserError("index: batch_size and centroids must be >= 1")
