"""bench/parser.py on the hand-labelled captions: the parser's recall thresholds."""

from __future__ import annotations

import json

from helpers import TESTS, load_script

DATA = TESTS / "data" / "captions_labelled.jsonl"


def _bench():
    return load_script("bench/parser.py", "bench_parser")


def test_labelled_set_is_large_and_covers_several_domains():
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 200
    domains = {r["domain"] for r in rows}
    assert {"everyday", "icons", "products", "diagrams"} <= domains
    for r in rows:
        assert r["caption"] and r["objects"] and isinstance(r["bindings"], list)
        for _attr, noun in r["bindings"]:
            assert any(noun.split()[-1] == o.split()[-1] for o in r["objects"]), r


def test_parser_recall_meets_its_thresholds():
    res = _bench().measure(DATA)
    fig = res["overall"]
    assert fig["heads"] >= 0.90, res
    assert fig["bindings"] >= 0.80, res
    assert fig["with_object"] >= 0.95, res
    for dom, d in res["domains"].items():  # no domain falls apart
        assert d["heads"] >= 0.85 and d["with_object"] >= 0.95, (dom, d)


def test_held_out_captions():
    """40 captions labelled after the parser work and measured once (97.5% heads, 90.4% bindings)."""
    res = _bench().measure(TESTS / "data" / "captions_heldout.jsonl")
    assert res["n"] >= 40
    assert res["overall"]["heads"] >= 0.90 and res["overall"]["bindings"] >= 0.80, res
    assert res["overall"]["with_object"] >= 0.95, res


def test_bench_prints_a_json_line_last(capsys):
    assert _bench().main([]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    res = json.loads(last)
    assert res["n"] >= 200 and set(res["overall"]) >= {"heads", "bindings", "with_object"}
    assert res["explain"]["right_op"] >= 0.85
