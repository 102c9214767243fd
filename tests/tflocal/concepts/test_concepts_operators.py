"""SWAP / REPLACE / ADD operators: expected outputs, grammar, no no-ops, composition, seeds."""

from __future__ import annotations

import pytest

from tflocal.concepts import article_for, candidates, make_negatives, normalize, parse
from tflocal.concepts.render import apply_edit
from tflocal.concepts.vocab import default_vocabulary

V = default_vocabulary()


def outputs(text: str, op: str, kind: str | None = None) -> set[str]:
    cap = parse(text)
    return {apply_edit(cap, c.edit, V) for c in candidates(cap, V, op, kind)}


# (caption, op, kind, an output that must be among the candidates)
EXPECTED = [
    ("White towels in a blue bathroom.", "swap", "attribute", "Blue towels in a white bathroom."),
    (
        "A small red circle left of a large blue square.",
        "swap",
        "attribute",
        "A small blue circle left of a large red square.",
    ),
    (
        "A small red circle left of a large blue square.",
        "swap",
        "attribute",
        "A large red circle left of a small blue square.",
    ),
    ("A red cube left of a blue ball.", "swap", "object", "A red ball left of a blue cube."),
    ("A dog chasing a cat.", "swap", "relation", "A cat chasing a dog."),
    ("An old man holding an umbrella.", "swap", "attribute", "A man holding an old umbrella."),
    ("Two dogs and a cat on a bed.", "swap", "object", "Two cats and a dog on a bed."),
    ("A dog is chasing two cats.", "swap", "relation", "Two cats are chasing a dog."),
    # agreement after a swap (verb number, copula, pronouns and possessives)
    ("A dog chases two cats.", "swap", "relation", "Two cats chase a dog."),
    (
        "A woman is feeding two ducks by the pond.",
        "swap",
        "relation",
        "Two ducks are feeding a woman by the pond.",
    ),
    ("Two men are carrying a surfboard.", "swap", "relation", "A surfboard is carrying two men."),
    ("A toddler has two puppies.", "swap", "relation", "Two puppies have a toddler."),
    ("A man walking his dog.", "swap", "relation", "A dog walking its man."),
    ("A woman hugging her horse.", "swap", "relation", "A horse hugging its woman."),
    ("A girl feeding a lamb while she smiles.", "swap", "relation", "A lamb feeding a girl while it smiles."),
    ("A boy and his kite on a hill.", "swap", "object", "A kite and its boy on a hill."),
    ("Two cats and their owner on a sofa.", "swap", "object", "Two owners and their cat on a sofa."),
    # nouns and adjectives outside the vocabulary
    ("A flamingo next to a heron.", "swap", "relation", "A heron next to a flamingo."),
    ("A sleepy face next to a grumpy cactus.", "swap", "attribute", "A grumpy face next to a sleepy cactus."),
    ("An ice cream cone next to a sleepy dog.", "swap", "object", "A dog next to a sleepy ice cream cone."),
    ("A red car on the street.", "replace", "attribute", "A blue car on the street."),
    ("A small dog on a bed.", "replace", "attribute", "A large dog on a bed."),
    ("A cat on a table.", "replace", "object", "A dog on a table."),
    ("Two dogs on a bed.", "replace", "object", "Two cats on a bed."),
    ("A cat on a table.", "replace", "relation", "A cat under a table."),
    (
        "A red circle to the left of a blue square.",
        "replace",
        "relation",
        "A red circle to the right of a blue square.",
    ),
    ("A dog sitting on a couch.", "replace", "relation", "A dog standing on a couch."),
    ("An apple on a table.", "add", "attribute", "A red apple on a table."),
    ("A dog on a couch.", "add", "attribute", "A dog on a leather couch."),
    ("A man riding a horse.", "add", "object", "A man riding a horse next to a dog."),
    ("A cat on a table.", "add", "object", "A cat on a table with an owl."),
]


@pytest.mark.parametrize("text,op,kind,expected", EXPECTED)
def test_expected_outputs(text, op, kind, expected):
    assert expected in outputs(text, op, kind)


def test_small_and_large_are_antonyms_not_synonyms():
    outs = outputs("A small dog on a bed.", "replace", "attribute")
    assert "A large dog on a bed." in outs
    assert not any(w in o.split() for o in outs for w in ("little", "tiny"))


def test_replace_never_uses_a_word_already_in_the_caption():
    outs = outputs("A red car next to a blue car.", "replace", "attribute")
    assert outs and all(o.count("red") + o.count("blue") == 1 for o in outs)


def test_articles_and_plurals():
    assert [article_for(w) for w in ("apple", "dog", "hour", "umbrella", "unicorn", "orange")] == [
        "an",
        "a",
        "an",
        "an",
        "a",
        "an",
    ]
    assert (
        V.pluralize("man") == "men"
        and V.pluralize("bus") == "buses"
        and V.pluralize("teddy bear") == "teddy bears"
    )
    assert V.pluralize("puppy") == "puppies" and V.pluralize("knife") == "knives"
    # swapping into a plural slot inflects the noun; a/an follows the new word
    assert "Two cats and a dog on a bed." in outputs("Two dogs and a cat on a bed.", "swap", "object")
    assert "An orange cat on a table." in outputs("A brown cat on a table.", "replace", "attribute")
    assert "A red apple on a table." in outputs("An apple on a table.", "add", "attribute")


def test_capitalization_and_punctuation_kept():
    for o in outputs("White towels in a blue bathroom.", "swap"):
        assert o[0].isupper() and o.endswith(".") and "White" not in o[1:]
    for o in outputs("a cat on a table", "add"):
        assert o[0].islower() and not o.endswith(".")


CAPTIONS = [
    "A man in a red shirt riding a brown horse next to a white fence.",
    "White towels in a blue bathroom.",
    "Two dogs playing with a red frisbee on the grass",
    "A cat sitting on a wooden table.",
    "An old man holding an umbrella",
    "a small red cube left of a large blue ball",
]


@pytest.mark.parametrize("text", CAPTIONS)
def test_no_operator_returns_its_input(text):
    cap = parse(text)
    for op in ("swap", "replace", "add"):
        for c in candidates(cap, V, op):
            out = apply_edit(cap, c.edit, V)
            assert normalize(out) != normalize(text), (op, c)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_composition_depth_differs_and_never_restores(depth):
    for text in CAPTIONS:
        negs = make_negatives(text, depth=depth, n=4, seed=3)
        assert negs, text
        for neg in negs:
            assert neg.depth == depth == len(neg.steps)
            assert normalize(neg.text) != normalize(text)
            # no word the original had is re-introduced by replace/add after being removed
            assert neg.op in ("swap", "replace", "add", "mixed")
        assert len({normalize(n.text) for n in negs}) == len(negs)


def test_depth_two_replace_does_not_undo():
    # the only attribute is replaced twice: red -> X -> Y, and Y may never be red again
    import random

    from tflocal.concepts import compose

    for seed in range(20):
        neg = compose("A red car on the street.", [("replace", "attribute")] * 2, random.Random(seed))
        assert neg is not None and neg.depth == 2
        words = parse(neg.text).words()
        assert "red" not in words and words[2:] == ["car", "on", "the", "street"]


def test_deterministic_for_a_seed():
    a = make_negatives(CAPTIONS[0], depth=2, n=5, seed=7)
    b = make_negatives(CAPTIONS[0], depth=2, n=5, seed=7)
    c = make_negatives(CAPTIONS[0], depth=2, n=5, seed=8)
    assert [n.text for n in a] == [n.text for n in b]
    assert [n.text for n in a] != [n.text for n in c]


def test_first_steps_cover_every_operator():
    negs = make_negatives(CAPTIONS[0], n=3, seed=0)
    assert {n.op for n in negs} == {"swap", "replace", "add"}


def test_bad_arguments_are_user_errors():
    from tflocal.errors import UserError

    with pytest.raises(UserError, match="depth"):
        make_negatives("a dog", depth=4)
    with pytest.raises(UserError, match="unknown operator"):
        make_negatives("a dog", ops=("shuffle",))


def test_pronouns_and_possessives_follow_their_noun():
    from tflocal.concepts.agreement import pronoun_for

    assert pronoun_for("his", "possessive", "animal", False) == "its"
    assert pronoun_for("her", "possessive", "person", False) == "her"
    assert pronoun_for("its", "possessive", "person", False) == "their"  # gender unknown
    assert pronoun_for("she", "subject", "unknown", True) == "they"
    assert pronoun_for("him", "object", "vehicle", False) == "it"
    for neg in make_negatives("A man walking his dog.", depth=1, n=20, seed=0):
        if neg.op == "swap":
            assert "his dog" not in neg.text.lower() or neg.text.lower().startswith("a man"), neg
            assert "his man" not in neg.text.lower(), neg
