"""The README's Python example runs end to end: on a tiny random-weight open_clip model in place
of the towers, over a manifest of 16 generated images, in a temporary folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

README = Path(__file__).resolve().parent.parent / "README.md"
ENCODER_LINE = 'ENCODER = "towers:effnet-lite0+minilm"'
COLOURS = ("red", "blue", "green", "yellow")
SHAPES = ("cube", "ball", "cone", "ring")


def readme_example() -> str:
    """The one ```python block of the README's "## Python API" section."""
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's Python API section should hold one ```python block"
    return blocks[0]


def write_manifest(root: Path, n: int = 16) -> None:
    (root / "data" / "img").mkdir(parents=True)
    lines = []
    for i in range(n):
        rng = np.random.default_rng(i)
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype("uint8")).save(root / "data" / "img" / f"{i}.png")
        a, b = COLOURS[i % 4], COLOURS[(i + 1) % 4]
        s, t = SHAPES[i % 4], SHAPES[(i + 2) % 4]
        lines.append({
            "image": f"img/{i}.png",
            "captions": [f"a {a} {s} left of a {b} {t}"],
            "negatives": [f"a {b} {s} left of a {a} {t}", f"a {a} {t} left of a {b} {s}"],
        })
    (root / "data" / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_readme_python_example_runs(tiny_openclip, tmp_path, monkeypatch):
    code = readme_example()
    assert ENCODER_LINE in code, f"the README example should set {ENCODER_LINE} (the test swaps in a tiny model)"
    code = code.replace(ENCODER_LINE, f"ENCODER = {tiny_openclip!r}")
    write_manifest(tmp_path)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)

    assert Path("caches/train.h5").is_file() and Path(ns["run"]["checkpoint"]).is_file()
    assert ns["pair_scores"].shape == (2,) and np.isfinite(ns["pair_scores"]).all()
    assert ns["matrix"].shape == (3, 2) and np.isfinite(ns["matrix"]).all()
    # the matrix holds the same numbers as the pair scores of its cells
    np.testing.assert_allclose(ns["matrix"][0, :], ns["pair_scores"], rtol=1e-5, atol=1e-5)
    rows, scores = ns["rows"], ns["scores"]
    assert len(rows) == 3 and len(scores) == 3 and ns["n_scored"] >= 3
    assert np.all(np.diff(scores) <= 0), "search returns its top k best first"
    assert set(rows.tolist()) <= set(range(ns["cache"].n_images))
