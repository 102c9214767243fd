"""Where a caption's parsed objects and relations sit among an encoder's tokens.

The segment read-out of TFLocal pools each object phrase ("a small red circle") over its tokens
and matches it to image regions, then scores each relation ("left of") from where its two
objects were found. Both need the parse of :mod:`tflocal.concepts.parser` mapped onto the
encoder's token sequence: this module aligns token strings (WordPiece ``##x``, CLIP BPE, byte-level
``Ġx``, SentencePiece ``▁x``; special tokens such as ``[CLS]`` have no text) to character offsets
of the caption and turns parser spans into token masks.

A caption the parser finds no object in gets an all-False layout; the head then falls back to
word-level MaxSim for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cache_tools.encoders.tokens import PIECE_MARKS, clean_piece
from tflocal.concepts.parser import parse
from tflocal.concepts.vocab import Vocabulary

MAX_OBJECTS = 4
MAX_RELATIONS = 4


def _piece_text(piece: str) -> str:
    """The caption text a token piece stands for, lowercased ('' for special tokens and for a
    bare word-start mark). Builds on the adapters' :func:`clean_piece`, which keeps WordPiece's
    ``##`` for display; here it is dropped too."""
    if (piece.startswith("<") and piece.endswith(">")) or (piece.startswith("[") and piece.endswith("]")):
        return ""  # [CLS], [SEP], <start_of_text>, <|endoftext|>, <pad>, ...
    out = clean_piece(piece)
    if out in PIECE_MARKS:
        return ""
    return out.removeprefix("##").lower()


def token_char_spans(text: str, token_strings: Sequence[str]) -> list[tuple[int, int] | None]:
    """Character offsets ``(start, end)`` in ``text`` of each token, None for special tokens and
    for pieces that cannot be found at the current position (e.g. ``[UNK]``). Matching is
    case-insensitive and left to right; whitespace between tokens is skipped, and after a piece
    that was not found (``[UNK]``, a normalized character) the next piece may skip text."""
    low = text.lower()
    cur = 0
    lost = False  # an earlier piece was not found: the next one may skip the text it stood for
    out: list[tuple[int, int] | None] = []
    for piece in token_strings:
        w = _piece_text(str(piece))
        if not w and str(piece).strip("[]<>").lower() != "unk":
            out.append(None)
            continue
        j = low.find(w, cur) if w else -1
        if j < 0 or (low[cur:j].strip() and not lost):
            out.append(None)
            lost = True
            continue
        out.append((j, j + len(w)))
        cur, lost = j + len(w), False
    return out


PAIR_WORDS = ("a pair of", "pair of")
"""Quantifiers the parser keeps without a number that state one: 2."""


def caption_layout(
    text: str,
    token_strings: Sequence[str],
    vocab: Vocabulary | None = None,
    max_objects: int = MAX_OBJECTS,
    max_relations: int = MAX_RELATIONS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token masks of a caption's parsed objects and relations.

    Returns ``objects`` bool [K, T] (object k's phrase: determiner, attributes, head noun, and
    predicative attributes), ``relation_tokens`` bool [R, T] (the predicate's tokens) and
    ``relations`` int64 [R, 2] (subject, object) indices into ``objects``, -1 where unused;
    K = ``max_objects``, R = ``max_relations``, T = ``len(token_strings)``. Objects past K and
    relations touching them are dropped.
    """
    return caption_layout_counts(text, token_strings, vocab, max_objects, max_relations)[:3]


def caption_layout_counts(
    text: str,
    token_strings: Sequence[str],
    vocab: Vocabulary | None = None,
    max_objects: int = MAX_OBJECTS,
    max_relations: int = MAX_RELATIONS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`caption_layout` (one parse) plus ``counts`` int64 [K]: the number each object
    phrase states ("two cubes": 2, "both", "a pair of": 2, "a cube": 1), 0 where it states none
    ("the cube", "cubes") or where there is no object k; and ``number_tokens`` bool [K, T]: the
    tokens of the number words of each phrase stating 2 or more (its determiner: "two", "both",
    "a pair of"), all False for the others."""
    T = len(token_strings)
    objects = np.zeros((max_objects, T), dtype=bool)
    rel_tokens = np.zeros((max_relations, T), dtype=bool)
    rel_args = np.full((max_relations, 2), -1, dtype=np.int64)
    counts = np.zeros(max_objects, dtype=np.int64)
    numbers = np.zeros((max_objects, T), dtype=bool)
    cap = parse(text, vocab)
    if not cap.objects:
        return objects, rel_tokens, rel_args, counts, numbers
    spans = token_char_spans(text, token_strings)
    starts = np.array([s[0] if s else -1 for s in spans], dtype=np.int64)
    ends = np.array([s[1] if s else -1 for s in spans], dtype=np.int64)
    real = starts >= 0

    def mask(word_spans: list[tuple[int, int]]) -> np.ndarray:
        m = np.zeros(T, dtype=bool)
        for s, e in word_spans:
            if e > s:
                a, b = cap.char_span((s, e))
                m |= real & (starts < b) & (ends > a)
        return m

    for k, obj in enumerate(cap.objects[:max_objects]):
        objects[k] = mask([obj.phrase, *(a.span for a in cap.object_attributes(k))])
        counts[k] = _stated_count(cap, obj)
        if counts[k] >= 2:
            numbers[k] = mask([obj.det]) & objects[k]
    r = 0
    for rel in cap.relations:
        if r < max_relations and rel.subject < max_objects and rel.object < max_objects:
            rel_tokens[r] = mask([rel.span])
            rel_args[r] = (rel.subject, rel.object)
            r += 1
    return objects, rel_tokens, rel_args, counts, numbers


def _stated_count(cap: Any, obj: Any) -> int:
    """The number an object phrase states (the parser's count, or 2 for "a pair of"), 0: none."""
    if obj.count is not None:
        return max(int(obj.count), 0)
    det = " ".join(t.text.lower() for t in cap.tokens[obj.det[0] : obj.det[1]])
    return 2 if det in PAIR_WORDS else 0


def layout_tensors(
    texts: Sequence[str],
    token_strings: Sequence[Sequence[str]],
    n_tokens: int | None = None,
    vocab: Vocabulary | None = None,
    max_objects: int = MAX_OBJECTS,
    max_relations: int = MAX_RELATIONS,
) -> dict[str, torch.Tensor]:
    """Layouts of N captions padded to ``n_tokens`` token positions (None: the longest token
    list), as PairBatch fields: ``segments`` bool [N, K, n_tokens], ``relation_tokens`` bool
    [N, R, n_tokens], ``relations`` long [N, R, 2] (see :func:`caption_layout`), ``counts`` long
    [N, K] and ``number_tokens`` bool [N, K, n_tokens] (see :func:`caption_layout_counts`).
    Tokens past ``n_tokens`` are cut."""
    if len(texts) != len(token_strings):
        raise ValueError(f"layout_tensors: {len(texts)} captions but {len(token_strings)} token lists")
    if n_tokens is None:
        n_tokens = max((len(t) for t in token_strings), default=0)
    layouts = [
        caption_layout_counts(str(text), list(toks), vocab, max_objects, max_relations)
        for text, toks in zip(texts, token_strings)
    ]
    return stack_layouts(layouts, n_tokens, max_objects, max_relations)


def stack_layouts(
    layouts: Sequence[tuple[np.ndarray, ...]],
    n_tokens: int,
    max_objects: int = MAX_OBJECTS,
    max_relations: int = MAX_RELATIONS,
) -> dict[str, torch.Tensor]:
    """N :func:`caption_layout_counts` (or :func:`caption_layout`: counts 0, no number tokens)
    results padded or cut to ``n_tokens`` token positions, as the PairBatch fields of
    :func:`layout_tensors`."""
    N = len(layouts)
    seg = np.zeros((N, max_objects, n_tokens), dtype=bool)
    rtok = np.zeros((N, max_relations, n_tokens), dtype=bool)
    rel = np.full((N, max_relations, 2), -1, dtype=np.int64)
    cnt = np.zeros((N, max_objects), dtype=np.int64)
    num = np.zeros((N, max_objects, n_tokens), dtype=bool)
    for i, (o, rt, ra, *c) in enumerate(layouts):
        t = min(n_tokens, o.shape[1])
        seg[i, :, :t], rtok[i, :, :t], rel[i] = o[:, :t], rt[:, :t], ra
        if c:
            cnt[i] = c[0]
        if len(c) > 1:
            num[i, :, :t] = c[1][:, :t]
    return {
        "segments": torch.from_numpy(seg),
        "relation_tokens": torch.from_numpy(rtok),
        "relations": torch.from_numpy(rel),
        "counts": torch.from_numpy(cnt),
        "number_tokens": torch.from_numpy(num),
    }


LAYOUT_FIELDS = ("segments", "relation_tokens", "relations", "counts", "number_tokens")
"""PairBatch fields :func:`layout_tensors` fills."""


def layout_from_cache(
    cache: Any, text_idx: Sequence[int] | np.ndarray, n_tokens: int | None = None
) -> dict[str, torch.Tensor]:
    """:func:`layout_tensors` of cache texts ``text_idx`` [N] (a ``cache_tools`` Cache: its
    ``strings`` and ``token_strings_batch``)."""
    idx = np.asarray(text_idx, dtype=np.int64).reshape(-1)
    return layout_tensors([str(s) for s in cache.strings[idx]], cache.token_strings_batch(idx), n_tokens)
