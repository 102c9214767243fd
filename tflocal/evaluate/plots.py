"""Pictures of a run (matplotlib, Agg): per-subset bars per scorer, accuracy versus composition
depth, and word-to-region alignment heatmaps over the image."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tflocal.evaluate.report import Row

_DEPTH = re.compile(r"^(?P<split>.+)/depth(?P<d>\d+)$")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int) -> Path:
    """Lay out, write (making the folder) and close a matplotlib figure; returns the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def _scorers(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r.scorer for r in rows))


def subset_bars(rows: Sequence[Row], path: str | Path, title: str = "") -> Path:
    """Grouped bars: one group per (subset, metric) of the rows, one bar per scorer, value in %."""
    plt = _plt()
    scorers = _scorers(rows)
    keys = list(dict.fromkeys((r.subset, r.metric) for r in rows))
    vals = {(r.subset, r.metric, r.scorer): r.value for r in rows}
    width = 0.8 / max(1, len(scorers))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(keys) * max(1, len(scorers)) + 2), 4.2))
    x = np.arange(len(keys))
    for j, s in enumerate(scorers):
        ys = [100 * vals.get((k[0], k[1], s), float("nan")) for k in keys]
        ax.bar(x + (j - (len(scorers) - 1) / 2) * width, ys, width, label=s)
    ax.set_xticks(x)
    ax.set_xticklabels(
        [k[0] if k[1] in ("accuracy",) else f"{k[0]}\n{k[1]}" for k in keys],
        rotation=45,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or (rows[0].benchmark if rows else ""))
    ax.legend(fontsize=8)
    return _save(fig, path, dpi=120)


def depth_curves(rows: Sequence[Row]) -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    """Rows with subsets ``<split>/depth<d>`` -> {(scorer, split): (depths, accuracies)} sorted by depth."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        m = _DEPTH.match(r.subset)
        if m and r.metric == "accuracy":
            out.setdefault((r.scorer, m["split"]), {})[int(m["d"])] = r.value
    return {k: (sorted(v), [v[d] for d in sorted(v)]) for k, v in out.items()}


def depth_plot(
    rows: Sequence[Row], path: str | Path, title: str = "accuracy vs composition depth"
) -> Path | None:
    """One line per (scorer, split): accuracy (%) against the number of operators applied."""
    curves = depth_curves(rows)
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (scorer, split), (ds, accs) in curves.items():
        ax.plot(
            ds,
            [100 * a for a in accs],
            marker="o",
            linestyle="-" if split.endswith("id") else "--",
            label=f"{scorer} ({split})",
        )
    ax.set_xlabel("composition depth (operators applied)")
    ax.set_ylabel("accuracy %")
    ax.set_xticks(sorted({d for ds, _ in curves.values() for d in ds}))
    ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path, dpi=120)


def alignment_plot(
    attention: np.ndarray,
    words: Sequence[str],
    grid: Sequence[int],
    path: str | Path,
    image: Any = None,
    caption: str = "",
    max_words: int = 12,
) -> Path:
    """For one caption: a panel per word showing which image regions it attends to.

    attention: [T, P] (row t: weights of word t over the P = grid[0] * grid[1] patches, row-major);
    words: T token strings; image: optional PIL image / HxWx3 array drawn under the heatmap.
    Special tokens (``<...>``, ``[...]``) and empty strings are skipped.
    """
    attention = np.asarray(attention, dtype=np.float32)
    gh, gw = int(grid[0]), int(grid[1])
    if attention.ndim != 2 or attention.shape[1] != gh * gw or attention.shape[0] != len(words):
        raise ValueError(
            f"alignment_plot: attention {attention.shape} vs {len(words)} words and grid {gh}x{gw}"
        )
    keep = [t for t, w in enumerate(words) if w.strip() and not re.match(r"^[<\[].*[>\]]$", w.strip())][
        :max_words
    ]
    if not keep:
        keep = list(range(min(len(words), max_words)))
    plt = _plt()
    cols = min(4, len(keep))
    nrows = math.ceil(len(keep) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 3 * nrows + 0.4), squeeze=False)
    img = None if image is None else np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, t in zip(axes.ravel(), keep):
        heat = attention[t].reshape(gh, gw)
        if img is not None:
            h, w = img.shape[:2]
            ax.imshow(img)
            ax.imshow(heat, cmap="jet", alpha=0.5, extent=(0, w, h, 0), interpolation="bilinear")
        else:
            ax.imshow(heat, cmap="viridis", interpolation="nearest")
        ax.set_title(words[t].replace("</w>", ""), fontsize=10)
    if caption:
        fig.suptitle(caption, fontsize=11)
    return _save(fig, path, dpi=100)
