"""ARO's own order perturbations (COCO-Order / Flickr30k-Order), reproduced exactly.

The official procedure (mertyg/vision-language-models-are-bows: ``main_aro.seed_all`` then
``dataset_zoo.perturbations.TextShuffler`` over the captions in file order) is transcribed
below line for line, with its global ``np.random`` / ``random`` state; spaCy's tags and NLTK's
tokens are supplied by hand so the test needs neither. The expected strings were worked out
from that algorithm for seed 1.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from cache_tools.errors import UserError
from cache_tools.sources import aro as aro_module
from cache_tools.sources import open_source
from cache_tools.sources.aro_official import OfficialShuffler, load_official_tools
from cache_tools.sources.word_order import pre_caption

# hand tagging, as en_core_web_sm tags these captions (Penn Treebank tags)
TAGS = {
    "A": "DT", "a": "DT", "the": "DT", "The": "DT", "Two": "CD", "on": "IN", "in": "IN", "with": "IN",
    "man": "NN", "horse": "NN", "beach": "NN", "dogs": "NNS", "ball": "NN", "park": "NN", "cat": "NN",
    "sofa": "NN", "kitchen": "NN", "woman": "NN", "pizza": "NN",
    "riding": "VBG", "play": "VBP", "sleeps": "VBZ", "cuts": "VBZ",
    "brown": "JJ", "red": "JJ", "white": "JJ", "large": "JJ", "small": "JJ", "old": "JJ", ".": ".",
}  # fmt: skip
CAPTIONS = [
    "A man riding a brown horse on the beach .",
    "Two dogs play with a red ball in the park .",
    "A white cat sleeps on a small old sofa .",
    "The woman cuts a large pizza in the kitchen .",
]


def tagger(ex: str) -> list[tuple[str, str]]:
    return [(w, TAGS[w]) for w in ex.split()]


def tokenizer(ex: str) -> list[str]:
    return ex.split()


class Token:
    def __init__(self, text: str, tag: str):
        self.text, self.tag_ = text, tag


def nlp(ex: str) -> list[Token]:
    return [Token(w, t) for w, t in tagger(ex)]


# --- the official code, transcribed (global generators, as after seed_all) --------------------
def off_shuffle_nouns_and_adj(ex):
    doc = nlp(ex)
    tokens = [token.text for token in doc]
    text = np.array(tokens)
    noun_idx = [i for i, token in enumerate(doc) if token.tag_ in ["NN", "NNS", "NNP", "NNPS"]]
    adjective_idx = [i for i, token in enumerate(doc) if token.tag_ in ["JJ", "JJR", "JJS"]]
    text[noun_idx] = np.random.permutation(text[noun_idx])
    text[adjective_idx] = np.random.permutation(text[adjective_idx])
    return " ".join(text)


def off_shuffle_allbut_nouns_and_adj(ex):
    doc = nlp(ex)
    tokens = [token.text for token in doc]
    text = np.array(tokens)
    noun_adj_idx = [
        i for i, token in enumerate(doc) if token.tag_ in ["NN", "NNS", "NNP", "NNPS", "JJ", "JJR", "JJS"]
    ]
    else_idx = np.ones(text.shape[0])
    else_idx[noun_adj_idx] = 0
    else_idx = else_idx.astype(bool)
    text[else_idx] = np.random.permutation(text[else_idx])
    return " ".join(text)


def off_get_trigrams(sentence):
    trigrams = []
    trigram = []
    for i in range(len(sentence)):
        trigram.append(sentence[i])
        if i % 3 == 2:
            trigrams.append(trigram[:])
            trigram = []
    if trigram:
        trigrams.append(trigram)
    return trigrams


def off_shuffle_within_trigrams(ex):
    trigrams = off_get_trigrams(tokenizer(ex))
    for trigram in trigrams:
        random.shuffle(trigram)
    return " ".join([" ".join(trigram) for trigram in trigrams])


def off_shuffle_trigrams(ex):
    trigrams = off_get_trigrams(tokenizer(ex))
    random.shuffle(trigrams)
    return " ".join([" ".join(trigram) for trigram in trigrams])


def official_dataset(captions_per_image: list[list[str]], seed: int = 1) -> list[list[str]]:
    """COCO_Order.__init__ after seed_all(seed): per caption, [pre_caption(c)] + 4 perturbations."""
    random.seed(seed)
    np.random.seed(seed)
    fns = [off_shuffle_nouns_and_adj, off_shuffle_allbut_nouns_and_adj, off_shuffle_within_trigrams]
    fns.append(off_shuffle_trigrams)
    cases = []
    for caps in captions_per_image:
        for caption in caps:
            cases.append([pre_caption(caption, 30)] + [pre_caption(f(caption), 30) for f in fns])
    return cases


EXPECTED_FIRST = [
    "a man riding a brown horse on the beach",
    # nouns (man, horse, beach) <- RandomState(1).permutation: (man, beach, horse); one adjective: no draw
    "a man riding a brown beach on the horse",
    # the other tokens (A, riding, a, on, the, .) <- next permutation: (., a, riding, on, A, the)
    "man a riding brown horse on a beach the",
    # NLTK trigrams [A man riding][a brown horse][on the beach][.], each random.shuffle'd (Random(1))
    "man riding a horse a brown on beach the",
    # the list of four trigrams random.shuffle'd: the next draws leave it in order
    "a man riding a brown horse on the beach",
]
"""Caption 1 of the file with seed 1, worked out from the official algorithm."""


def test_shuffler_equals_the_official_code_over_a_file():
    got = []
    sh = OfficialShuffler(tagger, tokenizer, seed=1)
    for c in CAPTIONS:
        got.append([pre_caption(c, 30)] + [pre_caption(v, 30) for v in sh.perturb(c).values()])
    want = official_dataset([CAPTIONS[:2], CAPTIONS[2:]])
    assert got == want
    assert got[0] == EXPECTED_FIRST
    # one global stream: the second caption's negatives depend on the first one's draws
    alone = OfficialShuffler(tagger, tokenizer, seed=1).perturb(CAPTIONS[1])
    assert [pre_caption(v, 30) for v in alone.values()] != got[1][1:]
    # every perturbation keeps the multiset of words; the noun/adjective one keeps the tag sequence
    for row in got:
        assert all(sorted(v.split()) == sorted(row[0].split()) for v in row[1:])


def test_hand_worked_permutations():
    """Two nouns, two adjectives: the first draws of RandomState(1) decide, as in the official code."""
    rs = np.random.RandomState(1)
    nouns = rs.permutation(np.array(["cat", "sofa"]))
    adjs = rs.permutation(np.array(["white", "small", "old"]))
    sh = OfficialShuffler(tagger, tokenizer, seed=1)
    out = sh.shuffle_nouns_and_adj("A white cat sleeps on a small old sofa .").split()
    assert [out[2], out[8]] == list(nouns) and [out[1], out[6], out[7]] == list(adjs)
    assert out[0] == "A" and out[3:6] == ["sleeps", "on", "a"] and out[9] == "."


@pytest.fixture
def coco_dir(tmp_path, monkeypatch):
    d = tmp_path / "coco"
    d.mkdir()
    ann = [
        {"image": "val2014/a.jpg", "caption": CAPTIONS[:2], "image_id": 1},
        {"image": "val2014/b.jpg", "caption": CAPTIONS[2:], "image_id": 2},
    ]
    (d / "coco_karpathy_test.json").write_text(json.dumps(ann))
    return d


def test_source_reproduces_the_official_negatives(coco_dir, monkeypatch):
    monkeypatch.setattr(aro_module, "load_official_tools", lambda: (tagger, tokenizer))
    src = open_source(f"coco_order:{coco_dir}", perturbations="aro")
    recs = list(src)
    got = [[t.text for t in r.texts[k : k + 5]] for r in recs for k in range(0, len(r.texts), 5)]
    assert got == official_dataset([CAPTIONS[:2], CAPTIONS[2:]])
    negs = [t for r in recs for t in r.texts if t.positive >= 0]
    assert {t.meta["procedure"] for t in negs} == {"aro"} and len(negs) == 16
    assert src.stats()["items"] == 4 and "perturbations: aro" in src.describe()
    # auto picks the official procedure when the tools are there; a seed other than ARO's differs
    assert list(open_source(f"coco_order:{coco_dir}")) == recs
    other = list(open_source(f"coco_order:{coco_dir}", perturbations="aro", seed=2))
    assert [t.text for t in other[0].texts] != [t.text for t in recs[0].texts]


def test_without_spacy_the_rows_say_not_comparable(coco_dir, monkeypatch, capsys):
    monkeypatch.setattr(aro_module, "load_official_tools", lambda: "spaCy is not installed")
    with pytest.raises(UserError, match="spacy download en_core_web_sm"):
        open_source(f"coco_order:{coco_dir}", perturbations="aro")
    recs = list(open_source(f"coco_order:{coco_dir}"))
    assert "not comparable to published" in capsys.readouterr().err
    assert {t.meta["procedure"] for r in recs for t in r.texts if t.positive >= 0} == {"tflocal"}


def test_real_spacy_and_nltk_match_the_official_code():
    tools = load_official_tools()
    if isinstance(tools, str):
        pytest.skip(f"{tools}: pip install spacy nltk && python -m spacy download en_core_web_sm")
    import nltk
    import spacy

    real_nlp = spacy.load("en_core_web_sm")
    global nlp, tokenizer
    saved = nlp, tokenizer
    try:
        nlp, tokenizer = real_nlp, nltk.word_tokenize
        caps = ["A man riding a brown horse on the beach.", "Two dogs play with a red ball in the park."]
        want = official_dataset([caps])
    finally:
        nlp, tokenizer = saved
    sh = OfficialShuffler(*tools, seed=1)
    got = [[pre_caption(c, 30)] + [pre_caption(v, 30) for v in sh.perturb(c).values()] for c in caps]
    assert got == want
