"""Caption structure (objects, attributes, relations) and the SWAP / REPLACE / ADD operators.

from tflocal.concepts import parse, segments, make_negatives, explain
parse("A man in a red shirt riding a brown horse.")          # -> Caption
segments("A man riding a brown horse")   # ['a man', 'a brown horse', 'man riding horse']
make_negatives("a red cube left of a blue ball", depth=2, n=3, seed=0)  # -> [Negative]
explain("a red cube", "a blue cube")     # {'op': 'replace', 'kind': 'attribute', ...}
"""

from __future__ import annotations

from tflocal.concepts.explain import explain
from tflocal.concepts.negatives import Negative, compose, make_negatives
from tflocal.concepts.operators import OPERATORS, Candidate, candidates
from tflocal.concepts.parser import parse, tokenize
from tflocal.concepts.render import normalize
from tflocal.concepts.segments import segments
from tflocal.concepts.structure import Attribute, Caption, Object, Relation, Token
from tflocal.concepts.vocab import Vocabulary, article_for, default_vocabulary

__all__ = [
    "OPERATORS",
    "Attribute",
    "Candidate",
    "Caption",
    "Negative",
    "Object",
    "Relation",
    "Token",
    "Vocabulary",
    "article_for",
    "candidates",
    "compose",
    "default_vocabulary",
    "explain",
    "make_negatives",
    "normalize",
    "parse",
    "segments",
    "tokenize",
]
