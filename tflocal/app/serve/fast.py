"""Per-image work done once: late-interaction heads score a new query against preloaded images.

A head with a late-interaction tower (:mod:`tflocal.retrieval.head_sides`: TFLocal's ``segments``
read-out, MaxSim; its image vectors depend on the image only) has those vectors computed once
per searchable image at start-up (``Tower.image``, as ``tflocal index`` stores them), and a
query's text tower run once per request instead of once per candidate: scores come from
:func:`tflocal.retrieval.score_stored`, the head's own forward reading ``PairBatch.regions`` /
``text_states``. :func:`late_interaction` checks the result against the plain scorer on a probe
query and gives up (None) on any difference, so a head that does not fit is served the plain way.

Shapes: preloaded ``patches`` [N, P, D_img] -> image vectors [N, P, d] in the fields' place
(and, for a separable global path, ``image_global_vectors`` [N, d] beside them);
a Pairs of B (image vectors [B, P, d], the query's text fields [B, ...]) -> scores [B].
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from tflocal.concepts.layout import LAYOUT_FIELDS
from tflocal.errors import UserError
from tflocal.pairs.assemble import ImageSide, Pairs, TextSide
from tflocal.retrieval.head_sides import score_stored, separable_global, tower_of
from tflocal.scoring.head import check_caption_length

log = logging.getLogger("tflocal.app.serve")

_TEXT = ("tokens", "token_mask", "text_global", *LAYOUT_FIELDS)


class StoredVectorsScorer:
    """``scorer`` with its head's image tower replaced by stored vectors: ``score_pairs_batch``
    reads the image vectors [B, P, d] from ``batch.patches`` (see the module docstring)."""

    def __init__(self, scorer: Any):
        self.scorer, self.head = scorer, getattr(scorer, "run_head", scorer.head)
        self.name, self.needs, self.batch_size, self.device = (
            scorer.name,
            scorer.needs,
            scorer.batch_size,
            scorer.device,
        )

    def score_pairs_batch(self, pairs: Pairs) -> torch.Tensor:
        """Pairs of B -> [B] float32. Text fields repeated from one query (stride 0 over the
        batch, as the engine builds them) go through the text tower once."""
        b = pairs.batch
        check_caption_length(self.head, self.name, b.token_mask)
        n = len(b)
        present = {k: getattr(b, k) for k in _TEXT if getattr(b, k) is not None}
        once = n > 0 and all(v.stride(0) == 0 for v in present.values())
        texts = TextSide(**{k: (v[:1] if once else v) for k, v in present.items()}).to(self.device)
        pair_image = torch.arange(n, device=self.device)
        pair_text = torch.zeros_like(pair_image) if once else pair_image
        images = ImageSide(image_global=b.image_global).to(self.device)
        g = b.image_global_vectors  # a separable global path's image side, computed at start-up
        with self.scorer.autocast():
            out = score_stored(
                self.head,
                b.patches.to(self.device),
                texts,
                pair_image,
                pair_text,
                images,
                None,
                None if g is None else g.to(self.device),
            )
        return out.float().cpu()


def image_vectors(head: torch.nn.Module, fields: dict[str, torch.Tensor], device: Any, block: int = 256):
    """The head's image-side vectors [N, P, d] of the preloaded patches [N, P, D_img]."""
    tower = tower_of(head)
    p, m = fields["patches"], fields["patch_mask"]
    with torch.inference_mode():
        return torch.cat(
            [
                tower.image(head, p[s : s + block].to(device), m[s : s + block].to(device)).float().cpu()
                for s in range(0, p.shape[0], block)
            ]
        )


def late_interaction(
    scorer: Any, fields: dict[str, torch.Tensor], probe: tuple[str, np.ndarray, Any]
) -> tuple[Any, dict[str, torch.Tensor]] | None:
    """(scorer copy, image fields with image vectors in place of patches), or None when the
    head does not fit (see the module docstring).

    fields: the preloaded image inputs of every searchable row; probe: (query, a few positions
    into ``fields``, a function (scorer, fields, query, positions) -> scores) used to compare."""
    head = getattr(scorer, "head", None)
    if head is None or "patches" not in fields or "patch_mask" not in fields:
        return None
    try:
        tower_of(head)
    except UserError:
        return None  # a joint head: its image side reads the caption
    try:
        fast, fast_fields = StoredVectorsScorer(scorer), {**fields}
        fast_fields["patches"] = image_vectors(head, fields, scorer.device)
        glob = separable_global(head)
        if glob is not None and "image_global" in fields:  # global_form dual: its image side once too
            with torch.inference_mode():
                g = glob.encode_image_global(fields["image_global"].to(scorer.device))
            fast_fields["image_global_vectors"] = g.float().cpu()
        query, pos, score = probe
        want = score(scorer, fields, query, pos)
        got = score(fast, fast_fields, query, pos)
    except Exception as err:  # noqa: BLE001 - any misfit: serve the plain way
        log.info("serve: %s scored the plain way (%s: %s)", scorer.name, type(err).__name__, err)
        return None
    if want.shape != got.shape or not np.allclose(want, got, rtol=1e-4, atol=1e-4):
        log.info("serve: %s scored the plain way (late-interaction copy disagrees)", scorer.name)
        return None
    return fast, fast_fields
