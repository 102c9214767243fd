"""Caption parser: objects with counts, attributes bound to their object, relations, spans."""

from __future__ import annotations

from tflocal.concepts import parse, segments


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
