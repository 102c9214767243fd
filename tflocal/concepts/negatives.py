"""Hard negatives: single operators and their iterated composition.

:func:`make_negatives` applies ``depth`` operators in a row to a caption. Each step
re-parses the current text, lists the candidates of the chosen operator
(:mod:`tflocal.concepts.operators`), and keeps one that

- changes the text (compared after :func:`~tflocal.concepts.render.normalize`),
- does not return to any earlier text of the chain,
- brings in no word the original caption had or an earlier step removed, and does not
  exchange a pair an earlier SWAP already exchanged (so no step undoes another).

Deterministic for a seed: the random stream is seeded from ``(seed, caption)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tflocal.concepts.operators import OPERATORS, Candidate, candidates
from tflocal.concepts.parser import parse
from tflocal.concepts.render import apply_edit, normalize
from tflocal.concepts.vocab import Vocabulary, default_vocabulary

CHAIN_SEP = ">"
"""Joins the operators of a chain in application order: ``"replace>swap"`` is a REPLACE then a SWAP."""


def chain_name(ops: Sequence[str]) -> str:
    """The chain of operators applied, e.g. ``["swap", "swap"] -> "swap>swap"`` (kinds left out)."""
    return CHAIN_SEP.join(ops)


@dataclass
class Negative:
    """A hard negative. ``op``/``kind`` are those of the single step, or the common value
    across steps, or "mixed"; ``steps`` lists ``(op, kind)`` per step; ``touched`` the
    concepts each step involved (flattened)."""

    text: str
    op: str
    kind: str
    depth: int
    touched: list[str] = field(default_factory=list)
    steps: list[tuple[str, str]] = field(default_factory=list)

    @property
    def chain(self) -> str:
        """The operators of ``steps`` in application order (:func:`chain_name`); ``op`` when
        ``steps`` is empty."""
        return chain_name([op for op, _ in self.steps]) if self.steps else self.op

    def to_json(self, positive: int = 0) -> dict:
        """The manifest form of a negative (``chain``: see :attr:`chain`)."""
        return {
            "text": self.text,
            "op": self.op,
            "kind": self.kind,
            "depth": self.depth,
            "chain": self.chain,
            "positive": positive,
        }


def _common(values: list[str]) -> str:
    return values[0] if len(set(values)) == 1 else "mixed"


Step = tuple[str, str | None]


def _relation_words(cap, v: Vocabulary) -> set[str]:
    """Relation phrases of a caption (as written and canonical), for the no-undo rule."""
    return {p for r in cap.relations for p in (r.prep, v.canonical_relation(r.prep), r.verb) if p}


def compose(
    caption: str,
    steps: Sequence[Step],
    rng: random.Random,
    vocab: Vocabulary | None = None,
    accept: Callable[[str], bool] | None = None,
) -> Negative | None:
    """Apply ``steps`` (``(op, kind or None)``) in order; None when some step has no valid
    candidate. ``accept(text)`` may veto a final text (ShapesWorld checks it is false)."""
    v = vocab or default_vocabulary()
    original = parse(caption, v)
    banned = set(original.words()) | _relation_words(original, v)
    chain = [normalize(caption)]
    swapped: list[frozenset[str]] = []
    text, done, touched = caption, [], []
    for depth, (op, kind) in enumerate(steps, start=1):
        cap = original if depth == 1 else parse(text, v)
        kinds = [kind] if kind else list(OPERATORS[op])
        rng.shuffle(kinds)
        chosen: tuple[Candidate, str] | None = None
        for k in kinds:
            cands = candidates(cap, v, op, k)
            rng.shuffle(cands)
            for c in cands:
                if any(w in banned for w in c.new_words):
                    continue
                if op == "swap" and frozenset(c.touched) in swapped:
                    continue
                new_text = apply_edit(cap, c.edit, v)
                if normalize(new_text) in chain:
                    continue
                if depth == len(steps) and accept is not None and not accept(new_text):
                    continue
                chosen = (c, new_text)
                break
            if chosen:
                break
        if chosen is None:
            return None
        c, new_text = chosen
        after = parse(new_text, v)
        banned |= (set(cap.words()) - set(after.words())) | (
            _relation_words(cap, v) - _relation_words(after, v)
        )
        if op == "swap":
            swapped.append(frozenset(c.touched))
        chain.append(normalize(new_text))
        text = new_text
        done.append((c.op, c.kind))
        touched.extend(c.touched)
    ops, kinds_done = [d[0] for d in done], [d[1] for d in done]
    return Negative(text, _common(ops), _common(kinds_done), len(done), touched, done)


def make_negatives(
    caption: str,
    ops: Sequence[str] = ("swap", "replace", "add"),
    depth: int = 1,
    n: int = 3,
    seed: int = 0,
    vocab: Vocabulary | None = None,
) -> list[Negative]:
    """Up to ``n`` distinct negatives of ``caption``, each made by ``depth`` operators in a row
    (1..3). The first step cycles over ``ops`` so that the negatives cover every operator;
    later steps draw an operator at random from ``ops``. Fewer than ``n`` come back when the
    caption offers too few edits (e.g. SWAP needs two objects)."""
    if not 1 <= depth <= 3:
        from tflocal.errors import UserError

        raise UserError(f"depth must be 1, 2 or 3 (got {depth})")
    for op in ops:
        if op not in OPERATORS:
            from tflocal.errors import UserError

            raise UserError(f"unknown operator {op!r}; choose from {sorted(OPERATORS)}")
    rng = random.Random(f"{seed}:{caption}")
    out: list[Negative] = []
    seen = {normalize(caption)}
    order = list(ops)
    rng.shuffle(order)
    for attempt in range(n * 3):
        first = order[attempt % len(order)]
        steps = [(first, None)] + [(rng.choice(list(ops)), None) for _ in range(depth - 1)]
        neg = compose(caption, steps, rng, vocab)
        if neg is None or normalize(neg.text) in seen:
            continue
        seen.add(normalize(neg.text))
        out.append(neg)
        if len(out) == n:
            break
    return out
