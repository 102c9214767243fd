"""Explain: a hand-written table of caption / negative pairs with their operator labels."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tflocal.concepts import explain, make_negatives

S, R, A, N = "swap", "replace", "add", "none"
ATT, OBJ, REL = "attribute", "object", "relation"

ARGUMENT_SWAPS = [
    ("A dog chasing a cat.", "A cat chasing a dog."),
    ("A man riding a horse.", "A horse riding a man."),
    ("A cat sitting on a laptop.", "A laptop sitting on a cat."),
    ("A red cube left of a blue ball.", "A blue ball left of a red cube."),
    ("A woman feeding a giraffe.", "A giraffe feeding a woman."),
    ("A small bird on a large elephant.", "A large elephant on a small bird."),
    ("A boy holding a puppy in a park.", "A puppy holding a boy in a park."),
]
"""A relation's subject and object exchanged (the operators' SWAP relation)."""

TABLE = [
    # --- SWAP attribute: same words, attributes bound to other objects
    ("White towels in a blue bathroom.", "Blue towels in a white bathroom.", S, ATT),
    ("A red car parked next to a black truck.", "A black car parked next to a red truck.", S, ATT),
    ("A small dog sitting on a large couch.", "A large dog sitting on a small couch.", S, ATT),
    ("A wooden table with a glass vase.", "A glass table with a wooden vase.", S, ATT),
    ("An old man holding a young child.", "A young man holding an old child.", S, ATT),
    ("A striped cat on a plain rug.", "A plain cat on a striped rug.", S, ATT),
    (
        "The towels are white and the bathroom is blue.",
        "The towels are blue and the bathroom is white.",
        S,
        ATT,
    ),
    (
        "a small red circle left of a large blue square",
        "a small blue circle left of a large red square",
        S,
        ATT,
    ),
    (
        "a small red circle left of a large blue square",
        "a large red circle left of a small blue square",
        S,
        ATT,
    ),
    ("A yellow bus and a green car on a road.", "A green bus and a yellow car on a road.", S, ATT),
    # --- SWAP object: head nouns exchanged, attributes stay
    ("A red cube left of a blue ball.", "A red ball left of a blue cube.", S, OBJ),
    ("A brown dog next to a white cat.", "A brown cat next to a white dog.", S, OBJ),
    ("A large plate next to a small bowl.", "A large bowl next to a small plate.", S, OBJ),
    ("A black laptop on a wooden desk.", "A black desk on a wooden laptop.", S, OBJ),
    ("A striped shirt and a blue hat.", "A striped hat and a blue shirt.", S, OBJ),
    ("An orange cat sitting on a green chair.", "An orange chair sitting on a green cat.", S, OBJ),
    ("Two dogs and a cat playing on the grass.", "Two cats and a dog playing on the grass.", S, OBJ),
    ("A man with a dog and a woman with a cat.", "A man with a cat and a woman with a dog.", S, OBJ),
    # --- SWAP of a relation's subject and object: two objects trade places, which the benchmarks
    # (SugarCrepe, Winoground) label an object swap; see test_tflocal_convention_keeps_relation_swaps
    *[(cap, neg, S, OBJ) for cap, neg in ARGUMENT_SWAPS],
    # --- SWAP relation: predicates exchanged between relations
    ("A man riding a horse and holding a rope.", "A man holding a horse and riding a rope.", S, REL),
    # --- REPLACE attribute
    ("A red car on the street.", "A blue car on the street.", R, ATT),
    ("A small dog on a bed.", "A large dog on a bed.", R, ATT),
    ("A wooden bench in a park.", "A metal bench in a park.", R, ATT),
    ("An empty glass on a table.", "A full glass on a table.", R, ATT),
    ("An old man on a bench.", "A young man on a bench.", R, ATT),
    ("A man in a red shirt riding a brown horse.", "A man in a green shirt riding a brown horse.", R, ATT),
    ("Two dogs playing in the snow.", "Three dogs playing in the snow.", R, ATT),
    ("A striped umbrella on a beach.", "A dotted umbrella on a beach.", R, ATT),
    ("A light blue bus on a road.", "A yellow bus on a road.", R, ATT),
    ("A white plate with a sandwich.", "A black plate with a sandwich.", R, ATT),
    # --- REPLACE object
    ("A cat sitting on a table.", "A dog sitting on a table.", R, OBJ),
    ("A man riding a horse.", "A man riding a bicycle.", R, OBJ),
    ("Two dogs playing with a frisbee.", "Two cats playing with a frisbee.", R, OBJ),
    ("A pizza on a plate.", "A sandwich on a plate.", R, OBJ),
    ("A woman holding an umbrella.", "A woman holding a kite.", R, OBJ),
    ("A bus parked on the street.", "A truck parked on the street.", R, OBJ),
    ("A fire hydrant next to a tree.", "A stop sign next to a tree.", R, OBJ),
    ("An apple on a wooden table.", "An orange on a wooden table.", R, OBJ),
    ("A man in a red shirt riding a brown horse.", "A man in a red jacket riding a brown horse.", R, OBJ),
    # --- REPLACE relation
    ("A cat on a table.", "A cat under a table.", R, REL),
    ("A lamp above a bed.", "A lamp below a bed.", R, REL),
    ("A dog sitting on a couch.", "A dog standing on a couch.", R, REL),
    ("A man riding a horse.", "A man feeding a horse.", R, REL),
    ("A car in front of a building.", "A car behind a building.", R, REL),
    ("A red circle to the left of a blue square.", "A red circle to the right of a blue square.", R, REL),
    ("A boy holding a kite.", "A boy throwing a kite.", R, REL),
    ("A bird inside a cage.", "A bird outside a cage.", R, REL),
    ("A cat sitting on a laptop.", "A cat sitting next to a laptop.", R, REL),
    # --- ADD attribute
    ("A dog on a couch.", "A brown dog on a couch.", A, ATT),
    ("An apple on a table.", "A red apple on a table.", A, ATT),
    ("A man riding a horse.", "A man riding a white horse.", A, ATT),
    ("Two cats on a bed.", "Two striped cats on a bed.", A, ATT),
    ("A bench in a park.", "A wooden bench in a park.", A, ATT),
    ("A small dog on the grass.", "A small black dog on the grass.", A, ATT),
    ("A car parked on the street.", "A car parked on the wet street.", A, ATT),
    ("a red circle left of a blue square", "a red circle left of a large blue square", A, ATT),
    # --- ADD object
    ("A man riding a horse.", "A man riding a horse next to a dog.", A, OBJ),
    ("A cat on a table.", "A cat on a table with a cup.", A, OBJ),
    ("A dog on the beach.", "A dog and a ball on the beach.", A, OBJ),
    ("A man riding a horse.", "A man riding a horse and holding a rope.", A, OBJ),
    ("A pizza on a plate.", "A pizza on a plate next to a glass of wine.", A, OBJ),
    ("a red circle left of a blue square", "a red circle left of a blue square above a green star", A, OBJ),
    ("A woman holding an umbrella.", "A woman holding an umbrella and a bag.", A, OBJ),
    # --- SWAP that re-inflects the verb or changes number
    ("A woman is feeding two ducks by the pond.", "Two ducks are feeding a woman by the pond.", S, OBJ),
    ("A dog chases two cats.", "Two cats chase a dog.", S, OBJ),
    ("Two men are carrying a surfboard.", "A surfboard is carrying two men.", S, OBJ),
    ("A girl was holding three balloons.", "Three balloons were holding a girl.", S, OBJ),
    ("The children feed a goat.", "A goat feeds the children.", S, OBJ),
    ("A cat watches the birds on a fence.", "The birds watch a cat on a fence.", S, OBJ),
    ("A toddler has two puppies.", "Two puppies have a toddler.", S, OBJ),
    ("Two dogs are chasing a ball.", "Two balls are chasing a dog.", S, OBJ),
    # --- pronouns and possessives that follow the swapped noun
    ("A man walking his dog.", "A dog walking its man.", S, OBJ),
    ("A woman hugging her horse.", "A horse hugging its woman.", S, OBJ),
    ("A boy and his kite on a hill.", "A kite and its boy on a hill.", S, OBJ),
    ("A girl feeding a lamb while she smiles.", "A lamb feeding a girl while it smiles.", S, OBJ),
    ("A man and his dog on a beach.", "A dog and its man on a beach.", S, OBJ),
    ("A man walking his dog.", "A woman walking her dog.", R, OBJ),
    ("A chef holding his knife.", "A chef holding his spoon.", R, OBJ),
    # --- predicates trade places (Winoground's relation swaps)
    ("A person sits and a dog stands.", "A person stands and a dog sits.", S, REL),
    (
        "A cat sleeping on a bed and a dog sitting on a rug.",
        "A cat sitting on a bed and a dog sleeping on a rug.",
        S,
        REL,
    ),
    # --- nouns and adjectives outside the vocabulary
    ("A dog on the beach.", "A dog on the beach next to a surfboard.", A, OBJ),
    ("A bowl of ramen.", "A bowl of ramen with chopsticks.", A, OBJ),
    ("A cat on a sofa.", "A cat and a hamster on a sofa.", A, OBJ),
    ("A sleepy face.", "A sleepy face with a mustache.", A, OBJ),
    ("A flowchart with three boxes.", "A flowchart with three boxes and a legend.", A, OBJ),
    ("A lighthouse on a cliff.", "A lighthouse on a cliff above a sailboat.", A, OBJ),
    ("A cat on a sofa.", "A sleepy cat on a sofa.", A, ATT),
    ("A kite in the sky.", "A kite in the cloudy sky.", A, ATT),
    ("A flamingo next to a heron.", "A heron next to a flamingo.", S, OBJ),
    ("A red kite above a green tent.", "A green kite above a red tent.", S, ATT),
    ("A sleepy face.", "A grumpy face.", R, ATT),
    ("A kite with a long tail.", "A kite with a short tail.", R, ATT),
    ("A hummingbird at a feeder.", "A dragonfly at a feeder.", R, OBJ),
    ("A heart icon above a gear icon.", "A gear icon above a heart icon.", S, OBJ),
    # --- none: not one operator
    ("A dog on a couch.", "A dog on a couch.", N, None),
    ("A dog on a couch.", "A dog on a couch", N, None),
    ("A brown dog on a couch.", "A dog on a couch.", N, None),
    ("A red car on a street.", "A blue truck on a road.", N, None),
    ("A man riding a horse.", "Two women eating pizza in a kitchen.", N, None),
    ("A cat on a table.", "A big cat under a table.", N, None),
]


HELD_OUT = [
    ("A man is throwing a frisbee to his dog.", "A dog is throwing a frisbee to its man.", S, OBJ),
    ("Three zebras are drinking from a muddy pond.", "A muddy pond is drinking from three zebras.", S, OBJ),
    ("A little girl hugs a giant teddy bear.", "A giant teddy bear hugs a little girl.", S, OBJ),
    ("A chef slices a tomato on a board.", "A tomato slices a chef on a board.", S, OBJ),
    ("The puppies are chewing on a slipper.", "The slipper is chewing on the puppies.", S, OBJ),
    ("A woman and her toddler feeding pigeons.", "A toddler and its woman feeding pigeons.", S, OBJ),
    ("A brown horse next to a white goat.", "A white horse next to a brown goat.", S, ATT),
    ("A rusty bike leaning on a shiny car.", "A shiny bike leaning on a rusty car.", S, ATT),
    ("A tall giraffe near a short tree.", "A short giraffe near a tall tree.", S, ATT),
    ("A kayak on a calm lake.", "A kayak on a stormy lake.", R, ATT),
    ("A fluffy dog on a porch.", "A hairless dog on a porch.", R, ATT),
    ("Two flamingos wading in a lagoon.", "Two herons wading in a lagoon.", R, OBJ),
    ("A boy flying a kite on the beach.", "A boy flying a drone on the beach.", R, OBJ),
    ("A vase of tulips on a windowsill.", "A vase of daisies on a windowsill.", R, OBJ),
    ("A cat sleeping under a blanket.", "A cat sleeping on a blanket.", R, REL),
    ("A man leaning against a lamppost.", "A man climbing a lamppost.", R, REL),
    ("A child standing behind a fence.", "A child standing in front of a fence.", R, REL),
    ("A dog on a couch.", "A dog on a couch next to a sleeping cat.", A, OBJ),
    ("A latte on a wooden table.", "A latte and a croissant on a wooden table.", A, OBJ),
    ("A surfer riding a wave.", "A surfer riding a wave near a lighthouse.", A, OBJ),
    ("A bowl of noodles.", "A bowl of noodles with chopsticks.", A, OBJ),
    ("A kitten on a rug.", "A kitten on a shaggy rug.", A, ATT),
    ("A teapot on a shelf.", "A porcelain teapot on a shelf.", A, ATT),
    ("A man holding a guitar.", "A bearded man holding a guitar.", A, ATT),
    ("An owl perched on a branch.", "A branch perched on an owl.", S, OBJ),
    ("A mother feeds her baby.", "A baby feeds its mother.", S, OBJ),
    ("A person sits and a dog stands.", "A person stands and a dog sits.", S, REL),
    ("A jar of honey beside a spoon.", "A jar of jam beside a spoon.", R, OBJ),
    ("A snowy mountain above a green valley.", "A green mountain above a snowy valley.", S, ATT),
    ("Two ducks swimming in a pond.", "Two ducks swimming in a fountain.", R, OBJ),
]
"""Benchmark-style pairs held out from the work on explain (see test_held_out_table)."""


def test_held_out_table():
    """Pairs written after the explain work, in benchmark styles, first measured once as they
    stand: right operator 96.7%, right operator and kind 93.3% (the misses led to two general
    rules: articles read as one word, a noun modifier added before a kept head is an attribute)."""
    got = [(explain(c, n), op, kind) for c, n, op, kind in HELD_OUT]
    right_op = sum(g["op"] == op for g, op, _ in got) / len(got)
    right = sum((g["op"], g["kind"]) == (op, kind) for g, op, kind in got) / len(got)
    assert len(HELD_OUT) >= 30 and right_op >= 0.9 and right >= 0.9, [
        (c, n, g) for (c, n, *_), (g, op, kind) in zip(HELD_OUT, got) if (g["op"], g["kind"]) != (op, kind)
    ]


def test_tflocal_convention_keeps_relation_swaps():
    for cap, neg in ARGUMENT_SWAPS:
        got = explain(cap, neg, convention="tflocal")
        assert (got["op"], got["kind"]) == (S, REL), (cap, neg, got)


def test_unknown_convention_is_a_user_error():
    from tflocal.errors import UserError

    with pytest.raises(UserError):
        explain("a dog", "a cat", convention="sugarcrepe")


def test_table_is_large_and_covers_every_operator_and_kind():
    assert len(TABLE) >= 60
    labels = {(op, kind) for _, _, op, kind in TABLE}
    for op in (S, R):
        for kind in (ATT, OBJ, REL):
            assert (op, kind) in labels
    assert (A, ATT) in labels and (A, OBJ) in labels and (N, None) in labels


def explain_accuracy() -> dict[tuple[str, str | None], tuple[int, int]]:
    stats: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for cap, neg, op, kind in TABLE:
        got = explain(cap, neg)
        stats[(op, kind)][1] += 1
        stats[(op, kind)][0] += int((got["op"], got["kind"]) == (op, kind))
    return {k: (v[0], v[1]) for k, v in stats.items()}


def test_explain_accuracy_per_operator_and_kind():
    acc = explain_accuracy()
    wrong = [
        (c, n, op, k, explain(c, n))
        for c, n, op, k in TABLE
        if (explain(c, n)["op"], explain(c, n)["kind"]) != (op, k)
    ]
    total = sum(v[0] for v in acc.values()) / sum(v[1] for v in acc.values())
    assert total >= 0.95, wrong
    for key, (ok, n) in acc.items():  # no operator/kind falls apart
        assert ok / n >= 0.8, (key, wrong)


@pytest.mark.parametrize("cap,neg,op,kind", [row for row in TABLE if row[2] == R][:3])
def test_replace_reports_the_changed_words(cap, neg, op, kind):
    got = explain(cap, neg)
    assert got["removed"] and got["added"] and got["removed"] != got["added"]


def test_explain_recovers_the_generators_own_labels():
    caps = [
        "A man in a red shirt riding a brown horse next to a white fence.",
        "White towels in a blue bathroom.",
        "A brown dog chasing a white cat in a park.",
        "a small red cube left of a large blue ball",
    ]
    n = 0
    for cap in caps:
        for seed in range(3):
            for neg in make_negatives(cap, depth=1, n=6, seed=seed):
                got = explain(cap, neg.text, convention="tflocal")
                assert (got["op"], got["kind"]) == (neg.op, neg.kind), (cap, neg)
                n += 1
    assert n >= 40
