"""Data sources of the feature cache: local downloads -> deterministic streams of ImageRecord.

``open_source("FORMAT:PATH", images=None, **options)`` opens one; ``SOURCES`` maps each format
name to its class (or factory). Every source supports ``len(src)``, ``iter(src)``, ``src.name``,
``src.path``, ``src.describe()`` and ``src.skipped`` (see :class:`~cache_tools.sources.base.Source`).

Formats (each module's docstring gives the exact layout):

========================  =================================================================
``jsonl:FILE|DIR``        generic manifest(s): image, captions, negatives, negative_images
``shapesworld:DIR``       ShapesWorld's train / test_id / test_ood manifests (= jsonl)
``world3d:DIR``           the 3D world's manifests (= jsonl; minimal pairs share ``group``)
``coco:captions_*.json``  official COCO captions
``karpathy:dataset_*.json``  Karpathy splits of COCO / Flickr30k (``split=test``)
``sugarcrepe:DIR``        SugarCrepe's seven subset files
``bivlc:DIR|FILE``        BiVLC (HF parquet or JSONL with image paths)
``winoground:DIR``        Winoground (HF examples.jsonl + images, or parquet)
``aro:DIR``               ARO, ``subset=vg_relation|vg_attribution|coco_order|flickr_order``
``vg_relation:DIR`` ...   aliases of ``aro:DIR subset=...`` (also vg_attribution, coco_order, flickr_order)
``valse:DIR``             VALSE piece files
``wds:PATTERN``           webdataset tar shards (img2dataset): brace patterns, paths, ``pipe:``
========================  =================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.aro import FILES as ARO_SUBSETS
from cache_tools.sources.aro import AroSource, aro_alias
from cache_tools.sources.base import Source
from cache_tools.sources.bivlc import BiVLCSource
from cache_tools.sources.coco import CocoCaptionsSource
from cache_tools.sources.jsonl import JsonlSource, ShapesWorldSource, World3DSource
from cache_tools.sources.karpathy import KarpathySource
from cache_tools.sources.sugarcrepe import SugarCrepeSource
from cache_tools.sources.valse import ValseSource
from cache_tools.sources.wds import WdsSource
from cache_tools.sources.winoground import WinogroundSource

SOURCES: dict[str, Callable[..., Source]] = {
    "jsonl": JsonlSource,
    "shapesworld": ShapesWorldSource,
    "world3d": World3DSource,
    "coco": CocoCaptionsSource,
    "karpathy": KarpathySource,
    "sugarcrepe": SugarCrepeSource,
    "bivlc": BiVLCSource,
    "winoground": WinogroundSource,
    "aro": AroSource,
    **{subset: aro_alias(subset) for subset in ARO_SUBSETS},
    "valse": ValseSource,
    "wds": WdsSource,
}
"""Format name -> ``(path, images=None, **options) -> Source``."""


def parse_spec(spec: str) -> tuple[str, str]:
    """``"sugarcrepe:/data/sc"`` -> ``("sugarcrepe", "/data/sc")``; a bad spec is a UserError."""
    fmt, sep, path = str(spec).partition(":")  # wds:pipe:cmd keeps its own colons in PATH
    fmt = fmt.strip().lower()
    if not sep or not path:
        raise UserError(f"source {spec!r}: expected FORMAT:PATH with FORMAT one of {', '.join(SOURCES)}")
    if fmt not in SOURCES:
        raise UserError(f"unknown source format {fmt!r} in {spec!r}; choices: {', '.join(SOURCES)}")
    return fmt, path


def open_source(spec: str, images: str | Path | None = None, **options: Any) -> Source:
    """Open ``"FORMAT:PATH"`` as a :class:`Source`.

    Args:
        spec: ``FORMAT:PATH``, FORMAT a key of :data:`SOURCES`.
        images: image root overriding the format's default location.
        **options: format options (``split=``, ``subset=``, ...); unknown ones are a UserError.

    Raises:
        UserError: unknown format (the message lists the choices), missing PATH (named), bad option.
    """
    fmt, path = parse_spec(spec)
    return SOURCES[fmt](path, images=images, **options)


__all__ = ["SOURCES", "Source", "open_source", "parse_spec"]
