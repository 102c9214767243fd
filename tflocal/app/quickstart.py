"""The embedded default: tflocal's whole job, offline, on a laptop CPU, in minutes.

``run_quickstart(QuickstartConfig(out=...))`` renders ShapesWorld (train / test_id / test_ood /
test_novel),
then runs :func:`tflocal.app.pipeline.run_pipeline` with the typed configs the quickstart holds
(:meth:`QuickstartConfig.caches`, :meth:`~QuickstartConfig.heads`,
:meth:`~QuickstartConfig.evaluation`):

1. caches it with the offline pretrained towers (EfficientNet-Lite0 7x7 grid + MiniLM tokens),
   hard negatives included — one cache for train, one for the three test splits;
2. trains the global head (the learned dual-encoder baseline) and TFLocal on the same cache,
   while a second process renders the test splits and caches them (:mod:`tflocal.app.beside`);
3. evaluates both (and MaxSim / cosine when the cache's spaces allow) on test_id, test_ood and test_novel,
   by operator, kind and composition depth;
4. writes ``report/`` (results.json, results.md, plots, heatmaps) and returns the rows.

Every stage is skipped when its output already exists, so an interrupted quickstart resumes.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cache_tools.config import CacheConfig
from cache_tools.encoders.towers import native_bf16, tower_precisions
from tflocal.app.pipeline import run_pipeline
from tflocal.app.serve import serve_command
from tflocal.errors import UserError
from tflocal.evaluate.config import EvalConfig
from tflocal.evaluate.report import markdown_table
from tflocal.models.config import ModelConfig
from tflocal.shapesworld import generate, rendered_splits
from tflocal.training.config import DEVICES, DataConfig, Device, OptimConfig, TrainConfig

PAIR = "towers:effnet-lite0+minilm"
INT8_MIN_SPEEDUP = 1.15
"""``@text-int8`` is the default on a CPU without native bf16 only where its measured text
forward is at least this much faster than fp32's (so timing noise never picks it)."""


def towers_for(native: bool, int8_speedup: float | None = None) -> str:
    """The quickstart's towers on a CPU that runs bf16 natively (``native``) or not; there,
    ``int8_speedup`` (fp32 time / int8 time of the text tower, :func:`int8_speedup`) decides
    between ``@text-int8`` and fp32."""
    if native:
        return PAIR + "@text-bf16"
    if int8_speedup is not None and int8_speedup >= INT8_MIN_SPEEDUP:
        return PAIR + "@text-int8"
    return PAIR


_SPEEDUP: dict[str, float | None] = {}


def int8_speedup() -> float | None:
    """fp32 / int8 time of the text tower's forward on this CPU (measured once a machine,
    :func:`cache_tools.encoders.towers.text_int8_timing`; asked once a process), or None where
    ONNX Runtime is unusable here."""
    from cache_tools.encoders.onnx_runtime import onnx_available
    from cache_tools.encoders.towers import error_line, text_int8_timing

    if "x" in _SPEEDUP:
        return _SPEEDUP["x"]
    speedup = None
    if onnx_available():
        try:
            fp32_s, int8_s = text_int8_timing()
            speedup = fp32_s / int8_s
        except Exception as err:  # noqa: BLE001 - export or runtime failures of many kinds: fp32 then
            print(f"warning: the int8 text tower cannot run here ({error_line(err)}); the towers run fp32", file=sys.stderr)
    _SPEEDUP["x"] = speedup
    return speedup


def default_towers(device: str = "auto") -> str:
    """The towers ``--encoder auto`` (the default) means on this machine for ``device`` (auto,
    cpu or cuda): on a GPU never the int8 text tower (it runs on a CPU only)."""
    import torch

    native = native_bf16()
    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return towers_for(native, None if native or on_gpu else int8_speedup())


AUTO = "auto"
"""The default encoder: the offline towers in the precision that is fastest here, chosen as
:func:`default_towers` says. The image tower runs fp32 everywhere, on ONNX Runtime where that is
faster on the CPU in use (measured at the start of caching; it was on both kinds of CPU tried:
faster than torch's fp32 and than its bf16). The text tower runs bf16 where the CPU runs bf16
natively (``@text-bf16``: faster than fp32 on either runtime there, tokens within cosine 0.9999
of fp32's); elsewhere int8 on ONNX Runtime (``@text-int8``) where it is measured at least
:data:`INT8_MIN_SPEEDUP` times faster than fp32 (2.4x on a Zen 4 EPYC: its tokens at cosine ~0.99
of fp32's), and fp32 on the faster runtime otherwise. So the image features are the same fp32
ones on every CPU; the text features differ by CPU kind (docs/experiments.md)."""
HEADS = {"global": "global head", "tflocal": "TFLocal"}
"""Heads trained, with their names in the report."""
SGI_LABEL = "SGI (global head on crops)"
"""The 3D world's training-free baseline in the report: the trained global head scoring crops."""
CACHES = {"train": "train", "test": "test_id,test_ood,test_novel"}
"""Cache file -> ShapesWorld splits in it."""


WORLD_DEFAULTS = {"2d": (3000, 500, 5), "3d": (2000, 300, 10)}
"""World -> default (n_train, n_test, epochs). The 3D world's heads were still improving at 5
epochs (test_ood group score 43.7 at 5, 54.7 at 10: docs/world3d.md)."""


WORLD_HEADS = {
    "2d": ({}, {}),
    "3d": ({"count_term": True, "count_form": "density", "number_words": "drop"}, {"scalar_lr": 10.0}),
}
"""World -> (model keys, optim keys) it fills in where the config leaves them at None. The 3D
world states counts ("two small metal spheres"): the additive count term, phrases matched without
their number words, and the term weights trained 10x faster (a weight starting at 0 moves about lr
per step); with the blocks starting as the identity (``model.block_init``), test_ood quantity
24.2 / 36.4 / 21.2 over three training seeds against 0-3 without them (docs/world3d.md).
ShapesWorld states no counts."""


@dataclass
class QuickstartConfig:
    out: str = "runs/quickstart"
    """Folder for everything: shapes/, caches/, runs/, report/."""
    world: str = "2d"
    """2d: ShapesWorld; 3d: the 3D world (colour, material, size, quantity and five relation
    types; test splits of minimal pairs scored image-to-text, text-to-image and as a group)."""
    n_train: int | None = None
    """Training images (2d: default 3000) or items (3d: default 2000; a share --train-pairs of
    them with a twin image)."""
    n_test: int | None = None
    """Images (2d: default 500) or minimal pairs (3d: default 300) in each test split."""
    train_pairs: float = 0.5
    """3d only: share of training items that also get a minimal-pair twin image."""
    seed: int = 0
    encoder: str = AUTO
    """Encoder for the cache: auto (the offline towers in the precision fastest on this CPU:
    bf16 text where the CPU runs bf16 natively, else int8 text where measured faster, else fp32;
    no download) or any registry name."""
    image_size: int = 224
    epochs: int | None = None
    """Training epochs of each head (2d: default 5; 3d: default 10)."""
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(width=64, depth=1, heads=4, readout="segments")
    )
    """Both heads' size: small to fit a CPU. ``readout`` 'segments' matches parsed object
    phrases to regions and scores relations from their locations; the joint-transformer read-outs
    ('summary', 'summary+align') did not pull clear of the global head on SWAP at this size."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, warmup_steps=100))
    data: DataConfig = field(
        default_factory=lambda: DataConfig(
            batch_size=32, n_neg=8, k_inbatch=0, val_fraction=0.1, in_memory=True, num_workers=1
        )
    )
    """Training batches: 8 hard negatives per candidate set and no in-batch negatives (ShapesWorld
    captions of other images often describe this image too). One loader worker builds the next
    batch (parsing its captions) while the head trains on the current one: the same batches and
    losses as building them in the training process (identical logs), and on a 2-core AMD EPYC
    250 TFLocal steps took 66-67 s of wall time against 77-78 s (a head this small keeps only one
    core busy)."""
    counterfactual: bool = False
    """Render a counterfactual twin per training image (``tflocal shapes --counterfactual``): a
    minimal pair that makes one SWAP negative true, seen by both heads in both directions. Off by
    default: with the joint ``summary+align`` read-out at this CPU size it lowered TFLocal's
    test_ood SWAP accuracy; the ``segments`` read-out does well without twins."""
    vary_names: float = 0.25
    """Share of training images named with other words (``tflocal shapes --vary-names``): synonyms
    the shipped vocabulary may or may not hold, none of them a test_novel word, so that the heads
    learn to read what a word means to the text encoder instead of memorising one name per concept.
    A larger share cost SWAP accuracy on the closed names (see the README)."""
    heatmaps: int = 4
    """Word-to-region heatmaps drawn for the first test_ood captions."""
    device: Device = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.world not in WORLD_DEFAULTS:
            raise UserError(
                f"quickstart: --world {self.world!r} unknown; choices: {', '.join(WORLD_DEFAULTS)}"
            )
        default_train, default_test, default_epochs = WORLD_DEFAULTS[self.world]
        self.n_train = default_train if self.n_train is None else self.n_train
        self.n_test = default_test if self.n_test is None else self.n_test
        self.epochs = default_epochs if self.epochs is None else self.epochs
        model_keys, optim_keys = WORLD_HEADS[self.world]
        self.model = replace(self.model, **{k: v for k, v in model_keys.items() if getattr(self.model, k) is None})
        self.optim = replace(self.optim, **{k: v for k, v in optim_keys.items() if getattr(self.optim, k) is None})
        if self.n_train < 8 or self.n_test < 2:
            raise UserError("quickstart: --n-train must be >= 8 and --n-test >= 2")
        if self.device not in DEVICES:
            raise UserError(f"quickstart: device={self.device!r} unknown; choices: {', '.join(DEVICES)}")

    @property
    def shapes(self) -> Path:
        return Path(self.out) / "shapes"

    def test_splits(self) -> str:
        """The test splits of the render: all three, but test_novel only where an earlier render
        of the test splits had it (older renders lack it)."""
        done = rendered_splits(self.shapes)
        return "test_id,test_ood" if "test_id" in done and "test_novel" not in done else CACHES["test"]

    def encoder_name(self) -> str:
        """``encoder``, with ``auto`` resolved for this CPU (:func:`default_towers`)."""
        return default_towers(self.device) if self.encoder == AUTO else self.encoder

    def caches(self) -> list[CacheConfig]:
        """One cache for train, one for the test splits (test_id + test_ood + test_novel)."""
        return [
            CacheConfig(
                encoder=self.encoder_name(),
                data=f"{self.source}:{self.shapes}",
                out=str(Path(self.out) / "caches" / f"{name}.h5"),
                options={"split": splits if name == "train" else self.test_splits()},
                batch_size=64,
                crops=self.world == "3d" and name == "test",
                device=None if self.device == "auto" else self.device,
            )
            for name, splits in CACHES.items()
        ]

    def heads(self) -> list[TrainConfig]:
        """The global head and TFLocal, trained the same way on the train cache."""
        return [
            TrainConfig(
                cache=str(Path(self.out) / "caches" / "train.h5"),
                head=head,
                out=str(Path(self.out) / "runs" / head),
                epochs=self.epochs,
                seed=self.seed,
                device=self.device,
                progress=self.progress,
                resume="auto",
                model=self.model,
                optim=self.optim,
                data=self.data,
            )
            for head in HEADS
        ]

    @property
    def source(self) -> str:
        """The cache source (and benchmark) of the world."""
        return "world3d" if self.world == "3d" else "shapesworld"

    def evaluation(self) -> EvalConfig:
        """Both heads (and the baselines the cache allows; in 3d also SGI scoring crops through the
        trained global head) on test_id, test_ood and test_novel."""
        ckpts = {str(Path(self.out) / "runs" / head / "best.pt"): label for head, label in HEADS.items()}
        scorers = list(ckpts)
        if self.world == "3d":
            sgi = f"sgi@{Path(self.out) / 'runs' / 'global' / 'best.pt'}"
            scorers.append(sgi)
            ckpts = {**ckpts, sgi: SGI_LABEL}
        return EvalConfig(
            bench=self.source,
            cache=str(Path(self.out) / "caches" / "test.h5"),
            data=f"{self.source}:{self.shapes}",
            options={"split": self.test_splits()},
            encoder=self.encoder_name() if self.world == "3d" else None,
            scorers=scorers,
            labels=ckpts,
            baselines=True,
            out=str(Path(self.out) / "report"),
            device="cpu" if self.device == "auto" else self.device,
            heatmaps=self.heatmaps,
            heatmap_split="test_ood",
            title=f"tflocal quickstart — {WORLD_TITLES[self.world]} with frozen EfficientNet-Lite0 + MiniLM",
        )


def _stage(timings: dict[str, float]):
    class _Timer:
        def __init__(self, name: str) -> None:
            self.name = name

        def __enter__(self) -> None:
            print(f"\n== {self.name}", flush=True)
            self.t0 = time.perf_counter()

        def __exit__(self, *exc: Any) -> None:
            timings[self.name] = round(time.perf_counter() - self.t0, 1)
            if exc[0] is None:
                print(f"   {self.name}: {timings[self.name]:.1f} s", flush=True)

    return _Timer


WORLD_TITLES = {"2d": "ShapesWorld", "3d": "the 3D world"}
EXPECTED_MINUTES = {PAIR + "@text-bf16": "3-6", PAIR + "@text-int8": "3-6", PAIR: "4-8"}
"""Wall time of the default quickstart on 2 cores, by the towers ``auto`` picks there. On a 2-core
AMD EPYC (Zen 4: avx512_bf16, no AMX), with the test splits built beside the training and the
packed training step (docs/experiments.md): 3.6 min with ``@text-bf16``; there with torch limited
to AVX2, 3.1 min with ``@text-int8`` (3.6 from a fresh clone with set-up; ONNX Runtime's int8
kernels use VNNI there, which an AVX2-only CPU lacks: expect it slower there) and 5.1 min with
fp32 text before the int8 tower and the packed step. A 2-core AVX2-only AMD EPYC, which took 12
min before the towers ran on ONNX Runtime, was not re-measured."""
EXPECTED_MINUTES_3D = {PAIR + "@text-bf16": "8-14"}
"""The same for ``--world 3d``: 8.4 min on a 2-core Intel Xeon (Sapphire Rapids) with the count
recipe of ``WORLD_HEADS`` (its TFLocal training 292 s of it; 7.3 min before it); 8.9 min on the
2-core AMD EPYC above with earlier heads (the test cache, 13 grid crops an image for SGI, built
beside the training, is its longest path there); not measured on a CPU without native bf16."""


def _towers_precision(encoder: str, native: bool) -> str:
    """What the towers ``encoder`` runs in on this CPU, in words for the plan line."""
    kinds = dict(zip(("image", "text"), tower_precisions(encoder)))
    words = "this CPU runs bf16 natively" if native else "no native bf16 here"
    parts = []
    for kind in ("bf16", "int8", "fp32"):
        towers = [t for t, k in kinds.items() if k == kind]
        if not towers:
            continue
        part = f"{' and '.join(towers)} tower{'s' if len(towers) > 1 else ''} {kind}"
        if kind == "bf16" and not native:
            part += " (slower than fp32 on this CPU)"
        elif kind == "int8":
            part += " on ONNX Runtime"
        elif kind == "fp32":
            part += " on ONNX Runtime or torch, whichever is faster here"
        parts.append(part)
    return f"{words}: {', '.join(parts)}"


def plan(cfg: QuickstartConfig, default_encoder: str | None = None) -> str:
    """One line said before any work: encoder and precision, device, threads, and (at the default
    encoder and sizes) the expected wall time on this kind of CPU. ``default_encoder``: what
    ``auto`` means here (:func:`default_towers` when not given)."""
    import torch

    native = native_bf16()
    auto = default_encoder
    if cfg.encoder == AUTO:
        auto = auto or default_towers(cfg.device)
        cfg = replace(cfg, encoder=auto)
    elif auto is None and cfg.encoder.startswith(PAIR):  # maybe what auto means here
        auto = default_towers(cfg.device)
    line = f"tflocal quickstart: encoder {cfg.encoder}"
    if cfg.encoder.startswith("towers:"):
        line += f" ({_towers_precision(cfg.encoder, native)})"
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    line += f", device {device}, {torch.get_num_threads()} threads"
    defaults = QuickstartConfig(
        out=cfg.out, device=cfg.device, progress=cfg.progress, world=cfg.world, encoder=auto
    )
    expected = (EXPECTED_MINUTES if cfg.world == "2d" else EXPECTED_MINUTES_3D).get(auto or "")
    if cfg == defaults and device == "cpu" and expected:
        line += f"; expected {expected} min on a 2-core CPU of this kind"
    return line


BESIDE_TIMING = "test render and cache, beside training"
"""The timings key of the second process's wall time (it overlaps the training: not in the total)."""
TRAIN_SPLITS = ("train",)
TEST_SPLITS = ("test_id", "test_ood", "test_novel")


def render_world(cfg: QuickstartConfig, splits: tuple[str, ...] | None = None) -> None:
    """Render the quickstart's world under ``cfg.shapes`` (kept when done: both resume);
    ``splits``: those ShapesWorld splits only (the 3D world renders all of them at once)."""
    if cfg.world == "3d":
        from tflocal.world3d import generate as generate_3d

        generate_3d(
            cfg.shapes,
            cfg.n_train,
            cfg.n_test,
            seed=cfg.seed,
            image_size=cfg.image_size,
            train_pairs=cfg.train_pairs,
            progress=cfg.progress,
        )
        print(f"   {cfg.shapes}: {cfg.n_train} train items, {cfg.n_test} minimal pairs in each test split")
        return
    want = splits or TRAIN_SPLITS + TEST_SPLITS
    todo = [s for s in want if s not in rendered_splits(cfg.shapes)]
    if todo:
        generate(
            cfg.shapes,
            cfg.n_train,
            cfg.n_test,
            cfg.n_test,
            seed=cfg.seed,
            image_size=cfg.image_size,
            progress=cfg.progress,
            counterfactual=cfg.counterfactual,
            n_test_novel=cfg.n_test,
            vary_names=cfg.vary_names,
            splits=todo,
            workers=workers_for_render(),
        )
    counts = {"train": cfg.n_train, **{s: cfg.n_test for s in TEST_SPLITS}}
    print(f"   {cfg.shapes}: " + ", ".join(f"{counts[s]} {s}" for s in want) + " images")


def render_tests(cfg: QuickstartConfig) -> None:
    """The test splits' render (the pipeline runs it before the test cache, beside training:
    then without progress bars)."""
    from tflocal.app.beside import in_child

    render_world(replace(cfg, progress=cfg.progress and not in_child()), TEST_SPLITS)


def workers_for_render() -> int:
    """Render processes: the threads torch may use here (1 in a process that works beside another)."""
    import torch

    return max(1, min(2, torch.get_num_threads()))


def run_quickstart(cfg: QuickstartConfig) -> list[Any]:
    """Render ShapesWorld, then the pipeline (see the module docstring); returns the rows."""
    auto = default_towers(cfg.device) if cfg.encoder == AUTO else None
    if auto is not None:
        cfg = replace(cfg, encoder=auto)
    print(plan(cfg, auto), flush=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    stage = _stage(timings)
    two_d = cfg.world == "2d"
    with stage(f"render {WORLD_TITLES[cfg.world]}" + (" (train)" if two_d else "")):
        render_world(cfg, TRAIN_SPLITS if two_d else None)
    evaluation = cfg.evaluation()
    result = run_pipeline(
        evaluation,
        cfg.caches(),
        cfg.heads(),
        progress=cfg.progress,
        stage=stage,
        prepare=functools.partial(render_tests, cfg) if two_d else None,
    )
    report = Path(evaluation.out)
    timings["total"] = round(time.perf_counter() - t0, 1)
    if result.beside_seconds is not None:  # overlaps the training: not part of the total
        timings[BESIDE_TIMING] = round(result.beside_seconds, 1)
    (report / "quickstart.json").write_text(
        json.dumps(
            {"config": asdict(cfg), "timings": timings, "files": [str(p) for p in result.files]}, indent=1
        )
    )
    print("\n" + markdown_table(_headline(result.rows)))
    print(f"\nreport: {report}/results.md (all rows), {report}/results.json, plots and heatmaps in {report}/")
    stages = ", ".join(f"{k}: {v:.0f}s" for k, v in timings.items() if k not in ("total", BESIDE_TIMING))
    print(
        f"total {timings['total']:.0f} s  ({stages})"
        + (f"; {BESIDE_TIMING}: {timings[BESIDE_TIMING]:.0f}s (a second process, during the training)"
           if BESIDE_TIMING in timings else "")
    )
    heads = {HEADS[t.head]: ckpt for t, ckpt in zip(cfg.heads(), result.checkpoints)}
    print("\ntry your own queries on test_ood, both heads side by side (then open http://127.0.0.1:8000/):")
    print("  " + serve_command(evaluation.cache, heads, split="test_ood"))
    return result.rows


def _headline(rows: list[Any]) -> list[Any]:
    """The rows worth a first look: each split overall, by operator, and by depth; with minimal
    pairs (the 3D world), their group score per category instead of depths and kinds."""
    if any(r.metric == "group" for r in rows):
        return [
            r
            for r in rows
            if r.metric == "group" or (r.metric == "accuracy" and r.subset.split("/")[-1] in ("all", "swap"))
        ]
    keep = []
    for r in rows:
        parts = r.subset.split("/")
        if len(parts) == 2 and (
            parts[1] in ("all", "swap", "replace", "add") or parts[1].startswith("depth")
        ):
            keep.append(r)
        elif len(parts) == 3 and parts[1] == "swap":
            keep.append(r)
    return keep or rows
