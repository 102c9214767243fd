"""Late-interaction towers: how each indexable head splits into an image side computed once,
query vectors for candidate generation, and its exact score from stored image vectors.

A head is indexable when its image side does not depend on the caption: the ``segments``
read-out (:class:`~tflocal.models.SegmentHead`, region vectors from ``encode_image``) and
:class:`~tflocal.models.MaxSimHead` (the unit-normalized patches). A joint cross-encoder
(``tflocal-joint``) attends across modalities and stays a re-ranker. A new late-interaction
read-out registers a :class:`Tower` in :data:`TOWERS`.

Shapes: patches [N, P, D_img] -> image vectors [N, P, d] (unit norm, float32);
a caption -> query vectors [M, d] (unit norm); stored vectors [U, P, d] + the caption's
:class:`~tflocal.pairs.assemble.TextSide` -> exact scores [B] computed by the head's own ``forward``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tflocal.errors import UserError
from tflocal.models.base import Head
from tflocal.models.maxsim import MaxSimHead
from tflocal.models.segment_head import SegmentHead, without_numbers
from tflocal.pairs.assemble import ImageSide, TextSide, pair_batch
from tflocal.pairs.batch import PairBatch


@dataclass(frozen=True)
class Tower:
    """image(head, patches [N,P,D], mask [N,P]) -> [N,P,d]; query(head, texts of 1, states) -> [M,d]
    (``states``: ``text(head, texts)`` [1, T, d] when already computed, else None);
    attach(head, batch, vectors [U,P,d], pair_image [B]) puts stored vectors where the head's
    forward reads its image side; text(head, texts of NT) -> [NT, T, d] text tower states the
    forward reads from ``PairBatch.text_states`` (None: the head has no text tower);
    estimate(head) -> (w_local, w_global): how the head weighs the mean best cosine of its query
    vectors (what the centroid stages estimate) against a separable global path's cosine
    (None: no such global path)."""

    image: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    query: Callable[[nn.Module, TextSide, torch.Tensor | None], torch.Tensor]
    attach: Callable[[nn.Module, PairBatch, torch.Tensor, torch.Tensor], None]
    text: Callable[[nn.Module, TextSide], torch.Tensor] | None = None
    estimate: Callable[[nn.Module], tuple[float, float] | None] | None = None


def _real_tokens(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """vectors [1, T, d], mask [1, T] -> unit-norm vectors of the real tokens [M, d]."""
    return F.normalize(vectors[0][mask[0]].float(), dim=-1)


def _segments_query(head: SegmentHead, texts: TextSide, states: torch.Tensor | None = None) -> torch.Tensor:
    """Each parsed object phrase (normalized sum of its token vectors, as the head matches it);
    a caption with no phrase: its normalized token vectors (the head's MaxSim fallback).
    ``states``: ``head.encode_text`` of the caption [1, T, d] when already computed."""
    u = head.encode_text(texts.tokens, texts.token_mask) if states is None else states  # [1, T, d]
    segments = texts.segments
    if getattr(head, "number_words", "keep") == "drop":  # phrases as the head pools them
        segments = without_numbers(segments, texts.number_tokens)
    seg = (segments & texts.token_mask[:, None, :]).float()[0]  # [K, T]
    seg = seg[seg.sum(-1) > 0]
    if seg.shape[0] == 0:
        return _real_tokens(u, texts.token_mask)
    return F.normalize(seg @ u[0], dim=-1)


def _identity(pair_image: torch.Tensor, n_images: int) -> bool:
    """Whether pair b is image b for every pair (then nothing needs gathering per pair)."""
    return pair_image.shape[0] == n_images and bool(
        (pair_image == torch.arange(n_images, device=pair_image.device)).all()
    )


def _segments_attach(head: nn.Module, batch: PairBatch, vectors: torch.Tensor, pair_image: torch.Tensor):
    """Stored region vectors, read per pair through ``pair_image`` (left unset when it is the
    identity: the head then reads ``regions`` without a gathered copy)."""
    batch.regions = vectors
    batch.patch_mask = torch.ones(vectors.shape[:2], dtype=torch.bool, device=vectors.device)
    batch.pair_image = None if _identity(pair_image, vectors.shape[0]) else pair_image


def _maxsim_attach(head: nn.Module, batch: PairBatch, vectors: torch.Tensor, pair_image: torch.Tensor):
    batch.patches = vectors if _identity(pair_image, vectors.shape[0]) else vectors[pair_image]
    batch.patch_mask = torch.ones(batch.patches.shape[:2], dtype=torch.bool, device=vectors.device)


def _segments_estimate(head: SegmentHead) -> tuple[float, float] | None:
    """score = scale * mean best phrase cosine + relations + weight * g, g = dual scale * cosine."""
    glob = separable_global(head)
    if glob is None:
        return None
    return float(head.scale.detach()), float(head.global_path.weight.detach()) * float(glob.scale.detach())


TOWERS: dict[type, Tower] = {
    SegmentHead: Tower(
        image=lambda head, p, m: head.encode_image(p, m),
        query=_segments_query,
        attach=_segments_attach,
        text=lambda head, t: head.encode_text(t.tokens, t.token_mask),
        estimate=_segments_estimate,
    ),
    MaxSimHead: Tower(
        image=lambda head, p, m: F.normalize(p.float(), dim=-1),
        query=lambda head, t, states=None: _real_tokens(t.tokens, t.token_mask),
        attach=_maxsim_attach,
    ),
}


def tower_of(head: nn.Module, name: str = "") -> Tower:
    """The head's :class:`Tower`; UserError for a head whose image side depends on the caption."""
    for cls, tower in TOWERS.items():
        if isinstance(head, cls):
            return tower
    raise UserError(
        f"scorer {name or type(head).__name__!r} ({type(head).__name__}) has no late-interaction image side to "
        "compute once (a joint head attends across image and caption): index a 'segments' checkpoint or 'maxsim', "
        "and use this one as a re-ranker"
    )


def image_needs(head: Head) -> tuple[str, ...]:
    """Image inputs the head's forward reads besides its image tower (e.g. ``image_global``)."""
    return tuple(n for n in head.needs if n in ("image_global",))


def text_needs(head: Head) -> tuple[str, ...]:
    """Caption inputs the head's forward reads (its ``needs`` less the image ones)."""
    return tuple(n for n in head.needs if n not in ("patches", "patch_mask", "image_global"))


def text_states_of(head: nn.Module, texts: TextSide) -> torch.Tensor | None:
    """The head's text tower over NT captions -> [NT, T, d] (None: no text tower). Computed once
    per query and passed to :func:`score_stored` for every batch of its candidates."""
    tower = tower_of(head)
    return None if tower.text is None else tower.text(head, texts)


def separable_global(head: Head) -> Head | None:
    """The head's global path when it is separable (``model.global_form: dual``): its image side
    ``encode_image_global`` [N, D_gi] -> [N, d] is stored by an index; else None."""
    g = head.global_path_head()
    return g if g is not None and g.separable else None


def score_stored(
    head: nn.Module,
    vectors: torch.Tensor,
    texts: TextSide,
    pair_image: torch.Tensor,
    pair_text: torch.Tensor,
    images: ImageSide | None = None,
    text_states: torch.Tensor | None = None,
    global_vectors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact scores [B] of pairs (image pair_image[b], caption pair_text[b]) by the head's own
    forward, its image tower replaced by the stored ``vectors`` [U, P, d] (any float dtype;
    computed in float32). ``images``: other image inputs of the U images (e.g. image_global).
    ``text_states``: :func:`text_states_of` the NT captions when already computed (else here).
    ``global_vectors``: [U, d] the stored image side of a separable global path (then
    ``images`` need not hold image_global)."""
    batch = pair_batch(images or ImageSide(), texts, pair_image, pair_text)
    batch.patches = None
    if global_vectors is not None:
        batch.image_global_vectors = global_vectors.float()[pair_image]
    tower = tower_of(head)
    tower.attach(head, batch, vectors.float(), pair_image)
    if tower.text is not None:  # [NT, T, d] once, then per pair
        states = tower.text(head, texts) if text_states is None else text_states
        batch.text_states = (
            states.expand(pair_text.shape[0], -1, -1) if states.shape[0] == 1 else states[pair_text]
        )
    return head(batch).float()


ADDED_CONFIG_KEYS = {
    "global_form": "mlp",
    "relation_form": "direction",
    "count_term": False,
    "pair_features": "full",
    "number_words": "keep",
    "count_form": "classes",
    "count_peaks": False,
    "compare_term": False,
    "block_init": "default",
}
"""Config keys added after indexes were first written, with the value every earlier head had:
they enter the fingerprint only when set otherwise, so an index built before stays valid."""


def fingerprint(head: nn.Module) -> str:
    """sha256 of the head's class, resolved config and weights: what a stored index is tied to."""
    h = hashlib.sha256(type(head).__name__.encode())
    cfg = getattr(head, "cfg", None)
    if cfg is not None:
        d = getattr(cfg, "__dict__", None)
        if isinstance(d, dict):
            d = {k: v for k, v in d.items() if not (k in ADDED_CONFIG_KEYS and v == ADDED_CONFIG_KEYS[k])}
        h.update(json.dumps(d if d is not None else str(cfg), sort_keys=True, default=str).encode())
    for name, t in sorted(head.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
