"""Reports: fixed-key JSON, the side-by-side markdown table, plots, and `tflocal eval` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cache_tools.write.arrays import write_arrays
from helpers.fakes import JOINT
from tflocal.app.cli import main
from tflocal.errors import UserError
from tflocal.evaluate.plots import alignment_plot, depth_curves, depth_plot, subset_bars
from tflocal.evaluate.report import ROW_KEYS, Row, markdown_table, read_json, write_json, write_markdown

ROWS = [
    Row("sugarcrepe", "swap_att", "accuracy", 0.5, 4, "cosine", "enc", "c.h5", ""),
    Row("sugarcrepe", "all", "accuracy", 0.625, 8, "cosine", "enc", "c.h5", ""),
    Row("sugarcrepe", "swap_att", "accuracy", 0.75, 4, "tflocal", "enc", "c.h5", "run/last.pt"),
    Row("sugarcrepe", "all", "accuracy", float("nan"), 8, "tflocal", "enc", "c.h5", "run/last.pt"),
]


def test_json_has_fixed_keys_and_round_trips(tmp_path):
    p = write_json(ROWS, tmp_path / "r.json")
    data = json.loads(p.read_text())
    assert all(tuple(d) == ROW_KEYS for d in data)
    assert ROW_KEYS == (
        "benchmark",
        "subset",
        "metric",
        "value",
        "n",
        "scorer",
        "encoder",
        "cache",
        "checkpoint",
    )
    assert data[3]["value"] is None  # NaN is written as null, valid JSON
    back = read_json(p)
    assert back[:3] == ROWS[:3] and np.isnan(back[3].value)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**data[0], "extra": 1}]))
    with pytest.raises(UserError, match="unknown keys"):
        read_json(bad)


def test_markdown_puts_scorers_side_by_side(tmp_path):
    table = markdown_table(ROWS)
    lines = table.strip().splitlines()
    assert lines[0] == "| benchmark | subset | metric | cosine | tflocal | n |"
    assert lines[2] == "| sugarcrepe | swap_att | accuracy | 50.0 | 75.0 | 4 |"
    assert lines[3] == "| sugarcrepe | all | accuracy | 62.5 | – | 8 |"
    text = write_markdown(ROWS, tmp_path / "r.md", title="t").read_text()
    assert text.startswith("# t") and "encoder: enc" in text and table in text


def _png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots(tmp_path):
    assert _png(subset_bars(ROWS, tmp_path / "bars.png"))
    rows = [
        Row("shapesworld", f"{sp}/depth{d}", "accuracy", a, 10, sc)
        for sc, sp, d, a in [
            ("cosine", "test_ood", 2, 0.4),
            ("cosine", "test_ood", 1, 0.6),
            ("tflocal", "test_ood", 1, 0.9),
            ("cosine", "test_id", 1, 0.7),
        ]
    ] + [Row("shapesworld", "test_ood/all", "accuracy", 0.5, 20, "cosine")]
    assert depth_curves(rows) == {
        ("cosine", "test_ood"): ([1, 2], [0.6, 0.4]),
        ("tflocal", "test_ood"): ([1], [0.9]),
        ("cosine", "test_id"): ([1], [0.7]),
    }
    assert _png(depth_plot(rows, tmp_path / "depth.png"))
    assert depth_plot(ROWS, tmp_path / "none.png") is None
    att = np.random.default_rng(0).random((4, 6))
    img = (np.random.default_rng(1).random((30, 40, 3)) * 255).astype("uint8")
    assert _png(
        alignment_plot(
            att, ["<bos>", "red", "cube", "<eos>"], (2, 3), tmp_path / "a.png", image=img, caption="red cube"
        )
    )
    with pytest.raises(ValueError, match="grid"):
        alignment_plot(att, ["a"] * 4, (3, 3), tmp_path / "b.png")


def test_eval_command_end_to_end(tmp_path, capsys):
    """sugarcrepe-shaped synthetic cache, two scorers: results.json, results.md, bars, heatmaps."""
    rng = np.random.default_rng(0)
    d, n_img = 8, 3
    texts, image_index, positive, meta = [], [], [], []
    for i in range(n_img):
        for subset in ("swap_att", "add_obj"):
            meta += [{"subset": subset}] * 2
            texts += [f"a red cube {i} {subset}", f"a blue ball {i} {subset}"]
            image_index += [i, i]
            positive += [-1, len(texts) - 2]
    path = write_arrays(
        tmp_path / "c.h5",
        {"encoder": "fake:test", "grid": [2, 2], **JOINT},
        [f"im{i}" for i in range(n_img)],
        rng.normal(size=(n_img, 4, d)),
        rng.normal(size=(n_img, d)),
        texts,
        [rng.normal(size=(4, d)).astype(np.float32) for _ in texts],
        rng.normal(size=(len(texts), d)),
        image_index,
        positive,
        text_meta=meta,
    )
    out = tmp_path / "res"
    rc = main(
        [
            "eval",
            "--bench",
            "sugarcrepe",
            "--cache",
            str(path),
            "--scorer",
            "cosine",
            "--scorer",
            "maxsim",
            "--out",
            str(out),
            "--heatmaps",
            "2",
            "--quiet",
        ]
    )
    assert rc == 0
    rows = read_json(out / "results.json")
    assert {r.scorer for r in rows} == {"cosine", "maxsim"}
    assert [(r.subset, r.n) for r in rows if r.scorer == "cosine"] == [
        ("add_obj", 3),
        ("swap_att", 3),
        ("all", 6),
    ]
    assert "| cosine | maxsim |" in (out / "results.md").read_text()
    assert _png(out / "bars_sugarcrepe.png")
    assert len(list((out / "heatmaps").glob("*.png"))) == 2
    assert "| sugarcrepe | all | accuracy |" in capsys.readouterr().out
    # a missing cache without encoder/data is a clear user error (exit status 2)
    rc = main(["eval", "--bench", "sugarcrepe", "--cache", str(tmp_path / "nope.h5"), "--out", str(out)])
    assert rc == 2 and "--encoder and --data" in capsys.readouterr().err
    assert main(["eval", "--bench", "nosuch", "--cache", str(path)]) == 2


def test_eval_precision_reaches_the_scorers(tmp_path, monkeypatch, capsys):
    """``tflocal eval --precision bf16`` passes it to every scorer it loads (trained heads autocast,
    the baselines stay fp32: tests/tflocal/test_scoring.py); another value is
    refused with a one-line message and exit status 2."""
    import tflocal.app.pipeline as pipeline

    seen = []
    real = pipeline.load_scorer
    monkeypatch.setattr(
        pipeline, "load_scorer", lambda *a, **kw: (seen.append(kw["precision"]), real(*a, **kw))[1]
    )
    rng = np.random.default_rng(0)
    texts = ["a red cube", "a blue ball"]
    path = write_arrays(
        tmp_path / "c.h5",
        {"encoder": "fake:test", "grid": [2, 2], **JOINT},
        ["im0"],
        rng.normal(size=(1, 4, 8)),
        rng.normal(size=(1, 8)),
        texts,
        [rng.normal(size=(3, 8)).astype(np.float32) for _ in texts],
        rng.normal(size=(2, 8)),
        [0, 0],
        [-1, 0],
        text_meta=[{"subset": "swap_att"}] * 2,
    )
    args = ["eval", "--bench", "sugarcrepe", "--cache", str(path), "--scorer", "maxsim", "--scorer", "cosine"]
    assert (
        main([*args, "--out", str(tmp_path / "r"), "--heatmaps", "0", "--quiet", "--precision", "bf16"]) == 0
    )
    assert seen == ["bf16", "bf16"]
    assert main([*args, "--precision", "int8"]) == 2
    assert "unknown precision 'int8': choose one of fp32, bf16, fp16" in capsys.readouterr().err
