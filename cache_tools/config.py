"""The caching recipe: what ``tflocal cache`` and ``configs/cache/*.yaml`` hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cache_tools.errors import UserError
from cache_tools.infra.precision import Precision, check_precision
from cache_tools.sources import SOURCES


@dataclass
class CacheConfig:
    encoder: str = ""
    """Encoder registry name: ``openclip:MODEL@PRETRAINED``, ``hf:ID_OR_DIR`` or ``towers:effnet-lite0+minilm``."""
    data: str = ""
    """``FORMAT:PATH``, e.g. ``jsonl:data/manifest.jsonl`` or ``sugarcrepe:data/sugarcrepe``."""
    out: str = ""
    """Output HDF5 file."""
    images: str | None = None
    """Image folder, when the images do not lie where the format expects them."""
    options: dict[str, Any] = field(default_factory=dict)
    """Source options, e.g. ``{split: test}`` for Karpathy or ``{subset: vg_relation}`` for ARO."""
    batch_size: int = 64
    """Images (and texts) per encoder forward."""
    crops: bool = False
    """Also cache the global embeddings of 2x2 and 3x3 grid crops (for the SGI scorer)."""
    precision: Precision = "fp32"
    """fp32 | bf16 | fp16 (autocast; half precisions only on a GPU)."""
    device: str | None = None
    """cpu | cuda | cuda:N; default: the accelerate process's device (a GPU when there is one)."""
    num_workers: int = 2
    """Threads that open and preprocess images ahead of the encoder."""
    limit: int | None = None
    """Encode only the first N records (a quick look at a large source)."""

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.batch_size < 1:
            raise UserError("batch_size must be at least 1")
        if self.num_workers < 0:
            raise UserError("num_workers must be >= 0")
        # names are checked before any work: required fields, known encoder prefix and data format
        for name in ("encoder", "data", "out"):
            if not getattr(self, name):
                raise UserError(f"missing '{name}': give --{name} or set it in the config file")
        from cache_tools.encoders import ENCODERS  # the registry's package imports torch (seconds)

        prefix = self.encoder.split(":", 1)[0]
        if ":" not in self.encoder or prefix not in ENCODERS:
            raise UserError(
                f"unknown encoder {self.encoder!r}; choices: "
                + ", ".join(f"{p}:..." for p in ENCODERS)
                + " (e.g. openclip:ViT-B-32@openai, hf:openai/clip-vit-base-patch16, towers:effnet-lite0+minilm)"
            )
        fmt = self.data.split(":", 1)[0]
        if ":" not in self.data or fmt not in SOURCES:
            raise UserError(
                f"unknown data format in {self.data!r}; choices: {', '.join(f'{k}:PATH' for k in SOURCES)}"
            )
