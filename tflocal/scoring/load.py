"""``load_scorer``: a scorer by name (``cosine``, ``maxsim``, ``sgi`` / ``sgi:W`` / ``sgi@CKPT`` /
``sgi:W@CKPT``) or checkpoint path, optionally with a caption prior taken out (``prior@NAME``).

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
from tflocal.models.checkpoint import load_head
from tflocal.scoring.base import Scorer
from tflocal.scoring.head import CosineScorer, checkpoint_scorer, maxsim_scorer
from tflocal.scoring.prior import CaptionPriorScorer, is_prior, parse_prior
from tflocal.scoring.sgi import SGIScorer


def _cosine(arg: str, **kw: Any) -> Scorer:
    return CosineScorer(**kw)


def _maxsim(arg: str, **kw: Any) -> Scorer:
    return maxsim_scorer(**kw)


def is_sgi(name: str) -> bool:
    """``name`` asks for SGI: ``sgi``, ``sgi:W``, ``sgi@CKPT`` or ``sgi:W@CKPT`` (needs crops)."""
    return str(name) == "sgi" or str(name).startswith(("sgi:", "sgi@"))


def _sgi(arg: str, segmenter: Callable[[str], list[str]] | None = None, **kw: Any) -> Scorer:
    """``arg``: what follows ``sgi:`` (``W``, ``W@CKPT``) or ``sgi`` (``@CKPT``, ""): the global
    weight W (default 0) and the checkpoint of a trained global head (none: cosine of the globals)."""
    text, at, ckpt = str(arg).partition("@")
    try:
        weight = float(text) if text else 0.0
    except ValueError as err:
        raise UserError(
            f"scorer 'sgi:{arg}': the weight after ':' must be a number in [0, 1], e.g. sgi:0.3 "
            "(or sgi:0.3@CKPT with a global head)"
        ) from err
    head = None
    if at:
        if not ckpt.strip():
            raise UserError(
                "scorer 'sgi@': give the checkpoint of a trained global head after '@', e.g. "
                "sgi:0.3@runs/global/best.pt"
            )
        head, _info = load_head(ckpt, cache=kw.get("cache"), device=kw.get("device", "cpu"))
    return SGIScorer(weight=weight, segmenter=segmenter, head=head, checkpoint=ckpt if at else "", **kw)


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
            score) | ``sgi@CKPT`` / ``sgi:W@CKPT`` (SGI scoring with the trained global head in
            CKPT, for caches whose image and text globals are not in one space) | a checkpoint
            file written by ``tflocal train`` | ``prior@NAME`` / ``prior:N@NAME``: NAME's score
            minus each caption's mean over N reference images of the cache
            (:mod:`tflocal.scoring.prior`).
        encoder: used by ``score_pairs`` and SGI (default: loaded from the cache's ``encoder``).
        segmenter: SGI's caption splitter (default :func:`tflocal.concepts.segments`).
        precision: ``fp32`` | ``bf16`` | ``fp16``, autocast of a trained head's forward (see
            :class:`Scorer`); the built-in scorers are baselines and always run in fp32.
    """
    check_precision(precision)
    if is_prior(name_or_ckpt):
        references, spec = parse_prior(name_or_ckpt)
        if cache is None:
            raise UserError(f"scorer {name_or_ckpt!r}: a caption prior is taken over a cache's images; pass cache=")
        base = load_scorer(spec, cache, encoder, device, batch_size, progress, segmenter, precision)
        return CaptionPriorScorer(base, references)
    if is_sgi(name_or_ckpt):
        name = str(name_or_ckpt)
        base, arg = "sgi", name[4:] if name.startswith("sgi:") else name[3:]
    else:
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
        f"unknown scorer {name_or_ckpt!r}: choose one of {', '.join(SCORERS)}, sgi:WEIGHT, sgi:WEIGHT@CKPT, or the path of a "
        "checkpoint written by `tflocal train` (no such file)"
    )
