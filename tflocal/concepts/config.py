"""The hard-negative recipe: what ``tflocal negatives`` holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from tflocal.concepts.operators import OPERATORS
from tflocal.errors import UserError


@dataclass
class NegativesConfig:
    data: str | None = None
    """Manifest whose captions get negatives, or any data source ``FORMAT:PATH[?opt=value]``
    (e.g. ``karpathy:data/coco/dataset_coco.json?split=train,restval``) to turn into a manifest."""
    explain: str | None = None
    """Instead: lines ``{"caption": ..., "negative": ...}`` to label with op and kind."""
    replicate: str | None = None
    """Instead: ``BENCH:PATH`` (sugarcrepe, aro, vg_relation, vg_attribution, coco_order, valse) to
    measure how many of the benchmark's negatives the operators make at depth <= ``--depth`` (2
    unless given); ``--out`` gets JSON (one object per subset) and a markdown table next to it.
    SugarCrepe needs only its JSON files, not the COCO images."""
    out: str = ""
    """Output JSONL."""
    ops: list[str] = field(default_factory=lambda: ["swap", "replace", "add"])
    """Operators applied (comma-separated on the command line)."""
    depth: list[int] = field(default_factory=list)
    """Operators applied in a row: 1, 2, 3 or a list like 1,2,3 (1 unless given). With
    --replicate: one N in 1..3, the most operators in a row tried (2 unless given)."""
    per_caption: int = 3
    """Negatives per caption and depth."""
    seed: int = 0
    kinds: str = "benchmark"
    """--explain: two noun phrases that trade places are an object swap ('benchmark', as SugarCrepe
    and Winoground label them) or, between a relation's subject and object, a relation swap
    ('tflocal', as the operators label it)."""

    def __post_init__(self) -> None:
        if sum(bool(x) for x in (self.data, self.explain, self.replicate)) != 1:
            raise UserError(
                "give exactly one of --in/--data MANIFEST, --explain PAIRS.jsonl and --replicate BENCH:PATH"
            )
        if not self.out:
            raise UserError(f"missing 'out': give --out {'OUT.json' if self.replicate else 'OUT.jsonl'}")
        bad = [o for o in self.ops if o not in OPERATORS]
        if bad or not self.ops:
            raise UserError(f"--ops: unknown operator(s) {bad}; choose from {sorted(OPERATORS)}")
        if not self.depth:
            self.depth = [2] if self.replicate else [1]
        if any(d not in (1, 2, 3) for d in self.depth):
            raise UserError(f"--depth must be integers in 1..3 (got {self.depth!r})")
        if self.replicate and len(self.depth) != 1:
            raise UserError(
                f"--replicate takes one --depth N (1, 2 or 3: the most operators in a row tried), got {self.depth!r}"
            )
        if self.kinds not in ("benchmark", "tflocal"):
            raise UserError(f"--kinds {self.kinds!r}: choose benchmark or tflocal")
        if self.per_caption < 1:
            raise UserError("--per-caption must be >= 1")
