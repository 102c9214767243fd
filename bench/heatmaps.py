"""Do a trained head's word heatmaps land on the objects? On a finished quickstart run: for the
first N positive test captions, every token naming a colour or shape of exactly one object in
the scene, its heat maximum (the head's word-region attention) mapped to the image (a) through
the cache's patch geometry (:mod:`cache_tools.encoders.geometry`: the central crop the encoder saw) and
(b) stretched over the whole image (a plain overlay); prints the share inside the object's box.

    python bench/heatmaps.py --run runs/quickstart [--n 400] [--draw docs/]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache_tools.encoders.geometry import geometry_of, patch_point  # noqa: E402
from cache_tools.store.reader import open_cache  # noqa: E402


def inside(obj: dict, x: float, y: float) -> bool:
    return abs(x - obj["x"]) <= obj["r"] and abs(y - obj["y"]) <= obj["r"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a quickstart --out folder")
    ap.add_argument("--n", type=int, default=400, help="positive test captions to check")
    ap.add_argument("--draw", default="", help="folder to draw one heatmap and the bar plot into")
    args = ap.parse_args()
    import tflocal

    run = Path(args.run)
    cache = open_cache(run / "caches" / "test.h5")
    scorer = tflocal.load_scorer(str(run / "runs" / "tflocal" / "best.pt"), cache)
    texts = np.flatnonzero((cache.image_index >= 0) & (cache.positive_index < 0))[: args.n]
    imgs = cache.image_index[texts]
    maps = scorer.word_region_attention(imgs, texts)
    geo, grid = geometry_of(cache.attrs), cache.attrs["grid"]
    hits = naive = total = 0
    for t, i, att in zip(texts, imgs, maps):
        scene = cache.image_meta(int(i))["scene"]
        size = int(scene["image_size"])
        for k, w in enumerate(cache.token_strings(int(t))[: att.shape[0]]):
            match = [o for o in scene["objects"] if w in (o["shape"], o["color"])]
            if len(match) != 1:
                continue
            cell = int(att[k].argmax())
            r, c = divmod(cell, int(grid[1]))
            total += 1
            hits += inside(match[0], *patch_point(geo, grid, size, size, cell))
            naive += inside(match[0], (c + 0.5) * size / grid[1], (r + 0.5) * size / grid[0])
    print(f"{total} object words in {len(texts)} captions: heat maximum inside the object's box")
    print(f"  through the patch geometry {geo}: {hits / total:.3f}")
    print(f"  stretched over the whole image (before): {naive / total:.3f}")
    if args.draw:
        draw(run, cache, scorer, geo, Path(args.draw))
    print(
        json.dumps(
            {
                "object_words": total,
                "inside_box_ratio_geometry": round(hits / total, 3),
                "inside_box_ratio_whole_image": round(naive / total, 3),
            }
        )
    )


def draw(run, cache, scorer, geo, out: Path) -> None:
    """docs pictures: the first test_ood caption's heatmap (the quickstart's first) and the bars."""
    from cache_tools.encoders.images import load_image
    from cache_tools.sources import open_source
    from tflocal.evaluate.plots import alignment_plot, subset_bars
    from tflocal.evaluate.report import Row

    t = next(
        int(t)
        for t in np.flatnonzero((cache.image_index >= 0) & (cache.positive_index < 0))
        if cache.image_meta(int(cache.image_index[t])).get("split") == "test_ood"
    )
    att = scorer.word_region_attention([int(cache.image_index[t])], [t])[0]
    image_id = str(cache.image_ids[cache.image_index[t]])
    rec = next(r for r in open_source(f"shapesworld:{run / 'shapes'}", split="test_ood") if r.id == image_id)
    alignment_plot(
        att,
        cache.token_strings(t)[: att.shape[0]],
        cache.attrs["grid"],
        out / "quickstart_heatmap.png",
        image=load_image(rec),
        caption=str(cache.strings[t]),
        geometry=geo,
        max_words=12,
    )
    rows = json.loads((run / "report" / "results.json").read_text())
    rows = rows if isinstance(rows, list) else rows["rows"]
    fields = ("benchmark", "subset", "metric", "value", "n", "scorer")
    rows = [Row(**{f: r[f] for f in fields}) for r in rows]
    subset_bars(rows, out / "quickstart_bars.png", title="ShapesWorld pair accuracy (quickstart)")


if __name__ == "__main__":
    main()
