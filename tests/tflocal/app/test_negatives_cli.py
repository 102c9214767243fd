"""`tflocal negatives`: add negatives to a manifest; explain a pairs file."""

from __future__ import annotations

import json

from tflocal.app.cli import main
from tflocal.concepts import explain, normalize


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_add_negatives_to_manifest(tmp_path):
    src = tmp_path / "m.jsonl"
    _write(
        src,
        [
            {
                "id": "a",
                "image": "a.png",
                "captions": ["A man riding a brown horse.", "A dog on a couch."],
                "split": "x",
            },
            {
                "id": "b",
                "image": "b.png",
                "captions": ["White towels in a blue bathroom."],
                "negatives": ["kept"],
            },
        ],
    )
    out = tmp_path / "out.jsonl"
    rc = main(
        [
            "negatives",
            "--in",
            str(src),
            "--out",
            str(out),
            "--ops",
            "swap,replace,add",
            "--depth",
            "1,2",
            "--per-caption",
            "2",
        ]
    )
    assert rc == 0
    rows = _read(out)
    assert [r["id"] for r in rows] == ["a", "b"] and rows[0]["split"] == "x"
    assert rows[1]["negatives"][0] == "kept"  # existing negatives stay first
    for row in rows:
        negs = [n for n in row["negatives"] if isinstance(n, dict)]
        assert negs
        for n in negs:
            assert set(n) == {"text", "op", "kind", "depth", "chain", "positive"}
            chain = n["chain"].split(">")  # the operators applied, in order
            assert len(chain) == n["depth"] and (n["op"] == "mixed" or set(chain) == {n["op"]})
            cap = row["captions"][n["positive"]]
            assert normalize(n["text"]) != normalize(cap)
            assert n["depth"] in (1, 2)
            if n["depth"] == 1:
                got = explain(cap, n["text"], convention="tflocal")
                assert (got["op"], got["kind"]) == (n["op"], n["kind"])
    positives = {n["positive"] for n in rows[0]["negatives"]}
    assert positives == {0, 1}
    # deterministic
    out2 = tmp_path / "out2.jsonl"
    main(["negatives", "--in", str(src), "--out", str(out2), "--depth", "1,2", "--per-caption", "2"])
    assert out.read_text() == out2.read_text()


def test_explain_file(tmp_path):
    src = tmp_path / "pairs.jsonl"
    _write(
        src,
        [
            {"caption": "A cat on a table.", "negative": "A cat under a table.", "subset": "r"},
            {"caption": "A dog chasing a cat.", "negative": "A cat chasing a dog."},
            {"caption": "A dog on a couch.", "negative": "A brown dog on a couch."},
            {"caption": "A dog.", "negative": "Two cats under a bed."},
        ],
    )
    out = tmp_path / "o.jsonl"
    assert main(["negatives", "--explain", str(src), "--out", str(out)]) == 0
    rows = _read(out)
    assert [(r["op"], r["kind"]) for r in rows] == [
        ("replace", "relation"),
        ("swap", "object"),  # two objects trade places: the benchmarks' label
        ("add", "attribute"),
        ("none", None),
    ]
    assert rows[0]["subset"] == "r"
    # the operators' own convention: a relation's subject and object exchanged is a relation swap
    assert main(["negatives", "--explain", str(src), "--out", str(out), "--kinds", "tflocal"]) == 0
    assert [(r["op"], r["kind"]) for r in _read(out)] == [
        ("replace", "relation"),
        ("swap", "relation"),
        ("add", "attribute"),
        ("none", None),
    ]


def test_user_errors(tmp_path, capsys):
    assert main(["negatives", "--in", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    src = tmp_path / "m.jsonl"
    _write(src, [{"captions": ["a dog"]}])
    assert main(["negatives", "--in", str(src), "--out", str(tmp_path / "o"), "--ops", "shuffle"]) == 2
    assert "unknown operator" in capsys.readouterr().err
    assert main(["negatives", "--in", str(src), "--out", str(tmp_path / "o"), "--depth", "5"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"caption": "a dog"}\n')
    assert main(["negatives", "--explain", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "'caption' and 'negative'" in capsys.readouterr().err


def test_negatives_from_a_karpathy_source(tmp_path):
    """Any data source can be turned into a manifest with negatives (the COCO training recipe)."""
    import json

    from PIL import Image

    from tflocal.app.cli import main

    (tmp_path / "val2014").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val2014" / "a.jpg")
    data = {
        "images": [
            {
                "filepath": "val2014",
                "filename": "a.jpg",
                "split": "train",
                "cocoid": 1,
                "sentences": [{"raw": "A man in a red shirt riding a brown horse."}],
            },
            {
                "filepath": "val2014",
                "filename": "b.jpg",
                "split": "test",
                "cocoid": 2,
                "sentences": [{"raw": "A dog on a couch."}],
            },
        ]
    }
    (tmp_path / "dataset_coco.json").write_text(json.dumps(data))
    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    assert (
        main(["negatives", "--in", f"karpathy:{tmp_path}/dataset_coco.json?split=train", "--out", str(out)])
        == 0
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["captions"] == ["A man in a red shirt riding a brown horse."]
    assert (out.parent / rows[0]["image"]).resolve() == (tmp_path / "val2014" / "a.jpg").resolve()
    assert rows[0]["negatives"] and all(
        n["positive"] == 0 and n["text"] != rows[0]["captions"][0] for n in rows[0]["negatives"]
    )
