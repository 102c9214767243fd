"""Pictures of a run (matplotlib, Agg): per-subset bars per scorer, accuracy versus composition
depth, accuracy per chain of operators, and word-to-region alignment heatmaps over the image."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cache_tools.encoders.geometry import covered_box
from tflocal.evaluate.report import Row

_DEPTH = re.compile(r"^(?P<split>.+)/depth(?P<d>\d+)$")
_CHAIN = re.compile(r"^(?P<split>[^/]+)/chain/(?P<chain>.+)$")
CHAIN_ROW = re.compile(r".+/chain/.+")
"""Subsets of the chain plot (``<split>/chain/<chain>``), kept out of the per-subset bars."""


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int, layout: bool = True) -> Path:
    """Lay out, write (making the folder) and close a matplotlib figure; returns the path."""
    if layout:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def _scorers(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r.scorer for r in rows))


PANEL_COLUMNS = 3
"""Panels per row of the bar figure (at 4.2 in each and 120 dpi: at most ~1600 px wide)."""


def _panels(rows: Sequence[Row]) -> dict[str, list[tuple[str, str]]]:
    """Rows -> {split: [(subset, metric), ...]} in first-seen order; the split is the part of
    the subset before its first ``/`` ("" for subsets without one)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        split = r.subset.split("/", 1)[0] if "/" in r.subset else ""
        key = (r.subset, r.metric)
        if key not in out.setdefault(split, []):
            out[split].append(key)
    return out


def subset_bars(rows: Sequence[Row], path: str | Path, title: str = "") -> Path:
    """Horizontal bars, one panel per split (``test_id/...``, ``test_ood/...``; one panel when
    subsets have no split prefix), a row per (subset, metric) and a bar per scorer, value in %.
    Panels wrap after :data:`PANEL_COLUMNS`, so the figure fits a page (<= ~1600 px wide)."""
    plt = _plt()
    scorers = _scorers(rows)
    panels = _panels(rows)
    vals = {(r.subset, r.metric, r.scorer): r.value for r in rows}
    cols = max(1, min(PANEL_COLUMNS, len(panels)))
    nrows = max(1, math.ceil(len(panels) / cols))
    most = max((len(v) for v in panels.values()), default=1)
    bar_h = 0.8 / max(1, len(scorers))
    fig, axes = plt.subplots(
        nrows,
        cols,
        figsize=(4.2 * cols + 0.4, nrows * (0.9 + 0.17 * most * max(1, len(scorers)) ** 0.5 + 0.6)),
        squeeze=False,
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    for ax, (split, keys) in zip(axes.ravel(), panels.items()):
        y = np.arange(len(keys))
        for j, s in enumerate(scorers):
            xs = [100 * vals.get((k[0], k[1], s), float("nan")) for k in keys]
            ax.barh(
                y + (j - (len(scorers) - 1) / 2) * bar_h, xs, bar_h, label=s, color=colors[j % len(colors)]
            )
        labels = []
        for subset, metric in keys:
            name = subset[len(split) + 1 :] if split else subset
            labels.append(name if metric == "accuracy" else f"{name} ({metric})")
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_ylim(len(keys) - 0.5, -0.5)  # first subset on top
        ax.set_xlim(0, 100)
        ax.set_xticks([0, 25, 50, 75, 100])
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("%", fontsize=8)
        ax.set_title(split or "all subsets", fontsize=10)
    handles, names = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", ncol=max(1, len(scorers)), fontsize=8, frameon=False)
    fig.suptitle(title or (rows[0].benchmark if rows else ""), x=0.02, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(fig, path, dpi=120, layout=False)


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


def chain_points(rows: Sequence[Row]) -> dict[str, dict[str, dict[str, float]]]:
    """Rows with subsets ``<split>/chain/<chain>`` -> {split: {chain: {scorer: accuracy}}}."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        m = _CHAIN.match(r.subset)
        if m and r.metric == "accuracy":
            out.setdefault(m["split"], {}).setdefault(m["chain"], {})[r.scorer] = r.value
    return out


def chain_plot(
    rows: Sequence[Row], path: str | Path, title: str = "accuracy by chain of operators"
) -> Path | None:
    """One panel per split; chains on the x axis grouped by depth (their length, dotted lines
    between groups), one marker per scorer, accuracy in %. None when no chain rows exist."""
    from tflocal.concepts.negatives import CHAIN_SEP

    points = chain_points(rows)
    if not points:
        return None
    plt = _plt()
    scorers = _scorers([r for r in rows if _CHAIN.match(r.subset)])
    markers = "osD^vP*X"
    fig, axes = plt.subplots(
        1, len(points), figsize=(4.6 * len(points) + 0.4, 4.2), squeeze=False, sharey=True
    )
    for ax, (split, by_chain) in zip(axes.ravel(), points.items()):
        chains = sorted(by_chain, key=lambda c: (c.count(CHAIN_SEP), c))
        x = np.arange(len(chains))
        for j, s in enumerate(scorers):
            ys = [100 * by_chain[c].get(s, float("nan")) for c in chains]
            ax.plot(x, ys, marker=markers[j % len(markers)], linestyle="none", label=s)
        depths = [c.count(CHAIN_SEP) + 1 for c in chains]
        for k in range(1, len(chains)):
            if depths[k] != depths[k - 1]:
                ax.axvline(k - 0.5, color="grey", lw=0.8, ls=":")
        ax.set_xticks(x)
        ax.set_xticklabels(chains, rotation=45, ha="right", fontsize=8)
        ax.axhline(50, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0, 100)
        ax.set_xlim(-0.5, len(chains) - 0.5)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(split, fontsize=10)
    axes.ravel()[0].set_ylabel("accuracy %")
    handles, names = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", ncol=max(1, len(scorers)), fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return _save(fig, path, dpi=120, layout=False)


def alignment_plot(
    attention: np.ndarray,
    words: Sequence[str],
    grid: Sequence[int],
    path: str | Path,
    image: Any = None,
    caption: str = "",
    max_words: int = 12,
    geometry: Mapping[str, Any] | None = None,
) -> Path:
    """For one caption: a panel per word showing which image regions it attends to.

    attention: [T, P] (row t: weights of word t over the P = grid[0] * grid[1] patches, row-major);
    words: T token strings; image: optional PIL image / HxWx3 array drawn under the heatmap;
    geometry: the cache's patch geometry (``cache_tools.encoders.geometry.geometry_of(cache.attrs)``):
    the grid is drawn over the part of the image the encoder saw (the central crop for
    CLIP-style preprocessing), each cell centred where its patch is; None: the whole image.
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
            x0, y0, x1, y1 = covered_box(geometry, w, h)
            ax.imshow(img)
            ax.imshow(heat, cmap="jet", alpha=0.5, extent=(x0, x1, y1, y0), interpolation="bilinear")
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
        else:
            ax.imshow(heat, cmap="viridis", interpolation="nearest")
        ax.set_title(words[t].replace("</w>", ""), fontsize=10)
    if caption:
        fig.suptitle(caption, fontsize=11)
    return _save(fig, path, dpi=100)
