"""Benchmark metrics as pure functions over score arrays (no cache, no model).

Each function states the convention of the benchmark's published evaluation code, ties
included, so that a cosine run reproduces the published numbers:

* pairwise benchmarks (SugarCrepe, VALSE, ShapesWorld, BiVLC/Winoground conditions): correct
  iff the positive scores *strictly* higher; a tie is wrong;
* ARO VG-Relation / VG-Attribution: ``argmax`` over ``[false, true]`` must be 1, so a tie is
  wrong (same as strict);
* ARO COCO-Order / Flickr30k-Order: ``argmax`` over ``[true, perturbation_1, ...]`` must be 0,
  so a tie with the true caption counts as correct (numpy's argmax returns the first maximum).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def pair_correct(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """pos, neg: [N] scores of the positive and the negative caption -> [N] bool, pos > neg."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    if pos.shape != neg.shape or pos.ndim != 1:
        raise ValueError(f"pair_correct: expected two [N] arrays, got {pos.shape} and {neg.shape}")
    return pos > neg


def mean(correct: np.ndarray) -> float:
    """[N] bool -> fraction True (NaN when N == 0)."""
    correct = np.asarray(correct)
    return float(correct.mean()) if correct.size else float("nan")


def winoground_correct(s: np.ndarray) -> dict[str, np.ndarray]:
    """Winoground / BiVLC text, image and group conditions.

    s: [N, 2, 2] with ``s[n, c, i]`` = score of caption c with image i, where caption 0
    describes image 0 and caption 1 image 1 (BiVLC: c = positive caption, i = positive image).
    Returns ``{"text": [N] bool, "image": [N] bool, "group": [N] bool}``:
    text  = s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1);
    image = s(c0,i0) > s(c0,i1) and s(c1,i1) > s(c1,i0); group = text and image.
    """
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 3 or s.shape[1:] != (2, 2):
        raise ValueError(f"winoground_correct: expected [N, 2, 2] scores, got {s.shape}")
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    return {"text": text, "image": image, "group": text & image}


def precision_at_1(scores: np.ndarray, true_col: int = 0) -> np.ndarray:
    """ARO order sets: scores [N, K] over K captions of one image -> [N] bool.

    Correct when ``argmax`` (first maximum) is ``true_col``, as ARO computes it: with the true
    caption in column 0 a tie counts as correct.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"precision_at_1: expected [N, K] scores, got {scores.shape}")
    return np.argmax(scores, axis=1) == true_col


def per_group(correct: np.ndarray, groups: Sequence[str] | np.ndarray) -> dict[str, tuple[float, int]]:
    """correct [N] bool, groups [N] labels -> {label: (accuracy, count)}, labels sorted."""
    correct = np.asarray(correct, dtype=bool)
    groups = np.asarray(groups, dtype=object).astype(str)
    if correct.shape != groups.shape:
        raise ValueError(f"per_group: {correct.shape} results vs {groups.shape} labels")
    out: dict[str, tuple[float, int]] = {}
    for g in sorted(set(groups.tolist())):
        m = groups == g
        out[g] = (float(correct[m].mean()), int(m.sum()))
    return out


def macro_accuracy(
    correct: np.ndarray,
    groups: Sequence[str] | np.ndarray,
    exclude: Iterable[str] = (),
    min_count: int = 1,
) -> tuple[float, dict[str, tuple[float, int]]]:
    """Mean over groups of the per-group accuracy.

    Groups in ``exclude`` or with fewer than ``min_count`` items are dropped (ARO VG-Relation
    drops symmetric relations; VG-Attribution drops attribute pairs seen fewer than 25 times).
    Returns (macro accuracy, the kept groups as {label: (accuracy, count)}).
    """
    excluded = set(exclude)
    kept = {g: v for g, v in per_group(correct, groups).items() if g not in excluded and v[1] >= min_count}
    macro = float(np.mean([v[0] for v in kept.values()])) if kept else float("nan")
    return macro, kept
