"""Quantity and comparative SWAPs, number REPLACE and negation: inputs -> exact outputs."""

from __future__ import annotations

import pytest

from tflocal.concepts import candidates, parse
from tflocal.concepts.operators import negate_relation, replace_number, swap_comparative, swap_quantity
from tflocal.concepts.render import apply_edit
from tflocal.concepts.vocab import default_vocabulary

V = default_vocabulary()


def outputs(gen, text: str) -> list[str]:
    cap = parse(text, V)
    return [apply_edit(cap, c.edit, V) for c in gen(cap, V)]


CASES = [
    (swap_quantity, "two men on four-wheelers", ["four men on two-wheelers"]),
    (swap_quantity, "one plane and several cars", ["several planes and one car"]),
    (swap_quantity, "One dog is next to three cats.", ["Three dogs are next to one cat."]),
    (swap_quantity, "Two dogs and two cats.", []),  # the same number: nothing to exchange
    (swap_comparative, "A large boat next to a smaller boat.", ["A smaller boat next to a larger boat."]),
    (swap_comparative, "A bigger dog and a small cat.", ["A smaller dog and a bigger cat."]),
    (swap_comparative, "A small red circle left of a large blue square.", []),  # no -er form
    (replace_number, "Two dogs are on a bed.", ["Three dogs are on a bed.", "One dog is on a bed."]),
    (replace_number, "One dog is on a bed.", ["Two dogs are on a bed."]),
    (
        replace_number,
        "two men on four-wheelers",
        [
            "three men on four-wheelers",
            "one man on four-wheelers",
            "two men on five-wheelers",
            "two men on three-wheelers",
        ],
    ),  # fmt: skip
    (replace_number, "A dog on a bed.", []),  # an article is not a number
    # numerals written as digits: the same edits, digits stay digits, nouns and verbs agree
    (swap_quantity, "2 men on 4-wheelers", ["4 men on 2-wheelers"]),
    (swap_quantity, "two men on 4-wheelers", ["4 men on two-wheelers"]),
    (swap_quantity, "Two men on 4-wheelers", ["4 men on two-wheelers"]),  # no capital after a digit
    (swap_quantity, "1 dog and 3 cats.", ["3 dogs and 1 cat."]),
    (swap_quantity, "1 dog is next to 3 cats.", ["3 dogs are next to 1 cat."]),
    (swap_quantity, "2 dogs and 2 cats.", []),
    (replace_number, "2 dogs are on a bed.", ["3 dogs are on a bed.", "1 dog is on a bed."]),
    (replace_number, "1 dog sits on a bed.", ["2 dogs sit on a bed."]),  # no "0"
    (replace_number, "A bus with 10 people.", ["A bus with 11 people.", "A bus with 9 people."]),
    (replace_number, "There are 2 dogs.", ["There are 3 dogs.", "There is 1 dog."]),
    (replace_number, "There is one dog.", ["There are two dogs."]),
    (
        replace_number,
        "2 men on 4-wheelers",
        ["3 men on 4-wheelers", "1 man on 4-wheelers", "2 men on 5-wheelers", "2 men on 3-wheelers"],
    ),
    (negate_relation, "a plate that has broccoli", ["a plate that does not have broccoli"]),
    (negate_relation, "a man wearing yellow", ["a man not wearing yellow"]),
    (negate_relation, "A man is riding a horse.", ["A man is not riding a horse."]),
    (negate_relation, "The dogs have a ball.", ["The dogs do not have a ball."]),
    (negate_relation, "A man not wearing a hat.", []),  # already negated
    (negate_relation, "A cat on a table.", []),
]


@pytest.mark.parametrize("gen,text,expected", CASES)
def test_exact_outputs(gen, text, expected):
    assert outputs(gen, text) == expected


@pytest.mark.parametrize(
    "text,op,kind,expected",
    [
        ("two men on four-wheelers", "swap", "attribute", "four men on two-wheelers"),
        (
            "A large boat next to a smaller boat.",
            "swap",
            "attribute",
            "A smaller boat next to a larger boat.",
        ),
        ("Two dogs are on a bed.", "replace", "attribute", "Three dogs are on a bed."),
        ("2 dogs are on a bed.", "replace", "attribute", "3 dogs are on a bed."),
        ("1 dog and 3 cats.", "swap", "attribute", "3 dogs and 1 cat."),
        ("a plate that has broccoli", "replace", "relation", "a plate that does not have broccoli"),
    ],
)
def test_registered_with_benchmark_kinds(text, op, kind, expected):
    cap = parse(text, V)
    got = {apply_edit(cap, c.edit, V): (c.op, c.kind) for c in candidates(cap, V, op, kind)}
    assert got[expected] == (op, kind)
    assert expected not in {apply_edit(cap, c.edit, V) for c in candidates(cap, V, "add")}


@pytest.mark.parametrize(
    "text",
    [
        "White towels in a blue bathroom.",
        "A small red circle left of a large blue square.",
        "A cat on a table.",
    ],
)
def test_no_new_candidates_without_numbers_comparatives_or_verbs(text):
    cap = parse(text, V)
    for gen in (swap_quantity, swap_comparative, replace_number, negate_relation):
        assert gen(cap, V) == []


@pytest.mark.parametrize(
    "text", ["A small red circle is left of a large blue square.", "A striped star is above a green hexagon."]
)
def test_shapesworld_captions_get_no_new_candidates(text):
    """ShapesWorld negatives stay as they were: its captions offer none of these edits."""
    from tflocal.shapesworld.vocab import shapes_vocabulary

    sv = shapes_vocabulary()
    cap = parse(text, sv)
    for gen in (swap_quantity, swap_comparative, replace_number, negate_relation):
        assert gen(cap, sv) == []
