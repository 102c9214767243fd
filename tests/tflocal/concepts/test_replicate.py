"""`tflocal negatives --replicate BENCH:PATH`: which published negatives the operators make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tflocal.app.cli import main
from tflocal.concepts.replicate import normalize_words, replicates


def dump(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def sc_item(caption: str, negative: str, filename: str = "1.jpg") -> dict:
    """One item of a SugarCrepe subset file (RAIVNLab/sugar-crepe ``data/<subset>.json``)."""
    return {"filename": filename, "caption": caption, "negative_caption": negative}


def valse_item(image: str, caption: str, foil: str) -> dict:
    """One item of a VALSE piece file (Heidelberg-NLP/VALSE ``data/<piece>.json``)."""
    return {"dataset": "visual7w", "image_file": image, "caption": caption, "foil": foil, "classes": "x",
            "mturk": {"foil": 0, "caption": 3, "other": 0}}  # fmt: skip


def aro_item(true: str, false: str, **kw) -> dict:
    """One item of ARO's ``visual_genome_{relation,attribution}.json``."""
    base = {"image_id": "1", "image_path": "1.png", "bbox_x": 0, "bbox_y": 0, "bbox_w": 4, "bbox_h": 4}
    return base | kw | {"true_caption": true, "false_caption": false}


def run(tmp_path: Path, spec: str, *flags: str) -> list[dict]:
    out = tmp_path / "rep" / "replicate.json"
    assert main(["negatives", "--replicate", spec, "--out", str(out), *flags]) == 0
    assert out.with_suffix(".md").read_text().startswith("| bench | subset | op |")
    return json.loads(out.read_text())


def rates(rows: list[dict]) -> dict[str, tuple[int, int]]:
    return {r["subset"]: (r["n"], r["replicated"]) for r in rows}


def write_sugarcrepe(d: Path, images: bool = True) -> Path:
    """SugarCrepe subset files; ``images``: with the COCO val2017 folder next to them, as published."""
    if images:
        (d / "val2017").mkdir(parents=True)
    dump(d / "swap_att.json", {
        "0": sc_item("A large boat next to a smaller boat.", "A smaller boat next to a larger boat."),
        "1": sc_item("White towels in a blue bathroom.", "blue towels in a white bathroom"),
        "2": sc_item("Two men on four-wheelers.", "Four men on two-wheelers."),
        "3": sc_item("A dog on a couch.", "A dog on a red couch."),  # not a swap
    })  # fmt: skip
    dump(d / "replace_att.json", {
        "0": sc_item("Two dogs on a bed.", "Seven dogs on a bed."),  # same place, other number
        "1": sc_item("A red car on the street.", "A red car on the road."),  # an object, not an attribute
    })  # fmt: skip
    dump(d / "replace_rel.json", {
        "0": sc_item("A man wearing yellow.", "A man not wearing yellow."),
        "1": sc_item("A plate that has broccoli.", "A plate that does not have broccoli."),
        "2": sc_item("A cat on a table.", "A cat beside a table."),
        "3": sc_item("A cat on a table.", "A cat on a big table."),  # an addition
    })  # fmt: skip
    dump(d / "add_obj.json", {"0": sc_item("A dog.", "A dog and a cat.")})
    return d


SUGARCREPE_RATES = {"add_obj": (1, 1), "replace_att": (2, 1), "replace_rel": (4, 3), "swap_att": (4, 3)}


def test_sugarcrepe_rates(tmp_path, capsys):
    d = write_sugarcrepe(tmp_path / "sc")
    rows = run(tmp_path, f"sugarcrepe:{d}")
    assert rates(rows) == {
        "add_obj": (1, 1),
        "replace_att": (2, 1),
        "replace_rel": (4, 3),
        "swap_att": (4, 3),
    }
    by = {r["subset"]: r for r in rows}
    assert by["swap_att"]["rate"] == 0.75 and by["replace_att"]["rate"] == 0.5
    assert by["swap_att"]["by_op"] == {"swap": {"n": 4, "replicated": 3, "rate": 0.75}}
    assert all(r["bench"] == "sugarcrepe" for r in rows)
    out = capsys.readouterr().out
    assert "sugarcrepe\tswap_att\t4\t3\t75.0%" in out


def write_aro(d: Path) -> Path:
    (d / "images").mkdir(parents=True)
    dump(d / "visual_genome_relation.json", [
        aro_item("the cup is on the table", "the table is on the cup", relation_name="on"),
        aro_item("the dog is chasing the cat", "the cat is chasing the dog", relation_name="chasing"),
        aro_item("the man is riding the horse", "the man is feeding the horse", relation_name="riding"),
    ])  # fmt: skip
    dump(d / "visual_genome_attribution.json", [
        aro_item("the white cat and the black dog", "the black cat and the white dog",
                 attributes=["white", "black"], obj1_name="cat"),
        aro_item("the large cup and the red plate", "the red cup and the small plate",
                 attributes=["large", "red"], obj1_name="cup"),
    ])  # fmt: skip
    return d


def test_aro_rates(tmp_path):
    d = write_aro(tmp_path / "aro")
    rows = run(tmp_path, f"aro:{d}")
    assert [(r["bench"], r["subset"], r["n"], r["replicated"]) for r in rows] == [
        ("vg_relation", "vg_relation", 3, 2),
        ("vg_attribution", "vg_attribution", 2, 1),
    ]
    assert rates(run(tmp_path, f"vg_attribution:{d}")) == {"vg_attribution": (2, 1)}


def write_valse(d: Path) -> Path:
    (d / "images").mkdir(parents=True)
    dump(d / "actant-swap.json", {
        "a0": valse_item("s1.jpg", "A man hugs a dog.", "A dog hugs a man."),
        "a1": valse_item("s2.jpg", "A man hugs a dog.", "A man hugs a cat."),
    })  # fmt: skip
    dump(d / "counting-hard.json", {
        "c0": valse_item("c1.jpg", "There are two dogs.", "There are three dogs."),
        "c1": valse_item("c2.jpg", "There are no dogs.", "There are dogs."),
    })  # fmt: skip
    return d


def test_valse_rates(tmp_path):
    d = write_valse(tmp_path / "valse")
    assert rates(run(tmp_path, f"valse:{d}")) == {"actant-swap": (2, 1), "counting-hard": (2, 1)}


def test_matching_rules():
    assert normalize_words("An apple, two Dogs.") == ["a", "apple", "two", "dog"]
    # SWAP: exact modulo inflection, case and punctuation; depth 2 reaches two swaps in a row
    assert replicates("one plane and several cars", "Several planes and one car.", "swap", "attribute")
    assert not replicates("A dog on a couch.", "A dog on a couch.", "swap", None)
    # REPLACE: the same span, any new word; not another span
    assert replicates("A small dog on a bed.", "A tiny dog on a bed.", "replace", "attribute")
    assert not replicates("A small dog on a bed.", "A small dog on a sofa.", "replace", "attribute")


def test_digits_are_numbers():
    assert replicates("2 dogs on a bed.", "3 dogs on a bed.", "replace", "attribute")
    assert replicates("There are 2 dogs.", "There is 1 dog.", "replace", "attribute")
    assert replicates("2 men on 4-wheelers", "4 men on 2-wheelers", "swap", "attribute")
    assert replicates("1 dog and 3 cats.", "3 dogs and 1 cat.", "swap", "attribute", depth=1)


def test_sugarcrepe_needs_no_image_folder(tmp_path, capsys):
    d = write_sugarcrepe(tmp_path / "sc", images=False)
    assert not (d / "val2017").exists() and not (tmp_path / "val2017").exists()
    assert rates(run(tmp_path, f"sugarcrepe:{d}")) == SUGARCREPE_RATES
    empty = tmp_path / "no_json"
    empty.mkdir()
    assert main(["negatives", "--replicate", f"sugarcrepe:{empty}", "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "swap_obj.json" in err and str(empty) in err and len(err.strip().splitlines()) == 1


DEEPER = {  # pairs two or three operators in a row make, and one a single one makes
    "swap_obj.json": {
        "0": sc_item("Two dogs and one cat on a bed.", "One cat and two dogs on a bed."),  # depth 2
        "1": sc_item("A white dog and a black cat on a red bed.", "A black cat and a red dog on a white bed."),
        "2": sc_item("A red cube left of a blue ball.", "A blue ball left of a red cube."),  # depth 1
    },
    "replace_obj.json": {
        "0": sc_item("A dog on a bed.", "A cat on a sofa."),  # two spans: depth 2
        "1": sc_item("A dog on a bed near a cat.", "A horse on a sofa near a bird."),  # three: depth 3
        "2": sc_item("A dog on a bed.", "A cat on a bed."),  # depth 1
    },
}  # fmt: skip


def test_depth_is_reported_and_never_lowers_a_rate(tmp_path, capsys):
    sc = write_sugarcrepe(tmp_path / "sc", images=False)
    for name, items in DEEPER.items():
        dump(sc / name, items)
    specs = [
        f"sugarcrepe:{sc}",
        f"aro:{write_aro(tmp_path / 'aro')}",
        f"valse:{write_valse(tmp_path / 'valse')}",
    ]
    got: dict[int, dict[str, tuple[int, int]]] = {}
    for depth in (1, 2, 3):
        got[depth] = {}
        for spec in specs:
            capsys.readouterr()
            rows = run(tmp_path, spec, "--depth", str(depth))
            assert {r["depth"] for r in rows} == {depth}
            assert f"replicated at depth <= {depth}" in capsys.readouterr().out
            md = (tmp_path / "rep" / "replicate.md").read_text().splitlines()
            assert md[0] == "| bench | subset | op | depth | n | replicated | rate |"
            assert all(line.split(" | ")[3] == str(depth) for line in md[2:])
            got[depth] |= rates(rows)
    for subset, (n, k2) in got[2].items():
        n1, k1 = got[1][subset]
        n3, k3 = got[3][subset]
        assert n1 == n == n3 and k1 <= k2 <= k3, subset
    assert got[1]["swap_obj"] == (3, 1) and got[2]["swap_obj"] == (3, 2) and got[3]["swap_obj"] == (3, 3)
    assert got[1]["replace_obj"] == (3, 1) and got[2]["replace_obj"] == (3, 2)
    assert got[3]["replace_obj"] == (3, 3)
    assert {s: got[2][s] for s in SUGARCREPE_RATES} == SUGARCREPE_RATES  # 2 is the default depth


@pytest.mark.parametrize(
    "depth,needle", [("1,2", "one --depth N"), ("4", "--depth must be integers in 1..3")]
)
def test_replicate_depth_must_be_one_of_1_to_3(tmp_path, capsys, depth, needle):
    d = write_sugarcrepe(tmp_path / "sc", images=False)
    out = str(tmp_path / "r.json")
    assert main(["negatives", "--replicate", f"sugarcrepe:{d}", "--depth", depth, "--out", out]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("winoground:x", "unknown benchmark 'winoground'"),
        ("sugarcrepe", "give BENCH:PATH"),
        ("sugarcrepe:/no/such/dir", "no such file or folder"),
    ],
)
def test_bad_input(tmp_path, capsys, spec, needle):
    assert main(["negatives", "--replicate", spec, "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_replicate_excludes_other_modes(tmp_path, capsys):
    m = dump(tmp_path / "m.jsonl", {"captions": ["a dog"]})
    assert main(["negatives", "--in", str(m), "--replicate", f"sugarcrepe:{tmp_path}", "--out", "o"]) == 2
    assert "exactly one of" in capsys.readouterr().err
