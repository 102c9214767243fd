"""Late-interaction retrieval index: image-side vectors computed once per cache and head
(:mod:`.build`, stored by :mod:`.store`, optionally compressed by :mod:`.compress`), and a
PLAID-style first stage over the whole corpus scored exactly by the head (:mod:`.late`).

    store = build_late_index(cache, scorer.head, "idx/")        # or `tflocal index`
    late = LateIndex(store, scorer)                          # refuses another checkpoint
    rows, scores, n_scored = late.search("a red cube left of a blue ball", k=10)
"""

from tflocal.retrieval.head_sides import TOWERS, Tower, fingerprint, score_stored, text_states_of, tower_of
from tflocal.retrieval.late_build import build_late_index
from tflocal.retrieval.late_index import LateIndex, open_late_index
from tflocal.retrieval.store import VectorStore

__all__ = [
    "TOWERS",
    "LateIndex",
    "Tower",
    "VectorStore",
    "build_late_index",
    "fingerprint",
    "open_late_index",
    "score_stored",
    "text_states_of",
    "tower_of",
]
