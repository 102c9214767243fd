"""Size and shape of the trainable heads (the ``model:`` section of a training config)."""

from __future__ import annotations

from dataclasses import dataclass

from tflocal.errors import UserError

POSITIONS = ("learned", "sinusoidal")
READOUTS = ("summary", "summary+align", "segments")
GLOBAL_FORMS = ("mlp", "dual")
RELATION_FORMS = ("direction", "pair", "both")
PAIR_FEATURES = ("full", "relational")
NUMBER_WORDS = ("keep", "count", "drop")
COUNT_FORMS = ("classes", "ordinal", "density")
BLOCK_INITS = ("default", "zero")
UNSET_MEANS = {"count_term": False, "count_form": "classes", "number_words": "keep"}
"""What a key left at None builds, whatever the read-out (a caller such as the 3D quickstart fills
in its own first)."""
RESOLVED_LATER = (*UNSET_MEANS, "block_init")
"""Keys whose None is filled in when a head is built (:func:`tflocal.models.resolve_config`;
``block_init`` by read-out)."""


@dataclass
class ModelConfig:
    width: int = 512
    """Hidden width d of the head (TFLocal: transformer width; global head: residual MLP width)."""
    depth: int = 4
    """TFLocal: transformer layers (with ``readout: segments``: layers per modality, 0 allowed);
    global head: residual MLP blocks."""
    heads: int = 8
    """Attention heads of TFLocal (width must be divisible by it)."""
    mlp_ratio: float = 4.0
    """TFLocal feed-forward width as a multiple of ``width``."""
    global_mlp_ratio: float = 6.0
    """Global head block hidden width as a multiple of ``width``. 6 gives 12·d² weights per block,
    the same as one transformer layer with mlp_ratio 4, so both heads have about the same budget."""
    dropout: float = 0.0
    """Dropout in attention, feed-forward and projections."""
    block_init: str | None = None
    """TFLocal transformer blocks: 'zero' (each block's attention and feed-forward output
    projections start at 0, so every block starts as the identity and a token or region vector
    starts as its own projection, without the mean of the caption or image that random attention
    adds; the blocks then learn what context to add) or 'default' (PyTorch's initialization).
    None: 'zero' for ``segments`` (on the 3D world it took away a plateau at the start of training
    that some seeds sat on for 2-4 of 10 epochs; on ShapesWorld better or within 1 point on every
    subset over 3 seeds: docs/training.md), 'default' for the joint read-outs (not measured).
    Checkpoints saved before this key existed load with 'default'."""
    pos: str = "learned"
    """2-D patch and 1-D caption positions: 'learned' (row + column tables) or 'sinusoidal' (fixed)."""
    readout: str = "segments"
    """TFLocal score: 'segments' (the default; late interaction: ``depth`` blocks per modality,
    then each parsed object phrase of the caption is matched to its best image region and each
    relation is scored from where its two objects were found; see
    :mod:`tflocal.models.segment_head`), 'summary' (the joint cross-encoder: linear read-out of
    the summary token of a joint image+caption transformer) or 'summary+align' (plus a
    word-region alignment term over the last block's states: each caption token's best cosine
    over patches, averaged over the caption's tokens, times a learned scale). Checkpoints saved
    before this key existed load with 'summary'."""
    max_text_tokens: int | None = None
    """Longest caption (tokens) the text position table holds; None = the cache's context_length."""
    global_path: bool = True
    """TFLocal read-outs: add the global head (a learned function of the two global embeddings,
    trained on its own loss) to the localized score with learned mix weights, so that where the
    localized terms carry no signal the score is the global head's (see
    :mod:`tflocal.models.global_path`). Checkpoints saved before this key existed load with False."""
    global_form: str = "mlp"
    """The global head, standalone and as the global path: 'mlp' (residual MLP blocks over both
    global embeddings jointly; ``depth`` blocks) or 'dual' (one tower per embedding with one
    residual block each, score = scaled cosine). 'dual' is separable: a late-interaction index
    stores its image side, and re-ranking K candidates costs K dot products instead of K passes
    through the blocks (``bench/rerank.py``)."""
    relation_form: str = "direction"
    """``segments`` read-out: how a relation ("left of") is scored from its two objects.
    'direction': a learned direction in the plane from the predicate tokens, dotted with the
    offset between where the two phrases were found (what a plane relation needs); 'pair': a
    learned function (small MLP) of both phrases' attended region vectors, their product, both
    locations, their offset and spatial extents, and the predicate (depth, support, comparatives,
    attribute equality); 'both': their sum, each with its own learned weight. The pair term starts
    at exactly 0, so 'both' scores as 'direction' at initialization. Checkpoints saved before this
    key existed load with 'direction'."""
    pair_features: str = "full"
    """What the pair relation term reads of its two objects: 'full' (both attended region vectors,
    their product and cosine) or 'relational' (their product and cosine only: nothing that
    names either object alone); both add locations, offset, extents and the predicate."""
    count_term: bool | None = None
    """``segments`` read-out: score an object phrase that states a number >= 2 ("two red cubes")
    also by how many regions carry it (soft counts at learned cosine thresholds and its top
    cosines -> a small MLP -> log-probability of the stated count), so "two" and "three" differ.
    Reads ``PairBatch.counts``; starts at exactly 0. None: off (what a head is built with; the 3D
    quickstart fills in on). Checkpoints saved before this key existed load with False."""
    count_form: str | None = None
    """``segments`` read-out, with ``count_term``: how the count MLP's output gives p(n).
    'classes' (the default): one logit per count 1..8; 'ordinal': a count estimate ``μ`` and a
    confidence ``g`` with logits ``−g (n − μ)²``, so a count the MLP never saw for a phrase is
    still nearer to the counts around its estimate; 'density': no MLP: the count estimate ``ĉ`` is
    linear in soft counts that add over regions (regions whose cosine with the phrase, pooled
    without its number words, passes learned thresholds; the same of local peaks), the term
    ``−(n − ĉ)²`` with a learned weight starting at 0, and training also regresses ``ĉ`` on the
    true captions (the stated n for "two cubes", at least 1 for "a cube"): counting is additive
    over the image, so a count never stated of a shape is the sum of densities trained on the
    counts that were. None: 'classes' (the 3D quickstart fills in 'density'). Checkpoints saved
    before this key existed load with 'classes'."""
    number_words: str | None = None
    """``segments`` read-out: what a phrase stating a number ("three spheres") pools. 'keep' (the
    default): all its tokens; 'count': the count term pools it without its number words
    ("spheres"), so that a count never stated of a shape in training is read from a phrase that
    was; 'drop': every term does (best-region match, relations, counts). Reads
    ``PairBatch.number_tokens``. None: 'keep' (the 3D quickstart fills in 'drop'). Checkpoints
    saved before this key existed load with 'keep'."""
    count_peaks: bool = False
    """``segments`` read-out, with ``count_term``: the count MLP also reads counts relative to
    the phrase's best region (regions within learned margins of its cosine; the same of local
    peaks only, regions above their 8 grid neighbours, which count objects rather than the
    regions they cover; the top cosines minus the best), which do not move when a phrase's
    cosines all shift. Checkpoints saved before this key existed load with False."""
    compare_term: bool = False
    """``segments`` read-out: score each relation also by comparing its two objects' regions in
    ``COMPARE_HEADS`` learned subspaces: ``log Σ_pq att_s[p] att_o[q] exp(Σ_j w_j cos_j(v_p, v_q))``,
    ``w`` a linear function of the predicate starting at 0 (so the term starts at exactly 0),
    ``cos_j`` the cosine of the two region vectors in subspace j. What "same color as" needs: one
    subspace can hold colour alone, and the object is searched among the regions its phrase
    fits. Checkpoints saved before this key existed load with False."""
    local_loss: bool | None = None
    """With ``global_path``: also train the localized score on a candidate-set loss of its own (as
    without the global path), besides the mixed score's loss. None: on for ``segments`` (whose
    localized terms are gated by the parse; on ShapesWorld it keeps them as sharp as without the
    global path), off for the joint read-outs (their summary term has no such gate: trained on its
    own it fits captions without structure and falls below the global head, see README)."""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.depth < (0 if self.readout == "segments" else 1) or self.heads <= 0:
            raise UserError(
                f"model: width and heads must be positive and depth at least 1 (0 allowed with readout "
                f"'segments'); got width={self.width}, depth={self.depth}, heads={self.heads}"
            )
        if self.width % self.heads:
            raise UserError(
                f"model.width={self.width} is not divisible by model.heads={self.heads}: pick heads dividing width"
            )
        for name, choices in (
            ("pos", POSITIONS),
            ("readout", READOUTS),
            ("global_form", GLOBAL_FORMS),
            ("relation_form", RELATION_FORMS),
            ("pair_features", PAIR_FEATURES),
            ("count_form", COUNT_FORMS),
            ("number_words", NUMBER_WORDS),
            ("block_init", BLOCK_INITS),
        ):
            value = getattr(self, name)
            if value not in choices and not (value is None and name in RESOLVED_LATER):
                raise UserError(f"model.{name}={value!r} unknown; choices: {', '.join(choices)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"model.dropout={self.dropout} must be in [0, 1)")
        if self.mlp_ratio <= 0 or self.global_mlp_ratio <= 0:
            raise UserError("model.mlp_ratio and model.global_mlp_ratio must be positive")
