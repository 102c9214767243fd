"""docs/results/*.md and the README's headline table are what tools/results_docs.py makes of
docs/results/data/*.json (as docs/bad_inputs.md is what tests/helpers/bad_inputs.py renders)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "results_docs.py"


def load_tool():
    return load_script("tools/results_docs.py")


def test_generated_docs_match_their_data():
    proc = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + "\nrun `.venv/bin/python tools/results_docs.py`"


def test_every_doc_names_its_command_and_machine():
    tool = load_tool()
    for name in ("quickstart", "late_shapes", "serve"):
        doc = tool.load(name)
        text = (ROOT / "docs" / "results" / ("quickstart.md" if name == "quickstart" else
                                             "retrieval.md" if name == "late_shapes" else "performance.md")).read_text()
        assert f"`{doc['command']}`" in text and doc["machine"] in text


def test_headline_follows_the_rows(monkeypatch, tmp_path):
    """A changed row changes the README's headline and the quickstart doc, and a TFLocal row
    below the global head is named as such."""
    tool = load_tool()
    data = json.loads((tool.DATA / "quickstart.json").read_text())
    rows = copy.deepcopy(data["figures"]["rows"])
    row = next(r for r in rows if r["subset"] == "test_ood/swap" and r["scorer"] == "TFLocal")
    base = next(r for r in rows if r["subset"] == "test_ood/swap" and r["scorer"] == "global head")
    row["value"] = base["value"] - 0.01
    fake = data_without_seeds(tool, tmp_path)  # the one-run headline (no seeds figures)
    monkeypatch.setattr(tool, "DATA", fake)
    before, doc_before = tool.render_headline(), tool.render_quickstart()
    data["figures"]["rows"] = rows
    (fake / "quickstart.json").write_text(json.dumps(data))
    after = tool.render_headline()
    assert after != before and tool.render_quickstart() != doc_before
    assert f"test_ood/swap {100 * row['value']:.1f} vs {100 * base['value']:.1f}" in after


def test_check_fails_on_a_stale_doc(monkeypatch, tmp_path):
    tool = load_tool()
    docs = tmp_path / "results"
    docs.mkdir()
    for p in (ROOT / "docs" / "results").glob("*.md"):
        (docs / p.name).write_text(p.read_text())
    readme = tmp_path / "README.md"
    readme.write_text(tool.README.read_text())
    monkeypatch.setattr(tool, "DOCS", docs)
    monkeypatch.setattr(tool, "README", readme)
    assert tool.stale() == []
    (docs / "retrieval.md").write_text((docs / "retrieval.md").read_text().replace("0.", "9.", 1))
    assert tool.stale() == [str(docs / "retrieval.md")]
    assert tool.main(["--check"]) == 1


def test_bad_data_is_one_clear_message(monkeypatch, tmp_path, capsys):
    tool = load_tool()
    (tmp_path / "quickstart.json").write_text(json.dumps({"command": "x", "figures": {}}))
    monkeypatch.setattr(tool, "DATA", tmp_path)
    with pytest.raises(tool.StaleError, match="lacks machine, date"):
        tool.load("quickstart")
    assert tool.main(["--check"]) == 1
    assert "results_docs: error:" in capsys.readouterr().err


def seeds_figures() -> dict:
    """bench/quickstart_seeds.py's JSON line for two seeds and two subsets (made up, small)."""

    def row(subset, scorer, values):
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        return {
            "subset": subset,
            "scorer": scorer,
            "metric": "accuracy",
            "n": 18,
            "mean": mean,
            "min": min(values),
            "max": max(values),
            "std": std,
            "values": values,
        }

    return {
        "seeds": [0, 1],
        "run_seed": 0,
        "cpu": "Test CPU 9000",
        "native_bf16": False,
        "torch_threads": 2,
        "config": {"n_train": 3000, "n_test": 500, "epochs": 5},
        "rows": [
            row("test_ood/swap", "global head", [60.0, 70.0]),
            row("test_ood/swap", "TFLocal", [80.0, 65.0]),
            row("test_id/swap", "global head", [50.0, 50.0]),
            row("test_id/swap", "TFLocal", [55.0, 75.0]),
        ],
        "tflocal_ge_global_every_seed": {"test_ood/swap": False, "test_id/swap": True},
        "tflocal_below_global_seeds": {"test_ood/swap": [1]},
        "test_ood_swap_min_gain_points": -5.0,
        "seed0_matches_run": True,
        "seconds_per_seed": [201.5, 198.0],
        "seeds_run_now": [0, 1],
    }


def data_without_seeds(tool, tmp_path) -> Path:
    fake = tmp_path / "data"
    fake.mkdir()
    for p in tool.DATA.glob("*.json"):
        if p.name != "quickstart_seeds.json":
            (fake / p.name).write_text(p.read_text())
    return fake


def test_quickstart_seeds_doc_is_written_only_from_its_data(monkeypatch, tmp_path):
    """Without data/quickstart_seeds.json the doc is neither written nor asked for; an imported
    bench line renders mean ± std and [min, max] per head, the claims, the command and machine."""
    tool = load_tool()
    fake = data_without_seeds(tool, tmp_path)
    monkeypatch.setattr(tool, "DATA", fake)
    page = tool.DOCS / "quickstart_seeds.md"
    assert page not in tool.expected()
    log = tmp_path / "bench.log"
    log.write_text("seed 0: train the tflocal head: 12.0 s\n" + json.dumps(seeds_figures()) + "\n")
    cmd = "python bench/quickstart_seeds.py --run runs/quickstart --seeds 0,1"
    tool.import_bench("quickstart_seeds", log, cmd, "Test CPU 9000, 2 cores")
    assert json.loads((fake / "quickstart_seeds.json").read_text())["figures"] == seeds_figures()
    text = tool.render_quickstart_seeds()  # expected() also renders the README headline, which needs every headline subset
    assert f"`{cmd}`" in text and "Test CPU 9000, 2 cores" in text
    assert "| test_ood/swap | 65.0 ± 7.1 | [60.0, 70.0] | 72.5 ± 10.6 | [65.0, 80.0] | 18 |" in text
    assert "| subset | global head | [min, max] | TFLocal | [min, max] | n |" in text
    assert "on 1 of 2 SWAP and REPLACE subsets" in text
    assert "| test_ood/swap | false | 1 |" in text and "| test_id/swap | true |  |" in text
    assert "test_ood/swap: -5 points" in text and "row for row: true" in text
    assert "Seconds per seed: 201.5, 198." in text and "`n_train` 3,000" in text
    assert text.index("## test_ood") < text.index("## test_id")


def test_quickstart_seeds_data_without_its_figures_is_one_clear_message(monkeypatch, tmp_path):
    tool = load_tool()
    fake = data_without_seeds(tool, tmp_path)
    figures = seeds_figures()
    del figures["tflocal_ge_global_every_seed"]
    (fake / "quickstart_seeds.json").write_text(
        json.dumps({"command": "x", "machine": "m", "date": "2026-01-01", "figures": figures})
    )
    monkeypatch.setattr(tool, "DATA", fake)
    with pytest.raises(tool.StaleError, match="figures lack tflocal_ge_global_every_seed"):
        tool.expected()


def test_headline_over_seeds_says_where_tflocal_is_below_in_a_seed(monkeypatch, tmp_path):
    """With the seeds bench's figures the README's headline shows mean ± std [min, max] per head
    and, per subset, whether TFLocal is at or above the global head in every seed."""
    tool = load_tool()
    fake = data_without_seeds(tool, tmp_path)
    monkeypatch.setattr(tool, "DATA", fake)
    figures = seeds_figures()
    rows = []
    for subset, _ in tool.HEADLINE:
        rows += [r for r in figures["rows"] if r["subset"] == subset] or [
            dict(figures["rows"][2], subset=subset),
            dict(figures["rows"][3], subset=subset),
        ]
    figures["rows"] = rows
    log = tmp_path / "bench.log"
    log.write_text(json.dumps(figures) + "\n")
    tool.import_bench("quickstart_seeds", log, "python bench/quickstart_seeds.py", "Test CPU 9000, 2 cores")
    head = tool.render_headline()
    assert "| test_ood/swap | SWAP, colour-shape pairs and relations never seen in training | " \
        "65.0 ± 7.1 [60.0, 70.0] | 72.5 ± 10.6 [65.0, 80.0] | **no** | 18 |" in head
    assert "| test_id/swap | SWAP, seen combinations | 50.0 ± 0.0 [50.0, 50.0] | 65.0 ± 14.1 [55.0, 75.0] | yes |" in head
    assert "over 2 training seeds (Test CPU 9000, 2 cores;" in head
    assert "on 1 of 2 SWAP and REPLACE subsets; not on test_ood/swap (seed 1)." in head


def test_headline_says_how_a_cpu_without_native_bf16_differs(monkeypatch, tmp_path):
    """With quickstart_seeds_no_bf16.json beside the seeds' figures, the headline adds one line: that
    run's machine and encoder, its claims, and the largest moves of the table's means; the fp32
    seeds get a doc of their own."""
    tool = load_tool()
    fake = tmp_path / "data"
    fake.mkdir()
    for p in tool.DATA.glob("*.json"):
        if not p.name.startswith("quickstart_seeds"):
            (fake / p.name).write_text(p.read_text())
    monkeypatch.setattr(tool, "DATA", fake)
    figures = seeds_figures()
    rows = []
    for subset, _ in tool.HEADLINE:
        rows += [dict(figures["rows"][2], subset=subset), dict(figures["rows"][3], subset=subset)]
    figures["rows"] = rows
    figures["tflocal_ge_global_every_seed"] = {"test_ood/swap": True, "test_id/swap": True}
    figures["tflocal_below_global_seeds"] = {}
    figures["test_ood_swap_min_gain_points"] = 5.0
    log = tmp_path / "bench.log"
    log.write_text(json.dumps(figures) + "\n")
    tool.import_bench("quickstart_seeds", log, "python bench/quickstart_seeds.py", "Test CPU 9000, 2 cores")
    assert "without native bf16" not in tool.render_headline()
    other = copy.deepcopy(figures)
    other["config"]["encoder"] = "towers:effnet-lite0+minilm"
    for r in other["rows"]:
        if r["subset"] == "test_novel/swap" and r["scorer"] == "TFLocal":
            r["mean"] -= 4.25  # the largest move
        if r["subset"] == "test_id/swap" and r["scorer"] == "global head":
            r["mean"] += 1.0
    other["tflocal_ge_global_every_seed"] = {"test_ood/swap": True, "test_id/swap": False}
    other["tflocal_below_global_seeds"] = {"test_id/swap": [1]}
    other["test_ood_swap_min_gain_points"] = 3.0
    log.write_text(json.dumps(other) + "\n")
    tool.import_bench("quickstart_seeds_no_bf16", log, "python bench/quickstart_seeds.py", "Old CPU 1000, AVX2")
    head = tool.render_headline()
    line = head.splitlines()[-1]
    assert line.startswith("On a CPU without native bf16 (Old CPU 1000, AVX2; encoder `towers:effnet-lite0+minilm`")
    assert "at or above the global head in every seed on 1 of 2 SWAP and REPLACE subsets (not on test_id/swap)" in line
    assert "test_ood/swap gains at least 3.0 points in every seed" in line
    assert "move by at most 4.2 points there (largest: test_novel/swap TFLocal 4.2, test_id/swap global head 1.0" in line
    page = tool.DOCS / "quickstart_seeds_no_bf16.md"
    assert page in tool.expected()
    assert tool.expected()[page].startswith("# Quickstart over training seeds, on a CPU without native bf16")
