"""Caption segments: each object with its attributes, and each relation, as short phrases."""

from __future__ import annotations

from tflocal.concepts.parser import parse
from tflocal.concepts.vocab import Vocabulary


def segments(caption: str, vocab: Vocabulary | None = None) -> list[str]:
    """Phrases for the training-free SGI scorer: one per object ("a red shirt": determiner,
    attributes in order, head noun) then one per relation ("man riding horse"). A caption
    with no recognised object yields ``[caption]``."""
    cap = parse(caption, vocab)
    out: list[str] = []
    for i, o in enumerate(cap.objects):
        det = " ".join(t.lower for t in cap.tokens[o.det[0] : o.det[1]])
        attrs = [a.word for a in sorted(cap.object_attributes(i), key=lambda a: (a.predicative, a.span[0]))]
        out.append(" ".join(x for x in (det, *attrs, o.head.lower()) if x))
    for r in cap.relations:
        out.append(
            f"{cap.objects[r.subject].head.lower()} {r.predicate} {cap.objects[r.object].head.lower()}"
        )
    return out or [caption]
