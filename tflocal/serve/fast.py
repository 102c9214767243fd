"""Per-image work done once: late-interaction heads score a new query against preloaded images.

A head whose ``forward`` reads the image only through ``encode_image(patches, patch_mask)`` and
the caption only through ``encode_text(tokens, token_mask)`` (TFLocal's ``segments`` read-out:
"image vectors depend on the image only") can have its region vectors computed once per image
at start-up, and a query's token vectors once per request instead of once per candidate. This
module makes such a copy of a scorer: its head's ``encode_image`` passes precomputed region
vectors through, and its ``encode_text`` encodes the first row and repeats it (every row of a
text -> image batch holds the same query). :func:`late_interaction` checks the copy against the
plain scorer on a probe query and gives up (None) on any difference, so a head that does not
fit the pattern is simply served the plain way.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch

log = logging.getLogger("tflocal.serve")


def _fast_head(head: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of ``head`` (same parameters) with the two pass-through encoders."""
    fast = copy.copy(head)
    encode_text = head.encode_text

    def regions(patches: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        return patches  # already head.encode_image(...) of the preloaded patches

    def tokens_once(tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        one = encode_text(tokens[:1], token_mask[:1])
        return one.expand(tokens.shape[0], *one.shape[1:])

    object.__setattr__(fast, "encode_image", regions)
    object.__setattr__(fast, "encode_text", tokens_once)
    return fast


def late_interaction(
    scorer: Any, fields: dict[str, torch.Tensor], probe: tuple[str, np.ndarray, Any]
) -> tuple[Any, dict[str, torch.Tensor]] | None:
    """(scorer copy, image fields with region vectors in place of patches), or None when the
    head does not fit (see the module docstring).

    fields: the preloaded image inputs of every searchable row; probe: (query, a few positions
    into ``fields``, a function (scorer, fields, query, positions) -> scores) used to compare."""
    head = getattr(scorer, "head", None)
    if not (callable(getattr(head, "encode_image", None)) and callable(getattr(head, "encode_text", None))):
        return None
    if "patches" not in fields or "patch_mask" not in fields:
        return None
    p, m = fields["patches"], fields["patch_mask"]
    try:
        with torch.inference_mode():
            v = torch.cat(
                [
                    head.encode_image(
                        p[s : s + 256].to(scorer.device), m[s : s + 256].to(scorer.device)
                    ).cpu()
                    for s in range(0, p.shape[0], 256)
                ]
            )
        fast = copy.copy(scorer)
        fast.head = _fast_head(head)
        fast_fields = {**fields, "patches": v}
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
