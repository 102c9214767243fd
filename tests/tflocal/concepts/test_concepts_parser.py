"""Caption parser: objects with counts, attributes bound to their object, relations, spans."""

from __future__ import annotations

import pytest

from tflocal.concepts import parse, segments, tokenize
from tflocal.concepts.vocab import default_vocabulary


def _summary(text):
    c = parse(text)
    objs = [
        (o.lemma, o.count, sorted(a.word for a in c.object_attributes(i))) for i, o in enumerate(c.objects)
    ]
    rels = [(c.objects[r.subject].lemma, r.canonical, c.objects[r.object].lemma) for r in c.relations]
    return c, objs, rels


def test_coco_caption_structure():
    c, objs, rels = _summary("A man in a red shirt riding a brown horse next to a white fence.")
    assert objs == [("man", 1, []), ("shirt", 1, ["red"]), ("horse", 1, ["brown"]), ("fence", 1, ["white"])]
    assert rels == [("man", "in", "shirt"), ("man", "riding", "horse"), ("horse", "next to", "fence")]
    assert c.unparsed == []


def test_spans_point_at_the_words():
    c = parse("A man in a red shirt riding a brown horse next to a white fence.")
    assert [c.span_text(o.span) for o in c.objects] == ["man", "shirt", "horse", "fence"]
    assert [c.span_text(a.span) for a in c.attributes] == ["red", "brown", "white"]
    assert [c.span_text(r.span) for r in c.relations] == ["in", "riding", "next to"]
    s, e = c.char_span(c.objects[2].phrase)
    assert c.text[s:e] == "a brown horse"


def test_counts_plurals_and_compounds():
    _, objs, rels = _summary("Two dogs playing with a red frisbee on the grass")
    assert objs[0] == ("dog", 2, []) and objs[1] == ("frisbee", 1, ["red"])
    assert rels[0] == ("dog", "playing with", "frisbee")
    _, objs, _ = _summary("A group of people standing near a fire hydrant")
    assert [o[0] for o in objs] == ["person", "fire hydrant"]
    c = parse("Three men on a bench")
    assert c.objects[0].plural and c.objects[0].count == 3 and c.objects[0].lemma == "man"


def test_attribute_noun_ambiguity_and_multiword_attributes():
    _, objs, _ = _summary("An orange cat on an orange")
    assert objs == [("cat", 1, ["orange"]), ("orange", 1, [])]
    _, objs, _ = _summary("A light blue bus next to a red and white truck")
    assert objs == [("bus", 1, ["light blue"]), ("truck", 1, ["red", "white"])]


def test_predicative_attributes_and_verb_subject():
    _, objs, _ = _summary("The towels are white and the bathroom is blue.")
    assert objs == [("towel", None, ["white"]), ("bathroom", None, ["blue"])]
    _, _, rels = _summary("A man riding a horse and holding a rope")
    assert rels == [("man", "riding", "horse"), ("man", "holding", "rope")]
    _, objs, rels = _summary("A dog watches a cat")
    assert [o[0] for o in objs] == ["dog", "cat"] and rels == [("dog", "watches", "cat")]


def test_relation_aliases_are_canonical():
    _, _, rels = _summary("a small red circle to the left of a large blue square")
    assert rels == [("circle", "left of", "square")]


def test_segments():
    assert segments("A man in a red shirt riding a brown horse.") == [
        "a man",
        "a red shirt",
        "a brown horse",
        "man in shirt",
        "man riding horse",
    ]
    assert segments("hello world") == ["hello world"]


# -------------------------------------------------------------------------- open vocabulary
def test_nouns_outside_the_vocabulary_are_objects():
    _, objs, _ = _summary("a sleepy face")
    assert objs == [("face", 1, ["sleepy"])]
    _, objs, rels = _summary("kite with a long tail")
    assert objs == [("kite", None, []), ("tail", 1, ["long"])] and rels == [("kite", "with", "tail")]
    _, objs, rels = _summary("Two pelicans resting on a weathered wooden pier")
    assert objs == [("pelican", 2, []), ("pier", 1, ["weathered", "wooden"])]
    assert rels == [("pelican", "resting on", "pier")]


def test_colour_words_before_an_unknown_noun_are_attributes():
    _, objs, _ = _summary("a green frog on a lily pad")
    assert objs == [("frog", 1, ["green"]), ("lily pad", 1, [])]
    _, objs, _ = _summary("a purple starfish on a sandy beach")
    assert objs == [("starfish", 1, ["purple"]), ("beach", 1, ["sandy"])]


def test_compounds_stay_one_object_and_participles_bind():
    c, objs, rels = _summary("kid eating an ice cream cone at the beach")
    assert [o[0] for o in objs] == ["kid", "ice cream cone", "beach"]
    assert c.span_text(c.objects[1].span) == "ice cream cone"
    assert rels[0] == ("kid", "eating", "ice cream cone")
    _, objs, _ = _summary("A sleeping baby wrapped in a soft blanket.")
    assert objs == [("baby", 1, ["sleeping"]), ("blanket", 1, ["soft"])]
    _, objs, _ = _summary("a walnut cutting board")
    assert [o[0] for o in objs] == ["walnut cutting board"]
    _, objs, _ = _summary("A fire hydrant on a snowy sidewalk.")  # vocabulary compound, as before
    assert objs == [("fire hydrant", 1, []), ("sidewalk", 1, ["snowy"])]


def test_open_vocabulary_keeps_verbs_pronouns_and_noise_out_of_objects():
    _, objs, rels = _summary("A girl feeding a lamb while she smiles")
    assert [o[0] for o in objs] == ["girl", "lamb"] and rels == [("girl", "feeding", "lamb")]
    _, objs, rels = _summary("the diagram shows a database behind a load balancer")
    assert [o[0] for o in objs] == ["diagram", "database", "load balancer"]
    assert ("diagram", "shows", "database") in rels
    assert parse("zzz qqq").objects == []
    _, objs, _ = _summary("A man walking his dog")
    c = parse("A man walking his dog")
    assert [o[0] for o in objs] == ["man", "dog"] and c.span_text(c.objects[1].det) == "his"


def test_closed_vocabulary_switch():
    from tflocal.concepts.vocab import Vocabulary, default_vocabulary

    d = default_vocabulary()
    closed = Vocabulary.from_dict(
        {**{k: getattr(d, k) for k in Vocabulary.__dataclass_fields__}, "open_vocabulary": False}
    )
    assert parse("a sleepy face", closed).objects == []
    assert [o.lemma for o in parse("a sleepy face").objects] == ["face"]


def test_spacy_tags_are_used_when_a_pipeline_is_configured(monkeypatch):
    """The spaCy branch, with a stand-in pipeline (no spaCy model ships with the tests)."""
    pytest.importorskip("spacy", reason="spaCy not installed (the 'spacy' extra)")
    from tflocal.concepts import tagger

    class FakeNLP:
        def __init__(self):
            import spacy

            self.vocab = spacy.blank("en").vocab
            self.pipeline = [("tagger", self._tag)]

        @staticmethod
        def _tag(doc):
            pos = {"a": ("DET", "DT"), "zorp": ("NOUN", "NN"), "glimmy": ("ADJ", "JJ")}
            for t in doc:
                t.pos_, t.tag_ = pos.get(t.lower_, ("NOUN", "NN"))
            return doc

    monkeypatch.setenv("TFLOCAL_SPACY_MODEL", "fake")
    monkeypatch.setattr(tagger, "load_spacy", lambda name: FakeNLP())
    toks = tokenize("a glimmy zorp")
    assert tagger.tag(toks, default_vocabulary()) == ["DET", "ADJ", "NOUN"]


def test_spacy_tag_mapping():
    from tflocal.concepts.tagger import spacy_tag

    assert spacy_tag("PRON", "PRP$", "his") == "POSS"
    assert spacy_tag("PROPN", "NNP", "paris") == "NOUN"
    assert spacy_tag("SCONJ", "IN", "while") == "CCONJ"
    assert spacy_tag("ADJ", "JJ", "red") == "ADJ"


def test_a_real_spacy_model_parses_the_labelled_captions():
    """Runs only where an English spaCy pipeline is installed and named by TFLOCAL_SPACY_MODEL."""
    import os

    if not os.environ.get("TFLOCAL_SPACY_MODEL"):
        pytest.skip("no spaCy model configured (set TFLOCAL_SPACY_MODEL=en_core_web_sm with spaCy installed)")
    pytest.importorskip("spacy", reason="spaCy not installed (the 'spacy' extra)")
    _, objs, _ = _summary("kite with a long tail")
    assert [o[0] for o in objs] == ["kite", "tail"]


def test_spacy_configured_but_missing_is_a_user_error(monkeypatch):
    from tflocal.concepts import tagger
    from tflocal.errors import UserError

    tagger.load_spacy.cache_clear()
    monkeypatch.setenv("TFLOCAL_SPACY_MODEL", "/nonexistent/tflocal-spacy-model")
    with pytest.raises(UserError, match="TFLOCAL_SPACY_MODEL"):
        tagger.tag(tokenize("a dog"), default_vocabulary())


def test_stacked_modifiers_before_a_noun_stay_one_object():
    # a past participle between a modifier and its noun modifies it ("-ed" before a bare noun)
    _, objs, _ = _summary("a massive chocolate speckled rhombus")
    assert objs == [("rhombus", 1, ["chocolate", "massive", "speckled"])]
    _, objs, _ = _summary("A massive scarlet banded disc.")
    assert objs == [("disc", 1, ["banded", "massive", "scarlet"])]
    # a noun used as a modifier before another modifier ("cobalt", "rose", a vocabulary "lemon")
    _, objs, _ = _summary("a miniature cobalt speckled tile above a rose banded wedge")
    assert [(o[0], o[2]) for o in objs] == [
        ("tile", ["cobalt", "miniature", "speckled"]),
        ("wedge", ["banded", "rose"]),
    ]
    _, objs, _ = _summary("a big lemon dotted ball and a navy striped triangle")
    assert [(o[0], o[2]) for o in objs] == [
        ("ball", ["big", "dotted", "lemon"]),
        ("triangle", ["navy", "striped"]),
    ]
    # ... while an "-ing" form after a noun stays a verb and a "-ed" before a preposition too
    _, objs, _ = _summary("A barista pouring latte art into a white mug.")
    assert [o[0] for o in objs] == ["barista", "latte art", "mug"]
    _, objs, rels = _summary("A little girl blowing bubbles in the backyard.")
    assert objs[0] == ("girl", 1, ["little"]) and rels[0] == ("girl", "blowing", "bubble")
    _, objs, _ = _summary("a dog tied to a post")
    assert [o[0] for o in objs] == ["dog", "post"]
