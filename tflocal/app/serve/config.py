"""The recipe of ``tflocal serve``: which cache and scorers, where to listen, what a request may ask."""

from __future__ import annotations

from dataclasses import dataclass, field

from cache_tools.infra.precision import Precision, check_precision
from tflocal.errors import UserError


@dataclass
class ServeConfig:
    cache: str = ""
    """Cache (.h5) whose images are searched."""
    scorer: list[str] = field(default_factory=list, metadata={"commas": False})
    """[LABEL=]cosine | maxsim | sgi | CHECKPOINT (repeat the flag; the page compares two)."""
    index: str | None = None
    """faiss index file over the cache's image globals (built and saved when missing)."""
    split: str | None = None
    """Serve only images whose metadata split is this (e.g. test_ood)."""
    source: str | None = None
    """FORMAT:PATH to read raw images from (default: the cache's recorded source)."""
    host: str = "127.0.0.1"
    """Address to bind (default: loopback only)."""
    port: int = 8000
    k_rerank: int = 100
    """First-stage candidates re-ranked."""
    max_k: int = 100
    """Largest k a request may ask."""
    device: str = "cpu"
    precision: Precision = "fp32"
    """fp32 | bf16 | fp16: trained heads' forward under autocast (bf16: faster for wide heads on a
    GPU or a CPU with native bf16, see docs/results/performance.md; fp16 only on a GPU)."""
    in_memory: bool = True
    """Load the cache's payload in RAM (false: read it from disk per request)."""

    def __post_init__(self) -> None:
        if not self.cache:
            raise UserError("serve: missing 'cache': give --cache FILE.h5")
        if not self.scorer:
            raise UserError("serve: no scorer: give --scorer NAME_OR_CHECKPOINT (repeatable)")
        if not 1 <= self.port <= 65535:
            raise UserError(f"--port must be in [1, 65535], got {self.port}")
        check_precision(self.precision)
        if self.max_k < 1 or self.k_rerank < 1:
            raise UserError("--max-k and --k-rerank must be >= 1")
