"""``load_scorer``: a scorer by name (``cosine``, ``maxsim``, ``sgi`` / ``sgi:W``) or checkpoint path.

Every scorer offers ``score(image_idx [B], text_idx [B]) -> [B]`` and ``score_matrix(image_idx [I],
text_idx [J]) -> [I, J]`` over a cache's rows, and ``score_pairs(images, captions) -> [B]`` on PIL
images and strings (encoded on the fly with the cache's encoder, same numbers as from the cache).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cache_tools.infra.precision import check_precision
from tflocal.errors import UserError
from tflocal.scoring.base import Scorer
from tflocal.scoring.head import CosineScorer, checkpoint_scorer, maxsim_scorer
from tflocal.scoring.sgi import SGIScorer


def _cosine(arg: str, **kw: Any) -> Scorer:
    return CosineScorer(**kw)


def _maxsim(arg: str, **kw: Any) -> Scorer:
    return maxsim_scorer(**kw)


def _sgi(arg: str, segmenter: Callable[[str], list[str]] | None = None, **kw: Any) -> Scorer:
    try:
        weight = float(arg) if arg else 0.0
    except ValueError as err:
        raise UserError(
            f"scorer 'sgi:{arg}': the weight after ':' must be a number in [0, 1], e.g. sgi:0.3"
        ) from err
    return SGIScorer(weight=weight, segmenter=segmenter, **kw)


SCORERS: dict[str, Callable[..., Scorer]] = {"cosine": _cosine, "maxsim": _maxsim, "sgi": _sgi}
"""Built-in scorers; anything else is read as a checkpoint path. ``name:arg`` passes ``arg``."""


def load_scorer(
    name_or_ckpt: str,
    cache: Any = None,
    encoder: Any = None,
    device: str = "cpu",
    batch_size: int = 256,
    progress: bool = True,
    segmenter: Callable[[str], list[str]] | None = None,
    precision: str = "fp32",
) -> Scorer:
    """A scorer over ``cache`` (an open :class:`cache_tools.store.reader.Cache`, or None for raw inputs only).

    Args:
        name_or_ckpt: ``cosine`` | ``maxsim`` | ``sgi`` | ``sgi:W`` (W = weight of the global
            score) | a checkpoint file written by ``tflocal train``.
        encoder: used by ``score_pairs`` and SGI (default: loaded from the cache's ``encoder``).
        segmenter: SGI's caption splitter (default :func:`tflocal.concepts.segments`).
        precision: ``fp32`` | ``bf16`` | ``fp16``, autocast of a trained head's forward (see
            :class:`Scorer`); the built-in scorers are baselines and always run in fp32.
    """
    check_precision(precision)
    base, _, arg = str(name_or_ckpt).partition(":")
    kw = {
        "cache": cache,
        "encoder": encoder,
        "batch_size": batch_size,
        "device": device,
        "progress": progress,
    }
    if base in SCORERS:
        if base == "sgi":
            return _sgi(arg, segmenter=segmenter, **kw)
        return SCORERS[base](arg, **kw)
    if Path(name_or_ckpt).is_file():
        return checkpoint_scorer(str(name_or_ckpt), precision=precision, **kw)
    raise UserError(
        f"unknown scorer {name_or_ckpt!r}: choose one of {', '.join(SCORERS)}, sgi:WEIGHT, or the path of a "
        "checkpoint written by `tflocal train` (no such file)"
    )
