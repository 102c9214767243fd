"""The one input every head scores: a batch of (image, caption) pairs."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class PairBatch:
    """B (image, caption) pairs; fields a head does not read may be None.

    patches: [B, P, D_img] patch tokens; patch_mask: [B, P] bool, True = real patch.
    tokens: [B, T, D_txt] caption tokens; token_mask: [B, T] bool, True = real token.
    image_global: [B, D_gi]; text_global: [B, D_gt] (the frozen model's own global embeddings).
    segments: [B, K, T] bool, the caption tokens of each parsed object phrase; relation_tokens:
    [B, R, T] bool, the predicate tokens of each parsed relation; relations: [B, R, 2] long, its
    (subject, object) indices into the K objects, -1 = no relation; counts: [B, K] long, the
    number each object phrase states ("two cubes": 2), 0 = none; number_tokens: [B, K, T] bool,
    the tokens of that number ("two") in each phrase stating 2 or more (see
    :mod:`tflocal.concepts.layout`; read by TFLocal's ``segments`` read-out, ``counts`` only with
    ``model.count_term``, ``number_tokens`` only with ``model.number_words`` other than 'keep').

    pair_image: optional [B] long. When set, ``patches`` / ``patch_mask`` hold U distinct images
    ([U, P, D_img] / [U, P]) and pair b uses row ``pair_image[b]``: heads that accept it
    (``accepts_pair_image = True``) project each image once instead of once per pair.
    :meth:`expanded` turns it into the plain per-pair form.

    regions: optional [B|U, P, d] float, the image side of a late-interaction head computed
    beforehand (``encode_image`` of the rows of ``patches``; :mod:`tflocal.retrieval` stores them).
    A head that reads it (``segments``) then skips its image tower; ``patches`` may be None.
    text_states: optional [B, T, d] float, its text tower's output per pair computed beforehand
    (``encode_text``, once per distinct caption); a head that reads it skips its text tower.
    image_global_vectors: optional [B, d], a separable global head's image tower computed
    beforehand (``model.global_form: dual``; an index stores it).
    """

    patches: torch.Tensor | None = None
    patch_mask: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None
    image_global: torch.Tensor | None = None
    text_global: torch.Tensor | None = None
    segments: torch.Tensor | None = None
    relation_tokens: torch.Tensor | None = None
    relations: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    number_tokens: torch.Tensor | None = None
    pair_image: torch.Tensor | None = None
    regions: torch.Tensor | None = None
    text_states: torch.Tensor | None = None
    image_global_vectors: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PairBatch:
        """A copy with every present tensor on ``device``."""
        return PairBatch(
            **{
                f.name: (None if v is None else v.to(device, non_blocking=non_blocking))
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )

    def __len__(self) -> int:
        if self.pair_image is not None:
            return int(self.pair_image.shape[0])
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                return int(v.shape[0])
        return 0

    def expanded(self) -> PairBatch:
        """The same pairs with ``patches`` / ``patch_mask`` per pair (``pair_image`` unset)."""
        if self.pair_image is None:
            return self
        out = PairBatch(**{f.name: getattr(self, f.name) for f in fields(self)})
        out.patches = None if self.patches is None else self.patches[self.pair_image]
        out.patch_mask = None if self.patch_mask is None else self.patch_mask[self.pair_image]
        out.regions = None if self.regions is None else self.regions[self.pair_image]
        out.pair_image = None
        return out

    def select(self, index: torch.Tensor) -> PairBatch:
        """Rows ``index`` (a [B'] long tensor) of every present field."""
        if self.pair_image is not None:
            return self.expanded().select(index)
        return PairBatch(
            **{
                f.name: (None if v is None else v[index])
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )


PAIR_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in fields(PairBatch)
    if f.name not in ("pair_image", "regions", "text_states", "image_global_vectors")
)
