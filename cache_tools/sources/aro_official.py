"""ARO's own COCO-Order / Flickr30k-Order perturbations, reproduced exactly.

ARO (mertyg/vision-language-models-are-bows) builds the order sets in ``dataset_zoo``: after
``seed_all(seed)`` (``random.seed`` and ``np.random.seed``, once, default seed 1) it walks the
annotation file in order and, for every caption, appends ``pre_caption(f(caption), 30)`` for
``f`` in ``shuffle_nouns_and_adj, shuffle_allbut_nouns_and_adj, shuffle_within_trigrams,
shuffle_trigrams`` (``TextShuffler``):

* nouns / adjectives: spaCy ``en_core_web_sm`` tokens; the tokens tagged NN, NNS, NNP, NNPS are
  permuted among themselves with ``np.random.permutation``, then those tagged JJ, JJR, JJS;
* all but nouns and adjectives: one ``np.random.permutation`` of every other token (spaces and
  punctuation included);
* within trigrams / trigrams: ``nltk.word_tokenize`` tokens cut into consecutive threes (the
  last may be shorter); ``random.shuffle`` of each trigram in place, or of the list of trigrams.

The result is ``" ".join`` of the tokens. :class:`OfficialShuffler` does exactly this with the
two global generators made explicit (``np.random.RandomState(seed)`` is the generator behind
``np.random.seed``; ``random.Random(seed)`` the one behind ``random.seed``), and it must be fed
every caption of the file in file order, as ARO does: the n-th caption's negatives depend on
everything drawn before it.

The tagger and tokenizer are parameters, so the algorithm is testable with supplied tags; the
real ones (:func:`load_official_tools`) need, on the user's machine::

    pip install spacy nltk
    python -m spacy download en_core_web_sm
    python -c "import nltk; nltk.download('punkt_tab'); nltk.download('punkt')"
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")
ADJ_TAGS = ("JJ", "JJR", "JJS")
INSTALL = (
    "pip install spacy nltk && python -m spacy download en_core_web_sm && "
    "python -c \"import nltk; nltk.download('punkt_tab'); nltk.download('punkt')\""
)
"""What a user runs to get ARO's exact perturbations."""

Tagger = Callable[[str], Sequence[tuple[str, str]]]
"""caption -> [(token text, Penn Treebank tag)] as spaCy's ``[(t.text, t.tag_) for t in nlp(caption)]``."""
Tokenizer = Callable[[str], list[str]]
"""caption -> tokens, as ``nltk.word_tokenize``."""

ORDER = (
    "shuffle_nouns_and_adj",
    "shuffle_allbut_nouns_and_adj",
    "shuffle_within_trigrams",
    "shuffle_trigrams",
)


def get_trigrams(tokens: list[str]) -> list[list[str]]:
    """ARO's ``get_trigrams``: consecutive threes, the last one possibly shorter."""
    return [tokens[i : i + 3] for i in range(0, len(tokens), 3)]


class OfficialShuffler:
    """ARO's ``TextShuffler`` after ``seed_all(seed)``; call :meth:`perturb` on captions in file order."""

    def __init__(self, tagger: Tagger, tokenizer: Tokenizer, seed: int = 1) -> None:
        self.tagger, self.tokenizer = tagger, tokenizer
        self.np_rng = np.random.RandomState(seed)
        self.py_rng = random.Random(seed)

    def shuffle_nouns_and_adj(self, ex: str) -> str:
        doc = list(self.tagger(ex))
        text = np.array([t for t, _ in doc])
        noun_idx = [i for i, (_, tag) in enumerate(doc) if tag in NOUN_TAGS]
        adjective_idx = [i for i, (_, tag) in enumerate(doc) if tag in ADJ_TAGS]
        text[noun_idx] = self.np_rng.permutation(text[noun_idx])
        text[adjective_idx] = self.np_rng.permutation(text[adjective_idx])
        return " ".join(text)

    def shuffle_allbut_nouns_and_adj(self, ex: str) -> str:
        doc = list(self.tagger(ex))
        text = np.array([t for t, _ in doc])
        noun_adj_idx = [i for i, (_, tag) in enumerate(doc) if tag in NOUN_TAGS + ADJ_TAGS]
        else_idx = np.ones(text.shape[0])
        else_idx[noun_adj_idx] = 0
        else_idx = else_idx.astype(bool)
        text[else_idx] = self.np_rng.permutation(text[else_idx])
        return " ".join(text)

    def shuffle_within_trigrams(self, ex: str) -> str:
        trigrams = get_trigrams(self.tokenizer(ex))
        for trigram in trigrams:
            self.py_rng.shuffle(trigram)
        return " ".join(" ".join(t) for t in trigrams)

    def shuffle_trigrams(self, ex: str) -> str:
        trigrams = get_trigrams(self.tokenizer(ex))
        self.py_rng.shuffle(trigrams)
        return " ".join(" ".join(t) for t in trigrams)

    def perturb(self, caption: str) -> dict[str, str]:
        """The four perturbations of ``caption`` (raw, not yet ``pre_caption``-ed), in ARO's order."""
        return {name: getattr(self, name)(caption) for name in ORDER}


def load_official_tools() -> tuple[Tagger, Tokenizer] | str:
    """spaCy ``en_core_web_sm`` tagging and ``nltk.word_tokenize``, or why they are unavailable."""
    try:
        import spacy
    except ImportError:
        return "spaCy is not installed"
    try:
        nlp = spacy.load("en_core_web_sm")
    except OSError:
        return "spaCy's English model en_core_web_sm is not installed"
    try:
        import nltk

        nltk.word_tokenize("a test.")
    except ImportError:
        return "NLTK is not installed"
    except LookupError:
        return "NLTK's punkt tokenizer data is not installed"

    def tagger(ex: str) -> list[tuple[str, str]]:
        return [(t.text, t.tag_) for t in nlp(ex)]

    return tagger, nltk.word_tokenize
