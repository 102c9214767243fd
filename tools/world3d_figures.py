"""The README's 3D-world figures: minimal pairs with their captions, and the group-score tables.

    .venv/bin/python tools/world3d_figures.py RENDER_DIR [--split test_ood] [--out docs/world3d_pairs.png]
    .venv/bin/python tools/world3d_figures.py --report runs/quickstart3d/report [--metrics group]
    .venv/bin/python tools/world3d_figures.py --seeds SEEDS_LOG [--split test_ood]

The figure: the first pair of each of ``--categories`` in the split, its two images side by side,
each with its caption (caption 0 of its manifest line) under it. ``--report``: markdown tables of
a world3d report's ``results.json``, one per split, a row per category, a column per scorer.
``--seeds``: the group score of one split over training seeds from ``bench/quickstart_seeds.py``'s
output (its last line, a JSON object): mean [min, max] per scorer and the smallest TFLocal lead
over each baseline.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

CELL = 224
TEXT_H = 44


def _font(size: int = 13) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def pairs_figure(root: Path, split: str, categories: list[str], out: Path, cols: int = 2) -> Path:
    """Write the figure of the first minimal pair of each category (``cols`` pairs a row)."""
    lines = [json.loads(s) for s in (root / f"{split}.jsonl").read_text().splitlines()]
    first: dict[str, list[dict]] = {}
    for ln in lines:
        if ln.get("group") and ln["category"] in categories:
            first.setdefault(ln["category"], [])
            if len(first[ln["category"]]) < 2 and all(
                x["group"] == ln["group"] for x in first[ln["category"]]
            ):
                first[ln["category"]].append(ln)
    chosen = [c for c in categories if len(first.get(c, [])) == 2]
    rows = (len(chosen) + cols - 1) // cols
    fig = Image.new("RGB", (cols * 2 * CELL + (cols - 1) * 12, rows * (CELL + TEXT_H + 22)), "white")
    draw, font, bold = ImageDraw.Draw(fig), _font(12), _font(14)
    for k, cat in enumerate(chosen):
        r, c = divmod(k, cols)
        x0, y0 = c * (2 * CELL + 12), r * (CELL + TEXT_H + 22)
        draw.text((x0 + 4, y0 + 2), cat, fill="black", font=bold)
        for side, ln in enumerate(first[cat]):
            img = Image.open(root / ln["image"]).convert("RGB").resize((CELL, CELL))
            fig.paste(img, (x0 + side * CELL, y0 + 20))
            caption = "\n".join(textwrap.wrap(ln["captions"][0], 34)[:3])
            draw.multiline_text((x0 + side * CELL + 4, y0 + 22 + CELL), caption, fill="black", font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.save(out, optimize=True)
    return out


CATEGORY_ROWS = (
    "groups", "color", "material", "size", "quantity", "relation", "plane", "depth", "support",
    "comparative", "equality",
)  # fmt: skip


def report_tables(report: Path, metrics: list[str]) -> str:
    """Markdown: per split and metric, a row per category and a column per scorer (%, n)."""
    rows = [r for r in json.loads((report / "results.json").read_text()) if r["benchmark"] == "world3d"]
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    value = {(r["subset"], r["metric"], r["scorer"]): (r["value"], r["n"]) for r in rows}
    out = []
    for split in ("test_id", "test_ood", "test_novel"):
        for metric in metrics:
            if not any(k[0].startswith(split + "/") and k[1] == metric for k in value):
                continue
            out += [f"{split}, {metric} score (%):", "", "| category | " + " | ".join(scorers) + " | n |"]
            out.append("|---|" + "---:|" * (len(scorers) + 1))
            for cat in CATEGORY_ROWS:
                cells = [value.get((f"{split}/{cat}", metric, s)) for s in scorers]
                if all(c is None for c in cells):
                    continue
                n = next(c[1] for c in cells if c is not None)
                shown = ["" if c is None else f"{100 * c[0]:.1f}" for c in cells]
                out.append(f"| {cat} | " + " | ".join(shown) + f" | {n} |")
            out.append("")
    return "\n".join(out)


def compact_table(report: Path, metric: str = "group") -> str:
    """Markdown: a row per category; every scorer on test_ood, the localized head on the other
    splits (the README's table)."""
    rows = [r for r in json.loads((report / "results.json").read_text()) if r["benchmark"] == "world3d"]
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    value = {(r["subset"], r["scorer"]): (r["value"], r["n"]) for r in rows if r["metric"] == metric}
    head = "TFLocal" if "TFLocal" in scorers else scorers[-1]
    cols = [("test_ood", s) for s in scorers] + [("test_id", head), ("test_novel", head)]
    out = ["| category | " + " | ".join(f"{sp}: {s}" for sp, s in cols) + " | n per split |"]
    out.append("|---|" + "---:|" * (len(cols) + 1))
    for cat in CATEGORY_ROWS:
        cells = [value.get((f"{sp}/{cat}", s)) for sp, s in cols]
        if cells[0] is None:
            continue
        shown = ["" if c is None else f"{100 * c[0]:.1f}" for c in cells]
        out.append(f"| {cat} | " + " | ".join(shown) + f" | {cells[0][1]} |")
    return "\n".join(out)


def seeds_table(log: Path, split: str = "test_ood", metric: str = "group") -> str:
    """Markdown: a row per category of ``split``, mean [min, max] over the seeds per scorer and the
    smallest TFLocal - baseline over the seeds (points), from the seeds bench's JSON line."""
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"{log}: no JSON line; give the output of bench/quickstart_seeds.py")
    figures = json.loads(lines[-1])
    rows = {(r["subset"], r["scorer"]): r for r in figures["rows"] if r["metric"] == metric}
    scorers = list(dict.fromkeys(sc for (sub, sc) in rows if sub.startswith(split + "/")))
    head = "TFLocal"
    others = [sc for sc in scorers if sc != head]
    out = [
        "| category | " + " | ".join(scorers) + " | " + " | ".join(f"min {head} − {sc}" for sc in others) + " | n |",
        "|---|" + "---:|" * (len(scorers) + len(others) + 1),
    ]
    for cat in CATEGORY_ROWS:
        cells = [rows.get((f"{split}/{cat}", sc)) for sc in scorers]
        if any(c is None for c in cells):
            continue
        shown = [f"{c['mean']:.1f} [{c['min']:.1f}, {c['max']:.1f}]" for c in cells]
        mine = rows[(f"{split}/{cat}", head)]["values"]
        gaps = [min(a - b for a, b in zip(mine, rows[(f"{split}/{cat}", sc)]["values"])) for sc in others]
        out.append(f"| {cat} | " + " | ".join(shown) + " | " + " | ".join(f"{g:+.1f}" for g in gaps) + f" | {cells[0]['n']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("render", type=Path, nargs="?")
    p.add_argument("--report", type=Path, help="print the tables of this world3d report instead")
    p.add_argument("--metrics", default="group", help="comma-separated: text, image, group")
    p.add_argument("--compact", action="store_true", help="with --report: the README's one table")
    p.add_argument("--seeds", type=Path, help="print the group scores over seeds of this seeds-bench output")
    p.add_argument("--split", default="test_ood")
    p.add_argument("--categories", default="color,material,size,quantity,depth,support,comparative,equality")
    p.add_argument("--out", type=Path, default=Path("docs/world3d_pairs.png"))
    a = p.parse_args(argv)
    if a.seeds is not None:
        print(seeds_table(a.seeds, a.split))
        return 0
    if a.report is not None:
        print(compact_table(a.report) if a.compact else report_tables(a.report, a.metrics.split(",")))
        return 0
    if a.render is None:
        p.error("give RENDER_DIR (or --report DIR)")
    print(pairs_figure(a.render, a.split, a.categories.split(","), a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
