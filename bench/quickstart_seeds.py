"""The quickstart's numbers over several training seeds, on the run's own caches.

``--run DIR`` is a finished ``tflocal quickstart --out DIR`` (``shapes/`` and ``caches/`` exist).
For each seed s, ``WORK/seed_s/`` gets ``shapes`` and ``caches`` as links to DIR's, and the
quickstart's own training and evaluation run there through the same code::

    cfg = QuickstartConfig(out=WORK/seed_s, seed=s, **the run's report/quickstart.json config)
    run_pipeline(cfg.evaluation(), cfg.caches(), cfg.heads())

The caches exist, so the pipeline only trains both heads and evaluates them (the bench checks
that no file under DIR/caches, nor at the top of DIR/shapes, changed). Only the training seed varies: the render
and the caches are the run's. The run's own seed (0 by default) reproduces DIR/report/results.json
exactly when training is deterministic on this machine (printed as ``seed0_matches_run``). A seed
whose ``WORK/seed_s/report/results.json`` exists is read, not re-run.

Printed: one line per seed and stage with its wall time; a table of pair accuracy (%) per
(subset, scorer): mean, min, max and sample standard deviation over the seeds; whether TFLocal is
at or above the global head in every seed on each SWAP and REPLACE subset of test_id, test_ood and
test_novel (by operator and by kind); the smallest TFLocal - global head gap over the seeds on
test_ood/swap (points). The last line is a JSON object of the figures.

    python bench/quickstart_seeds.py --run runs/quickstart --seeds 0,1,2 [--work runs/quickstart_seeds]
        [--set optim.scalar_lr=1]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from cache_tools.encoders.towers import native_bf16  # noqa: E402
from cache_tools.infra.machine import cpu_model  # noqa: E402
from tflocal.app.pipeline import run_pipeline  # noqa: E402
from tflocal.app.quickstart import HEADS, SGI_LABEL, QuickstartConfig  # noqa: E402
from tflocal.config import from_dict  # noqa: E402
from tflocal.errors import UserError  # noqa: E402

SAME = ("benchmark", "subset", "metric", "value", "n", "scorer", "encoder")
"""Row keys that must agree for a seed to reproduce the run (``cache`` and ``checkpoint`` are
paths, which differ)."""
CLAIM = re.compile(r"^(test_id|test_ood|test_novel)/(swap|replace)(/[^/]+)?$")
"""The SWAP and REPLACE subsets of the claims: ``SPLIT/swap``, ``SPLIT/replace`` and their kinds."""
GLOBAL, TFLOCAL = HEADS["global"], HEADS["tflocal"]
SEED_FILE = "seed_run.json"
"""Per seed folder: the config it ran with, its wall time and stage times."""


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: give distinct integers, e.g. 0,1,2")
    return seeds


def run_config(run: Path) -> dict[str, Any]:
    """The run's quickstart config (report/quickstart.json), checked for a finished run."""
    qs = run / "report" / "quickstart.json"
    for need in (run / "shapes" / "meta.json", run / "caches" / "train.h5", run / "caches" / "test.h5", qs):
        if not need.is_file():
            raise UserError(f"{need} not found: --run must be a finished `tflocal quickstart --out DIR`")
    return json.loads(qs.read_text())["config"]


def with_settings(base: dict[str, Any], settings: list[str]) -> dict[str, Any]:
    """``base`` with each ``KEY=VALUE`` of ``settings`` set (dotted keys into sections; VALUE read
    as JSON where it parses, else as a string); the config's own checks run in :func:`seed_config`."""
    out = json.loads(json.dumps(base))
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: give KEY=VALUE, e.g. optim.scalar_lr=1")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *path, last = key.strip().split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part!r} is not a section of the quickstart config")
        node[last] = value
    return out


def seed_config(base: dict[str, Any], out: Path, seed: int, progress: bool) -> QuickstartConfig:
    """The run's config with ``out``, ``seed`` (and ``progress``, which prints only) replaced."""
    fields = {k: v for k, v in base.items() if k not in ("out", "seed", "progress")}
    return from_dict(QuickstartConfig, {**fields, "out": str(out), "seed": seed, "progress": progress})


def comparable(cfg: QuickstartConfig) -> dict[str, Any]:
    """The config a seed's results depend on, as its JSON record reads back."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "progress")}
    return json.loads(json.dumps(fields))


def link(path: Path, target: Path) -> None:
    """``path`` -> ``target`` (a symlink), or an error when ``path`` is something else."""
    target = target.resolve()
    if path.is_symlink() and path.resolve() == target:
        return
    if path.exists() or path.is_symlink():
        raise UserError(f"{path} exists and is not a link to {target}: give another --work")
    path.symlink_to(target, target_is_directory=True)


def snapshot(run: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under DIR/caches and at the top of DIR/shapes."""
    files = [p for p in (run / "caches").rglob("*") if p.is_file()]
    files += [p for p in (run / "shapes").iterdir() if p.is_file()]
    return {str(p.relative_to(run)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


def stage_printer(seed: int, stages: dict[str, float]):
    @contextlib.contextmanager
    def stage(name: str):
        t0 = time.perf_counter()
        yield
        stages[name] = round(time.perf_counter() - t0, 2)
        print(f"seed {seed}: {name}: {stages[name]:.1f} s", flush=True)

    return stage


def run_seed(base: dict[str, Any], run: Path, work: Path, seed: int, progress: bool) -> tuple[list, dict]:
    """The rows of one seed (read when its report exists) and its record (config, seconds, stages)."""
    out = work / f"seed_{seed}"
    cfg = seed_config(base, out, seed, progress)
    record_path = out / SEED_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if record is not None and record["config"] != comparable(cfg):
        raise UserError(f"{out} was run with another config than {run}'s: give another --work")
    results = out / "report" / "results.json"
    if results.is_file():
        print(f"seed {seed}: read {results} (done before)", flush=True)
        return json.loads(results.read_text()), {
            **(record or {"seconds": None, "stages": {}}),
            "run_now": False,
        }
    out.mkdir(parents=True, exist_ok=True)
    link(out / "shapes", run / "shapes")
    link(out / "caches", run / "caches")
    evaluation, caches = cfg.evaluation(), cfg.caches()
    for path in [Path(c.out) for c in caches] + [Path(evaluation.cache)]:
        if not path.is_file():
            raise UserError(f"{path} not found: the seeds reuse the run's caches and build none")
    before = snapshot(run)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    run_pipeline(evaluation, caches, cfg.heads(), progress=progress, stage=stage_printer(seed, stages))
    seconds = round(time.perf_counter() - t0, 1)
    after = snapshot(run)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        raise UserError(
            f"seed {seed} changed the run's files ({', '.join(changed[:3])}): caches must be read only"
        )
    print(f"seed {seed}: total {seconds:.1f} s", flush=True)
    record = {"seed": seed, "config": comparable(cfg), "seconds": seconds, "stages": stages}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return json.loads(results.read_text()), {**record, "run_now": True}


def same_rows(a: list[dict], b: list[dict]) -> bool:
    return [[r[k] for k in SAME] for r in a] == [[r[k] for k in SAME] for r in b]


def summarise(per_seed: dict[int, list[dict]]) -> list[dict[str, Any]]:
    """One row per (subset, scorer, metric) in the first seed's order: the metric (%) over the
    seeds (pair accuracy; in the 3D world also text, image and group scores)."""
    values: dict[tuple[str, str, str], list[float]] = {}
    meta: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rows in per_seed.values():
        for r in rows:
            key = (r["subset"], r["scorer"], r["metric"])
            values.setdefault(key, []).append(100 * r["value"])
            meta.setdefault(key, {"metric": r["metric"], "n": r["n"]})
    out = []
    for (subset, scorer, metric), vals in values.items():
        if len(vals) != len(per_seed):
            raise UserError(f"{subset} / {scorer} / {metric}: {len(vals)} values for {len(per_seed)} seeds")
        out.append(
            {
                "subset": subset,
                "scorer": scorer,
                **meta[(subset, scorer, metric)],
                "mean": round(statistics.fmean(vals), 4),
                "min": round(min(vals), 4),
                "max": round(max(vals), 4),
                "std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0,
                "values": [round(v, 4) for v in vals],
            }
        )
    return out


def claims(per_seed: dict[int, list[dict]]) -> tuple[dict[str, bool], dict[str, list[int]], float | None]:
    """({claim subset: TFLocal >= global head in every seed}, {subset: seeds where below},
    min over seeds of TFLocal - global head on test_ood/swap in points)."""
    gaps: dict[str, dict[int, float]] = {}
    for seed, rows in per_seed.items():
        table = {(r["subset"], r["scorer"]): r["value"] for r in rows if r["metric"] == "accuracy"}
        for subset in dict.fromkeys(r["subset"] for r in rows):
            if CLAIM.match(subset) and (subset, GLOBAL) in table and (subset, TFLOCAL) in table:
                gaps.setdefault(subset, {})[seed] = table[(subset, TFLOCAL)] - table[(subset, GLOBAL)]
    every = {s: all(g >= 0 for g in by_seed.values()) for s, by_seed in gaps.items()}
    below = {s: [seed for seed, g in by_seed.items() if g < 0] for s, by_seed in gaps.items() if not every[s]}
    ood = gaps.get("test_ood/swap")
    return every, below, (round(100 * min(ood.values()), 4) if ood else None)


def group_gaps(per_seed: dict[int, list[dict]]) -> dict[str, dict[str, float]]:
    """3D world: per ``SPLIT/CATEGORY`` with a group score, the smallest TFLocal - baseline group
    score over the seeds (points), for the global head and SGI: {subset: {"vs_global_min": ..,
    "vs_sgi_min": ..}}; {} for a world without group scores."""
    gaps: dict[str, dict[str, list[float]]] = {}
    for rows in per_seed.values():
        table = {(r["subset"], r["scorer"]): r["value"] for r in rows if r["metric"] == "group"}
        for (subset, scorer), value in table.items():
            if scorer != TFLOCAL:
                continue
            for key, base in (("vs_global_min", GLOBAL), ("vs_sgi_min", SGI_LABEL)):
                if (subset, base) in table:
                    gaps.setdefault(subset, {}).setdefault(key, []).append(100 * (value - table[(subset, base)]))
    return {s: {k: round(min(v), 4) for k, v in by.items()} for s, by in gaps.items()}


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n| subset | scorer | metric | mean | min | max | std | n |\n|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['subset']} | {r['scorer']} | {r['metric']} | {r['mean']:.1f} | {r['min']:.1f} | "
            f"{r['max']:.1f} | {r['std']:.2f} | {r['n']} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished `tflocal quickstart --out DIR`")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    ap.add_argument("--work", type=Path, help="folder for the seeds' runs and reports (default: RUN/seeds)")
    ap.add_argument("--progress", action="store_true", help="the pipeline's own progress bars")
    ap.add_argument(
        "--epochs",
        type=int,
        help="train both heads this many epochs instead of the run's (default work folder RUN/seeds_eN; "
        "no seed then reproduces the run)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a quickstart config key for every seed, dotted (e.g. optim.scalar_lr=1; repeatable; "
        "default work folder RUN/seeds_KEY-VALUE)",
    )
    args = ap.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        run = args.run.resolve()
        base = run_config(run)
        same_as_run = args.epochs is None or args.epochs == base.get("epochs")
        if args.epochs is not None:
            if args.epochs < 1:
                raise UserError(f"--epochs {args.epochs}: give a positive number of epochs")
            base = {**base, "epochs": args.epochs}
        name = "seeds" if same_as_run else f"seeds_e{args.epochs}"
        base = with_settings(base, args.set)
        same_as_run = same_as_run and not args.set
        if args.set:
            name += "_" + "_".join(re.sub(r"[^A-Za-z0-9.]+", "-", kv) for kv in args.set)
        work = (args.work or run / name).resolve()
        per_seed, records = {}, {}
        for seed in seeds:
            per_seed[seed], records[seed] = run_seed(base, run, work, seed, args.progress)
    except UserError as err:
        print(f"quickstart_seeds: error: {err}", file=sys.stderr)
        return 1
    rows = summarise(per_seed)
    print_table(rows)
    every, below, gain = claims(per_seed)
    print("\nTFLocal >= global head in every seed, SWAP and REPLACE subsets:")
    for subset, ok in every.items():
        print(f"  {subset}: {str(ok).lower()}" + ("" if ok else f" (below in seeds {below[subset]})"))
    print(f"test_ood/swap: min over seeds of TFLocal - global head: {gain} points")
    groups = group_gaps(per_seed)
    if groups:
        print("\ngroup score, min over seeds of TFLocal - global head / TFLocal - SGI (points):")
        for subset, by in groups.items():
            print(f"  {subset}: {by.get('vs_global_min')} / {by.get('vs_sgi_min')}")
    run_rows = json.loads((run / "report" / "results.json").read_text())
    matches = same_rows(per_seed[base["seed"]], run_rows) if same_as_run and base["seed"] in per_seed else None
    print(f"seed{base['seed']}_matches_run: {json.dumps(matches)}")
    figures = {
        "seeds": seeds,
        "run_seed": base["seed"],
        "cpu": cpu_model(),
        "native_bf16": native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "config": {k: v for k, v in base.items() if k not in ("out", "seed", "progress")},
        "rows": rows,
        "tflocal_ge_global_every_seed": every,
        "tflocal_below_global_seeds": below,
        "test_ood_swap_min_gain_points": gain,
        "group_min_gain_points": groups,
        "seed0_matches_run": matches,
        "seconds_per_seed": [records[s]["seconds"] for s in seeds],
        "seeds_run_now": [s for s in seeds if records[s]["run_now"]],
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
