"""TFLocal's ``segments`` read-out (the default ``model.readout``): region–segment alignment by
late interaction.

Each modality is contextualized on its own (``depth`` transformer blocks over the patches, and
``depth`` over the caption tokens), then the caption is scored through its parse
(:mod:`tflocal.concepts.layout`):

* **objects** — each object phrase ("a small red circle") is the normalized sum of its tokens'
  projections; its score is its best cosine over the image's regions (patches). A phrase is
  matched as a whole, so the region that wins must carry *all* of its words: this is what binds
  attributes to objects ("red circle and blue square" vs "blue circle and red square"), and since
  the phrase is additive in its words it carries over to colour–shape pairs never seen together.
* **relations** — each object's attention is the softmax over regions of ``sharpness`` ×
  cosine, and its location the soft-argmax of the 2-D patch coordinates under it. With
  ``model.relation_form`` 'direction' (the default) or 'both', a relation ("left of") maps its
  predicate tokens to a direction ``w`` in the plane and scores ``w · (subject − object)``. With
  'pair' or 'both' it also gets a learned score ``f`` (an MLP, hidden 64) of the two objects'
  attended region vectors (attention × region vectors) ``a_s``, ``a_o``, their product and
  cosine, both locations and their offset, both attentions' spatial extents (soft std of x and
  y), and the predicate (its tokens projected to 32 dims): what depth ("in front of"), support
  ("on top of"), comparatives ("bigger than") and attribute equality ("same color as") need,
  and a plane direction cannot express. ``f``'s last layer starts at 0.
* **counts** (``model.count_term``) — an object phrase stating a number n >= 2 ("two red cubes",
  ``PairBatch.counts``) is also scored by how many regions carry it: soft counts
  ``sum_p sigmoid(a_j (cos_p − b_j))`` at 4 learned thresholds ``b_j`` and its 8 highest
  cosines -> an MLP (hidden 64) -> logits over counts 1..8 (8 = "8 or more"); the term is
  ``log_softmax[n] − log(1/8)``, the log-likelihood ratio of n against a uniform guess. The
  MLP's last layer starts at 0, so the term starts at exactly 0. With ``model.number_words``
  'count' the counted phrase is pooled without its number words (``PairBatch.number_tokens``:
  "spheres" for "three spheres"), so a count never stated of a shape in training is read from a
  phrase that was; 'drop' pools every phrase so. ``model.count_peaks`` adds counts relative to
  the phrase's best region to the MLP's input: soft counts of regions within learned margins of
  it, the same of local peaks only (regions above their 8 grid neighbours: an object covering
  several regions counts about once), and the top cosines minus the best. With
  ``model.count_form: ordinal`` the MLP gives a count estimate ``μ`` and a confidence ``g``
  instead of one logit per count: logits ``−g (n − μ)²``, so a count never seen for a phrase is
  still ranked by its distance to the estimate (both outputs start at 0: the term too).
* **compare** (``model.compare_term``) — each relation is also scored by comparing its two
  objects' regions in ``COMPARE_HEADS`` learned subspaces: ``log Σ_pq att_s[p] att_o[q]
  exp(h_pq) − log Σ_pq att_s[p] att_o[q]``, ``h_pq = Σ_j w_j cos(z_j(v_p), z_j(v_q))`` with
  ``w`` a linear function of the predicate tokens starting at 0. What "same color as" needs: one
  subspace can hold colour alone, and the object is searched among all the regions its phrase
  fits (weighted by its attention) rather than at its best one. Starts at exactly 0.

score = scale · mean over objects of their best cosine + relation_scale · mean over relations
of the direction term + pair_scale · mean over relations of ``f`` (+ compare_scale · mean over
relations of the compare term) + count_scale · mean over counted phrases of the count term (each
term only where configured). The pair, count and compare terms start at exactly 0, so a head with
them scores as one without them at initialization.
A caption without a parsed object falls back to word-level MaxSim over the projected tokens.

With ``global_path`` (the default; :mod:`tflocal.models.global_path`) the score also holds the
global head's score with a learned weight, and the word-level fallback gets its own weight
``word_scale`` starting at 0: a caption with no parsed object then scores as the global head,
plus only what word-level MaxSim earns on such captions in training.
Image and caption are never attended to jointly, so patch projections can be computed once per
image (``accepts_pair_image``) and cached for re-ranking, as in ColBERT.

Work: the caption side runs on its real tokens only (packed [N, d] rows of the [B, T] batch;
attention scatters them back, :meth:`tflocal.models.layers.Block.forward_packed`), and both input
projections fold their norm's affine into the linear layer (:func:`tflocal.models.layers.norm_linear`),
so training computes no gradient for the frozen features. The same function as the padded,
unfolded form; ~1.4x faster training steps on the quickstart's batches (``bench/train_step.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cache_tools.store.schema import CacheSpec
from tflocal.errors import UserError
from tflocal.models.base import Head
from tflocal.models.config import ModelConfig
from tflocal.models.global_path import GlobalPath, add_global_needs
from tflocal.models.layers import (
    Block,
    GridPositions,
    PositionTable,
    gather_rows,
    norm_linear,
    once_per_caption,
)
from tflocal.models.maxsim import maxsim_score
from tflocal.pairs.batch import PairBatch


def sharpened(scale: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    """``scale * sim`` [..., P] (a softmax's logits) with sim's -inf (padded regions) kept -inf
    outside the product: the same values, but the gradient of ``scale`` stays finite where
    ``scale * (-inf)`` would give it 0 x -inf = nan (batches with padded patches)."""
    finite = torch.isfinite(sim)
    return (scale.float() * sim.masked_fill(~finite, 0.0)).masked_fill(~finite, float("-inf"))


def grid_coordinates(grid: tuple[int, int], n_patches: int) -> torch.Tensor:
    """[n_patches, 2] (x, y) in [-1, 1] of row-major patches on a [grid_h, grid_w] grid; patches
    past the grid (padding) get (0, 0)."""
    gh, gw = int(grid[0]), int(grid[1])
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, gh), torch.linspace(-1, 1, gw), indexing="ij")
    xy = torch.stack([xs.flatten(), ys.flatten()], dim=-1)
    if n_patches > gh * gw:
        xy = torch.cat([xy, xy.new_zeros(n_patches - gh * gw, 2)])
    return xy[:n_patches]


PREDICATE_DIM = 32
"""Width of the predicate embedding the pair relation term reads."""
PAIR_HIDDEN = 64
"""Hidden width of the pair relation term's MLP."""
COUNT_THRESHOLDS = 4
"""Learned cosine thresholds b_j of the count term's soft counts."""
COUNT_TOP = 8
"""Highest cosines of a phrase the count term reads besides its soft counts."""
MAX_COUNT = 8
"""Counts the count term tells apart: 1..MAX_COUNT, the last one meaning "MAX_COUNT or more"."""
COUNT_HIDDEN = 64
"""Hidden width of the count term's MLP."""
COMPARE_HEADS = 8
"""Learned subspaces in which the compare term takes the cosine of two regions."""
COMPARE_DIM = 8
"""Width of each of the compare term's subspaces."""


def _zero_last(mlp: nn.Sequential) -> nn.Sequential:
    """``mlp`` with its last Linear zeroed: its output is exactly 0 until trained."""
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


def without_numbers(segments: torch.Tensor, number_tokens: torch.Tensor | None) -> torch.Tensor:
    """segments [B, K, T] less number_tokens [B, K, T] (a phrase made of number words alone keeps
    them): what a phrase pools with ``model.number_words`` other than 'keep'."""
    if number_tokens is None:
        return segments
    out = segments & ~number_tokens.to(segments.device)
    return torch.where(out.any(-1, keepdim=True), out, segments)


def _on_grid(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """x [B, K, P] over P patches -> [B, K, gh·gw]: the grid's patches (-1 where P is short)."""
    B, K, P = x.shape
    n = int(grid[0]) * int(grid[1])
    return x[..., :n] if P >= n else torch.cat([x, x.new_full((B, K, n - P), -1.0)], -1)


def _neighbour_max(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """x [B, K, P] -> [B, K, P]: the max of each grid patch's 8 neighbours (-2 off the grid; -2 at
    patches past the grid's)."""
    gh, gw = int(grid[0]), int(grid[1])
    B, K, P = x.shape
    n = gh * gw
    g = F.pad(_on_grid(x, grid).reshape(B * K, 1, gh, gw), (1, 1, 1, 1), value=-2.0)
    nbr = F.unfold(g, 3).view(B * K, 9, n)
    out = torch.cat([nbr[:, :4], nbr[:, 5:]], 1).amax(1).view(B, K, n)
    return out[..., :P] if P <= n else torch.cat([out, out.new_full((B, K, P - n), -2.0)], -1)


def _phrases(
    segments: torch.Tensor, token_mask: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """segments [B, K, T], token_mask [B, T], token vectors u [B, T, d] -> (unit phrase vectors
    [B, K, d], has_object [B, K] bool)."""
    seg = (segments & token_mask[:, None, :]).float()
    return F.normalize(torch.einsum("bkt,btd->bkd", seg, u), dim=-1), seg.sum(-1) > 0


class SegmentHead(Head):
    """patches [B|U, P, D_img], patch_mask, tokens [B, T, D_txt], token_mask [B, T], segments
    [B, K, T], relation_tokens [B, R, T], relations [B, R, 2] (+ counts [B, K] with
    ``count_term``; + number_tokens [B, K, T] with ``number_words`` 'drop', or 'count' and
    ``count_term``; + image_global [B, D_gi], text_global [B, D_gt] with the global path) ->
    scores [B] (see module docstring)."""

    needs = ("patches", "patch_mask", "tokens", "token_mask", "segments", "relation_tokens", "relations")
    accepts_pair_image = True
    separable = True  # regions from encode_image: what the late-interaction index stores
    word_maps = True

    def __init__(self, cfg: ModelConfig, spec: CacheSpec):
        super().__init__()
        self.cfg, self.spec = cfg, spec
        # first, so that it starts from the weights a standalone global head gets under the same seed
        self.global_path = GlobalPath(cfg, spec) if cfg.global_path else None
        self.needs = add_global_needs(SegmentHead.needs, cfg)
        d = cfg.width
        self.grid = spec.grid
        image_dim, text_dim = spec.image_dim, spec.text_dim
        self.max_text = int(cfg.max_text_tokens)
        self.patch_in = nn.Sequential(nn.LayerNorm(image_dim), nn.Linear(image_dim, d))
        self.token_in = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, d))
        self.patch_pos = GridPositions(self.grid, d, cfg.pos)
        self.token_pos = PositionTable(self.max_text, d, cfg.pos) if cfg.depth > 0 else None
        self.image_blocks = nn.ModuleList(
            Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.block_init) for _ in range(cfg.depth)
        )
        self.text_blocks = nn.ModuleList(
            Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.block_init) for _ in range(cfg.depth)
        )
        self.image_out = nn.Linear(d, d)
        self.text_out = nn.Linear(d, d)
        form = cfg.relation_form
        # the direction term's modules are built first whenever it is on, so that a head with the
        # new terms starts from the same weights as one without them under the same seed
        self.relation_in = (
            nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, 2)) if form != "pair" else None
        )
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.sharpness = nn.Parameter(torch.tensor(10.0))
        if self.relation_in is not None:
            self.relation_scale = nn.Parameter(torch.tensor(1.0))
        if self.global_path is not None:  # the word-level fallback earns its own weight from 0
            self.word_scale = nn.Parameter(torch.tensor(0.0))
        self.pair_mlp: nn.Sequential | None = None
        if form != "direction":  # pair relation term: exactly 0 until trained
            self.predicate_in = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, PREDICATE_DIM))
            self.pair_full = cfg.pair_features == "full"
            n_in = (3 if self.pair_full else 1) * d + 1 + 6 + 4 + PREDICATE_DIM
            self.pair_mlp = _zero_last(
                nn.Sequential(nn.Linear(n_in, PAIR_HIDDEN), nn.GELU(), nn.Linear(PAIR_HIDDEN, 1))
            )
            self.pair_scale = nn.Parameter(torch.tensor(1.0))
        self.count_mlp: nn.Sequential | None = None
        self.count_density = cfg.count_term and cfg.count_form == "density"
        self._count_fit: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        if self.count_density:  # additive count: exactly 0 until its weight is trained
            self.count_sharpness = nn.Parameter(torch.full((COUNT_THRESHOLDS,), 20.0))
            self.count_thresholds = nn.Parameter(torch.linspace(0.2, 0.8, COUNT_THRESHOLDS))
            self.peak_sharpness = nn.Parameter(torch.tensor(20.0))
            self.count_weights = nn.Parameter(torch.full((2 * COUNT_THRESHOLDS,), 0.5 / COUNT_THRESHOLDS))
            self.count_offset = nn.Parameter(torch.tensor(0.0))
            self.count_scale = nn.Parameter(torch.tensor(0.0))
            self.needs = (*self.needs, "counts", "number_tokens")
        elif cfg.count_term:  # count term: exactly 0 until trained
            self.count_sharpness = nn.Parameter(torch.full((COUNT_THRESHOLDS,), 20.0))
            self.count_thresholds = nn.Parameter(torch.linspace(0.2, 0.8, COUNT_THRESHOLDS))
            self.count_mlp = _zero_last(
                nn.Sequential(
                    nn.Linear(COUNT_THRESHOLDS + COUNT_TOP, COUNT_HIDDEN),
                    nn.GELU(),
                    nn.Linear(COUNT_HIDDEN, MAX_COUNT if cfg.count_form == "classes" else 2),
                )
            )
            self.count_scale = nn.Parameter(torch.tensor(1.0))
            self.needs = (*self.needs, "counts")
            if cfg.count_peaks:  # counts relative to the best region: more MLP inputs
                self.peak_sharpness = nn.Parameter(torch.tensor(20.0))
                self.count_margins = nn.Parameter(torch.linspace(0.05, 0.4, COUNT_THRESHOLDS))
                n_in = 3 * COUNT_THRESHOLDS + 2 * COUNT_TOP
                self.count_mlp[0] = nn.Linear(n_in, COUNT_HIDDEN)
        # which phrases leave their number words out: none ('keep'), the count term's, or all
        self.number_words = cfg.number_words if (cfg.number_words == "drop" or cfg.count_term) else "keep"
        if self.number_words != "keep" and "number_tokens" not in self.needs:
            self.needs = (*self.needs, "number_tokens")
        self.compare_in: nn.Sequential | None = None
        if cfg.compare_term:  # compare term: exactly 0 until trained
            self.compare_proj = nn.Linear(d, COMPARE_HEADS * COMPARE_DIM)
            self.compare_in = _zero_last(
                nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, COMPARE_HEADS))
            )
            self.compare_scale = nn.Parameter(torch.tensor(1.0))

    # -- the two towers --------------------------------------------------------------------
    def encode_image(self, patches: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """patches [N, P, D_img], patch_mask [N, P] -> unit-norm region vectors [N, P, d]."""
        w = self.patch_in[1].weight
        x = norm_linear(self.patch_in, patches.to(w.dtype)) + self.patch_pos(patches.shape[1])
        for block in self.image_blocks:
            x = block(x, patch_mask)
        return F.normalize(self.image_out(x).float(), dim=-1)

    def encode_text(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """tokens [B, T, D_txt], token_mask [B, T] -> token vectors [B, T, d] (not normalized:
        a phrase is the normalized sum of its tokens' vectors). One caption repeated with stride 0
        over the batch (a query against its candidates) runs once."""
        return once_per_caption(self._encode_text, tokens, token_mask)

    def _encode_text(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """tokens [B, T, D_txt], token_mask [B, T] -> [B, T, d]: computed on the real tokens only
        (packed; attention through :meth:`Block.forward_packed`), zeros at padded positions, which
        nothing downstream reads."""
        B, T = token_mask.shape
        if self.text_blocks and T > self.max_text and bool(token_mask[:, self.max_text :].any()):
            raise ValueError(
                f"caption with more than {self.max_text} real tokens: raise model.max_text_tokens and retrain"
            )
        w = self.token_in[1].weight
        real = token_mask.reshape(-1).nonzero().squeeze(1)  # [N] ascending
        x = norm_linear(self.token_in, gather_rows(tokens.reshape(B * T, -1), real).to(w.dtype))  # [N, d]
        if self.text_blocks:
            x = x + self.token_pos(real % T)
            for block in self.text_blocks:
                x = block.forward_packed(x, real, token_mask)
        out = self.text_out(x).float()
        return out.new_zeros(B * T, out.shape[1]).index_copy(0, real, out).view(B, T, -1)

    # -- scoring ---------------------------------------------------------------------------
    def _regions(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Region vectors and mask per pair: ([B, P, d], [B, P]); ``batch.regions`` when given."""
        v = batch.regions if batch.regions is not None else self.encode_image(batch.patches, batch.patch_mask)
        if batch.pair_image is not None:  # gather_rows, not v[...]: a reproducible backward
            return gather_rows(v, batch.pair_image), batch.patch_mask[batch.pair_image]
        return v, batch.patch_mask

    def _check(self, batch: PairBatch) -> None:
        missing = [
            n
            for n in self.needs
            if getattr(batch, n) is None
            and not (n == "patches" and batch.regions is not None)
            and not (n == "image_global" and batch.image_global_vectors is not None)
        ]
        if missing:
            raise UserError(
                f"TFLocal's segments read-out needs PairBatch fields {missing}: build batches with the head's "
                "`needs` (tflocal.concepts.layout.layout_tensors parses captions into them)"
            )

    def phrase_similarity(
        self,
        batch: PairBatch,
        v: torch.Tensor,
        pmask: torch.Tensor,
        u: torch.Tensor,
        segments: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine of each object phrase with each region: ([B, K, P] with -inf at padded patches,
        has_object [B, K] bool). ``segments`` [B, K, T]: the phrases' tokens (None: the batch's,
        less their number words with ``number_words: drop``)."""
        if segments is None:
            segments = batch.segments
            if self.number_words == "drop":
                segments = without_numbers(segments, batch.number_tokens)
        e, has_object = once_per_caption(_phrases, segments, batch.token_mask, u)
        # regions as the left operand: v [B, P, d] is read row by row (faster than e @ v^T).
        # Outside autocast, in v's dtype (float32): under bf16 autocast casting v would cost
        # more than the product itself on a CPU.
        with torch.autocast(v.device.type, enabled=False):
            if e.shape[0] > 1 and e.stride(0) == 0:  # one caption's phrases: one product, no copies
                B, P, d = v.shape
                sim = F.linear(v.reshape(B * P, d), e[0].to(v.dtype)).view(B, P, -1).transpose(1, 2)
            else:
                sim = torch.bmm(v, e.to(v.dtype).transpose(1, 2)).transpose(1, 2)  # [B, K, P]
        sim = sim.masked_fill(~pmask[:, None, :], float("-inf"))
        return sim, has_object

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """PairBatch of B (``needs``; ``regions`` / ``text_states`` in place of the towers when
        given) -> scores [B] float32."""
        self._check(batch)
        v, pmask = self._regions(batch)
        u = (
            batch.text_states
            if batch.text_states is not None
            else self.encode_text(batch.tokens, batch.token_mask)
        )
        sim, has_obj = self.phrase_similarity(batch, v, pmask, u)
        n_obj = has_obj.sum(-1)
        best = torch.where(has_obj, sim.amax(-1), torch.zeros_like(sim[..., 0]))
        objects = best.sum(-1) / n_obj.clamp(min=1)
        # the word-level fallback is read only for captions without a parsed object
        words = (
            maxsim_score(u, batch.token_mask, v, pmask)
            if bool((n_obj == 0).any())
            else torch.zeros_like(objects)
        )
        att = torch.softmax(sharpened(self.sharpness, sim), dim=-1)  # [B, K, P]
        relations = torch.zeros_like(objects)
        if self.relation_in is not None:
            relations = self.relation_scale.float() * self._relations(batch, sim, pmask, att)
        if self.pair_mlp is not None:
            relations = relations + self.pair_scale.float() * self._pair_relations(batch, att, v)
        if self.compare_in is not None:
            relations = relations + self.compare_scale.float() * self._compare(batch, sim, v)
        matched = self.scale.float() * objects
        if self.count_density:
            matched = matched + self.count_scale.float() * self._density_term(batch, v, pmask, u)
        elif self.count_mlp is not None:
            count_sim = sim
            if self.number_words == "count":  # the counted noun phrase, without its number words
                count_sim, _ = self.phrase_similarity(
                    batch, v, pmask, u, without_numbers(batch.segments, batch.number_tokens)
                )
            matched = matched + self.count_scale.float() * self._counts(batch, count_sim, pmask, has_obj)
        if self.global_path is None:
            return torch.where(n_obj > 0, matched, self.scale.float() * words) + relations
        local = torch.where(n_obj > 0, matched, self.word_scale.float() * words)
        return self.global_path(batch, local + relations)

    def mix_weights(self) -> dict[str, float]:
        """The learned weights of the score's terms (logged during training)."""
        out = {"mix/objects": float(self.scale.detach())}
        if self.relation_in is not None:
            out["mix/relations"] = float(self.relation_scale.detach())
        if self.pair_mlp is not None:
            out["mix/pair_relations"] = float(self.pair_scale.detach())
        if self.count_mlp is not None or self.count_density:
            out["mix/counts"] = float(self.count_scale.detach())
        if self.compare_in is not None:
            out["mix/compare"] = float(self.compare_scale.detach())
        if self.global_path is not None:
            out.update(
                {
                    "mix/global": float(self.global_path.weight.detach()),
                    "mix/words": float(self.word_scale.detach()),
                }
            )
        return out

    def auxiliary_scores(self) -> dict[str, torch.Tensor]:
        """Scores [B] of the last training forward that get their own loss ({'global': g} or {})."""
        return {} if self.global_path is None else self.global_path.auxiliary_scores()

    def auxiliary_losses(self, positive: torch.Tensor) -> dict[str, torch.Tensor]:
        """With ``count_form: density``: {'counts': mean over the object phrases of the true pairs
        of the last training forward (``positive`` [B] bool) of (ĉ − n)² where the phrase states
        n >= 2, relu(1 − ĉ)² where it states none (a true "a cube" has at least one)}; else {}."""
        if self._count_fit is None:
            return {}
        est, n, has_obj = self._count_fit
        self._count_fit = None
        pos = has_obj & positive.to(est.device)[:, None]
        exact, exists = pos & (n >= 2), pos & (n < 2)
        err = torch.where(exact, (est - n.float()).square(), F.relu(1.0 - est).square())
        err = torch.where(exact | exists, err, torch.zeros_like(err))
        return {"counts": err.sum() / pos.sum().clamp(min=1)}

    def count_estimates(self, batch: PairBatch) -> torch.Tensor:
        """With ``count_form: density``: how many of each object phrase (without its number words)
        the head sees in each pair's image, ``ĉ`` [B, K] (0 where there is no phrase k)."""
        if not self.count_density:
            raise UserError("count_estimates needs a head trained with model.count_form 'density'")
        self._check(batch)
        v, pmask = self._regions(batch)
        u = batch.text_states if batch.text_states is not None else self.encode_text(batch.tokens, batch.token_mask)
        return self._densities(batch, v, pmask, u)[0]

    def _densities(
        self, batch: PairBatch, v: torch.Tensor, pmask: torch.Tensor, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ĉ [B, K], has_object [B, K]): ĉ = w · [soft counts, soft peak counts] + w_0, linear in
        counts that add over regions (module docstring), of each phrase pooled without its number
        words. v [B, P, d], pmask [B, P], u [B, T, d]."""
        est, has_obj = self._estimate(batch, v, pmask, u)
        return torch.where(has_obj, est, torch.zeros_like(est)), has_obj

    def _estimate(
        self, batch: PairBatch, v: torch.Tensor, pmask: torch.Tensor, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ĉ [B, K] of each phrase pooled without its number words, has_object [B, K])."""
        segs = without_numbers(batch.segments, batch.number_tokens)
        sim, has_obj = self.phrase_similarity(batch, v, pmask, u, segs)
        cos = sim.float().masked_fill(~pmask[:, None, :], -1.0)  # [B, K, P]
        return self._count_readout(cos), has_obj

    def _count_readout(self, cos: torch.Tensor) -> torch.Tensor:
        """cos [B, K, P] (-1 at padded patches) -> ĉ [B, K] (:meth:`_densities`)."""
        on_grid = _on_grid(cos, self.grid)
        peak = torch.sigmoid(self.peak_sharpness.float() * (on_grid - _neighbour_max(on_grid, self.grid)))
        above = torch.sigmoid(
            self.count_sharpness.float() * (on_grid[..., None] - self.count_thresholds.float())
        )  # [B, K, n, J]
        feats = torch.cat([above.sum(2), (above * peak[..., None]).sum(2)], -1)  # [B, K, 2J]
        return feats @ self.count_weights.float() + self.count_offset.float()

    def _density_term(self, batch: PairBatch, v: torch.Tensor, pmask: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Mean over a caption's phrases stating n >= 2 of −(n − ĉ)², 0 without one: [B]. Keeps
        (ĉ, n, has_object) for :meth:`auxiliary_losses` in training mode."""
        est, has_obj = self._estimate(batch, v, pmask, u)
        n = batch.counts.to(est.device)
        if self.training:
            self._count_fit = (est, n, has_obj)
        counted = has_obj & (n >= 2)
        term = torch.where(counted, -(n.float() - est).square(), torch.zeros_like(est))
        return term.sum(-1) / counted.sum(-1).clamp(min=1)

    def global_path_head(self) -> Head | None:
        """The global head inside the global path (None without ``global_path``)."""
        return None if self.global_path is None else self.global_path.head

    def _relations(
        self, batch: PairBatch, sim: torch.Tensor, pmask: torch.Tensor, att: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean over a caption's relations of w(predicate) · (where subject − where object): [B].
        ``att``: the phrases' attention over regions [B, K, P] when already computed."""
        if att is None:
            att = torch.softmax(sharpened(self.sharpness, sim), dim=-1)  # [B, K, P]
        xy = grid_coordinates(self.grid, sim.shape[-1]).to(att.device)
        where = att @ xy  # [B, K, 2]
        direction = once_per_caption(
            self._directions, batch.relation_tokens, batch.token_mask, batch.tokens
        )  # [B, R, 2]
        args = batch.relations
        has_rel = (args[..., 0] >= 0) & (args[..., 1] >= 0)
        idx = args.clamp(min=0)
        subj = torch.gather(where, 1, idx[..., :1].expand(-1, -1, 2))
        obj = torch.gather(where, 1, idx[..., 1:].expand(-1, -1, 2))
        rel = (direction * (subj - obj)).sum(-1)
        rel = torch.where(has_rel, rel, torch.zeros_like(rel))
        return rel.sum(-1) / has_rel.sum(-1).clamp(min=1)

    def _pair_relations(self, batch: PairBatch, att: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Mean over a caption's relations of the pair term ``f`` (module docstring): [B].
        att [B, K, P] the phrases' attention over regions, v [B, P, d] the region vectors."""
        d = v.shape[-1]
        xy = grid_coordinates(self.grid, att.shape[-1]).to(att.device)
        with torch.autocast(att.device.type, enabled=False):
            a = torch.bmm(att, v.float()) * d**0.5  # [B, K, d] attended region vectors, O(1) per dim
        where = att @ xy  # [B, K, 2]
        spread = (att @ xy.square() - where.square()).clamp(min=0).add(1e-6).sqrt()  # [B, K, 2]
        args = batch.relations
        has_rel = (args[..., 0] >= 0) & (args[..., 1] >= 0)
        idx = args.clamp(min=0)

        def pick(x: torch.Tensor, j: int) -> torch.Tensor:  # [B, K, c] -> [B, R, c]
            return torch.gather(x, 1, idx[..., j : j + 1].expand(-1, -1, x.shape[-1]))

        a_s, a_o = pick(a, 0), pick(a, 1)
        w_s, w_o = pick(where, 0), pick(where, 1)
        pred = once_per_caption(self._predicates, batch.relation_tokens, batch.token_mask, batch.tokens)
        feats = torch.cat(
            [
                *((a_s, a_o) if self.pair_full else ()),
                a_s * a_o / d**0.5,
                F.cosine_similarity(a_s, a_o, dim=-1)[..., None],
                w_s,
                w_o,
                w_s - w_o,
                pick(spread, 0),
                pick(spread, 1),
                pred.expand(a_s.shape[0], -1, -1),
            ],
            dim=-1,
        )  # [B, R, 3d + 43] ('full') or [B, R, d + 43] ('relational')
        rel = self.pair_mlp(feats.to(self.pair_mlp[0].weight.dtype)).float()[..., 0]  # [B, R]
        rel = torch.where(has_rel, rel, torch.zeros_like(rel))
        return rel.sum(-1) / has_rel.sum(-1).clamp(min=1)

    def _counts(
        self, batch: PairBatch, sim: torch.Tensor, pmask: torch.Tensor, has_obj: torch.Tensor
    ) -> torch.Tensor:
        """Mean over a caption's phrases stating a number n >= 2 of log p(n) − log(1/MAX_COUNT)
        (module docstring), 0 for a caption without one: [B]. sim [B, K, P] (-inf at padded
        patches), pmask [B, P], has_obj [B, K]."""
        real = pmask[:, None, :]
        cos = sim.float().masked_fill(~real, -1.0)  # [B, K, P]
        soft = torch.sigmoid(self.count_sharpness.float() * (cos[..., None] - self.count_thresholds.float()))
        soft = (soft * real[..., None]).sum(2)  # [B, K, J] soft counts
        top = cos.topk(min(COUNT_TOP, cos.shape[-1]), dim=-1).values
        if top.shape[-1] < COUNT_TOP:
            top = torch.cat([top, top.new_full((*top.shape[:2], COUNT_TOP - top.shape[-1]), -1.0)], -1)
        blocks = [soft, top]
        if self.cfg.count_peaks:
            blocks.extend([*self._relative_counts(cos), top - top[..., :1]])
        feats = torch.cat(blocks, dim=-1)  # [B, K, J + COUNT_TOP (+ 2 J + COUNT_TOP)]
        logits = self.count_mlp(feats.to(self.count_mlp[0].weight.dtype)).float()  # [B, K, C]
        if self.cfg.count_form == "ordinal":  # estimate mu and confidence g: logits -g (n - mu)^2
            n_of = torch.arange(1, MAX_COUNT + 1, device=logits.device, dtype=logits.dtype)
            mu, g = 1.0 + logits[..., :1], logits[..., 1:]
            logits = -g * (n_of - mu).square()  # [B, K, C]
        # minus the log-probability of a uniform guess, computed the same way: exactly 0 at init
        logp = F.log_softmax(logits, dim=-1) - F.log_softmax(torch.zeros_like(logits), dim=-1)
        n = batch.counts.to(sim.device)
        counted = has_obj & (n >= 2)
        term = logp.gather(-1, (n.clamp(1, MAX_COUNT) - 1)[..., None])[..., 0]  # [B, K]
        term = torch.where(counted, term, torch.zeros_like(term))
        return term.sum(-1) / counted.sum(-1).clamp(min=1)

    def _relative_counts(self, cos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Counts relative to a phrase's best region, from cos [B, K, P] (-1 at padded patches):
        (soft counts of regions within margin m_j of the best, ``Σ_p sigmoid(a_j (cos_p − max +
        m_j))``; the same counting only local peaks, each times ``sigmoid(c (cos_p − max of its 8
        grid neighbours))`` so that an object covering several regions counts about once), both
        [B, K, J]."""
        on_grid = _on_grid(cos, self.grid)
        peak = torch.sigmoid(self.peak_sharpness.float() * (on_grid - _neighbour_max(on_grid, self.grid)))
        below_best = on_grid - on_grid.amax(-1, keepdim=True)  # <= 0
        near = torch.sigmoid(
            self.count_sharpness.float() * (below_best[..., None] + self.count_margins.float())
        )  # [B, K, n, J]
        return near.sum(2), (near * peak[..., None]).sum(2)

    def _compare(self, batch: PairBatch, sim: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Mean over a caption's relations of the compare term (``model.compare_term``):
        ``log Σ_pq att_s[p] att_o[q] exp(h_pq) − log Σ_pq att_s[p] att_o[q]``, h_pq = Σ_j w_j ·
        cos(z_j(v_p), z_j(v_q)), z_j the j-th of ``COMPARE_HEADS`` learned projections, w [j] from
        the predicate (0 at init: the term is exactly 0): [B]. sim [B, K, P] (-inf at padded
        patches), v [B, P, d] the region vectors."""
        B, P, _ = v.shape
        args = batch.relations
        has_rel = (args[..., 0] >= 0) & (args[..., 1] >= 0)  # [B, R]
        out = torch.zeros(B, device=v.device)
        rows = has_rel.any(-1).nonzero()[:, 0]  # only the pairs whose caption has a relation
        if rows.numel() == 0:
            return out + 0.0 * self.compare_scale  # keeps every parameter in the graph
        n_rel = int(has_rel.any(0).nonzero().max()) + 1  # slots past the last one used are empty
        has_rel, idx = has_rel[rows], args[rows].clamp(min=0)
        with torch.autocast(v.device.type, enabled=False):
            w_ = self.compare_proj.weight
            z = (
                self.compare_proj(v[rows].to(w_.dtype))
                .float()
                .view(rows.numel(), P, COMPARE_HEADS, COMPARE_DIM)
            )
            z = F.normalize(z, dim=-1)
            cmp = torch.einsum("bphe,bqhe->bhpq", z, z)  # [B', H, P, P]
        pred = once_per_caption(self._pooled_predicate, batch.relation_tokens, batch.token_mask, batch.tokens)
        w = self.compare_in(pred[rows].to(self.compare_in[1].weight.dtype)).float()  # [B', R, H]
        w, has_rel, idx = w[:, :n_rel], has_rel[:, :n_rel], idx[:, :n_rel]
        h = torch.einsum("brh,bhpq->brpq", w, cmp)  # [B', R', P, P]
        log_att = torch.log_softmax(sharpened(self.sharpness, sim[rows]), dim=-1)  # [B', K, P]
        ls = torch.gather(log_att, 1, idx[..., :1].expand(-1, -1, P))  # [B', R', P]
        lo = torch.gather(log_att, 1, idx[..., 1:].expand(-1, -1, P))
        joint = ls[..., :, None] + lo[..., None, :]  # [B', R', P, P]
        rel = torch.logsumexp((joint + h).flatten(2), -1) - torch.logsumexp(joint.flatten(2), -1)
        rel = torch.where(has_rel, rel, torch.zeros_like(rel))
        return out.index_copy(0, rows, rel.sum(-1) / has_rel.sum(-1).clamp(min=1))

    @staticmethod
    def _pooled_predicate(relation_tokens: torch.Tensor, token_mask: torch.Tensor, tokens: torch.Tensor):
        """Mean of each relation's predicate tokens: [B, R, D_txt] float32."""
        rt = (relation_tokens & token_mask[:, None, :]).float()
        return torch.einsum("brt,btc->brc", rt, tokens.float()) / rt.sum(-1, keepdim=True).clamp(min=1)

    def _directions(
        self, relation_tokens: torch.Tensor, token_mask: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """Each relation's direction in the plane from its predicate tokens: [B, R, 2]."""
        pred = self._pooled_predicate(relation_tokens, token_mask, tokens)
        return self.relation_in(pred.to(self.relation_in[1].weight.dtype)).float()

    def _predicates(
        self, relation_tokens: torch.Tensor, token_mask: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """Each relation's predicate embedding for the pair term: [B, R, PREDICATE_DIM]."""
        pred = self._pooled_predicate(relation_tokens, token_mask, tokens)
        return self.predicate_in(pred.to(self.predicate_in[1].weight.dtype)).float()

    def word_region_attention(self, batch: PairBatch) -> torch.Tensor:
        """[B, T, P]: where each caption token looks. Tokens of an object phrase share the
        phrase's soft-argmax over regions (what the relation term uses); other tokens get the
        softmax over regions of their own cosine. Rows of padded tokens are 0."""
        self._check(batch)
        v, pmask = self._regions(batch)
        u = self.encode_text(batch.tokens, batch.token_mask)
        sharp = self.sharpness.float()
        sim, _ = self.phrase_similarity(batch, v, pmask, u)
        phrase_att = torch.softmax(sharpened(sharp, sim), dim=-1)  # [B, K, P]
        tok = torch.einsum("btd,bpd->btp", F.normalize(u, dim=-1), v).masked_fill(
            ~pmask[:, None, :], float("-inf")
        )
        att = torch.softmax(sharpened(sharp, tok), dim=-1)  # [B, T, P]
        seg = (batch.segments & batch.token_mask[:, None, :]).float()  # [B, K, T]
        in_phrase = seg.sum(1) > 0
        first = seg.argmax(1)  # the (first) phrase each token belongs to
        from_phrase = torch.gather(phrase_att, 1, first[..., None].expand(-1, -1, att.shape[-1]))
        att = torch.where(in_phrase[..., None], from_phrase, att)
        return att * batch.token_mask[..., None]
