"""The recipes of retrieval: :class:`IndexConfig` (``tflocal index``: a head's image-side vectors
over a cache, indexed once) and :class:`SearchConfig` (``tflocal search``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cache_tools.infra.precision import Precision, check_precision
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
    per_shard: bool = False
    """One index per shard file of a cache written by several processes (out/shard00000/, ...,
    out/shards.json), each over its shard alone; under ``accelerate launch`` process k of N builds
    shards k, k + N, ... ``tflocal search --late-index out`` searches them all and merges their top k."""

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


@dataclass
class SearchConfig:
    """What ``tflocal search`` holds."""

    cache: str = ""
    """Cache (.h5) whose images are searched."""
    query: list[str] = field(default_factory=list, metadata={"commas": False})
    """Captions to search with (repeat the flag for several)."""
    index: str | None = None
    """faiss index file over the cache's image embeddings (built and saved when missing)."""
    factory: str = "Flat"
    """faiss factory string for a new index: Flat, IVF1024,Flat, HNSW32."""
    scorer: str = "cosine"
    """cosine | maxsim | sgi | CHECKPOINT (re-ranks the first stage)."""
    k: int = 10
    """Results to print."""
    k_rerank: int = 100
    """First-stage candidates re-ranked."""
    late_index: str | None = None
    """Index folder from `tflocal index` for the scorer: a late-interaction first stage over the
    whole corpus when it exists (else the global first stage); a folder from `tflocal index
    --per-shard` searches every shard's index and merges their top k."""
    fuse: bool = False
    """With late_index: also score the global first stage's top k_rerank exactly."""
    nprobe: int = 8
    """With late_index: centroids probed per query vector."""
    candidates: int = 256
    """With late_index: images scored exactly by the head (more: higher recall, slower)."""
    refine: int = 4
    """With late_index: refine x candidates pass the probed-centroid pruning to the centroid
    interaction over all their vectors (1: skip that stage)."""
    global_candidates: int | None = None
    """With late_index and a head whose global path is separable (model.global_form: dual): its
    best images by that term join the candidate pool (default candidates // 2; 0: none)."""
    encoder: str | None = None
    """Encoder for the query (default: the cache's own)."""
    device: str = "cpu"
    precision: Precision = "fp32"
    """fp32 | bf16 | fp16: the trained head's forward in a copy cast once, under autocast (bf16:
    faster re-ranking with a wide head on CPUs with native bf16, see docs/results/performance.md;
    fp16 only on a GPU)."""

    def __post_init__(self) -> None:
        if not self.cache:
            raise UserError("search: missing 'cache': give --cache FILE.h5")
        if self.nprobe < 1 or self.candidates < 1 or self.refine < 1:
            raise UserError(
                f"search: nprobe, candidates and refine must be >= 1 (got {self.nprobe}, {self.candidates}, "
                f"{self.refine})"
            )
        if self.global_candidates is not None and self.global_candidates < 0:
            raise UserError(f"search: global_candidates must be >= 0 (got {self.global_candidates})")
        check_precision(self.precision)
        if not self.query:
            raise UserError("search: no query: give --query CAPTION (repeatable)")
        if self.k < 1 or self.k_rerank < 1:
            raise UserError("search: k and k_rerank must be >= 1")
