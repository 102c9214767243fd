"""Train an alignment head on a cache (accelerate: CPU, one GPU, or ``accelerate launch`` on several).

``train(cfg)`` reads top to bottom: data (units, split, loaders) -> head, AdamW, warm-up + cosine
schedule -> optional resume from ``out_dir/last.pt`` -> epochs of candidate-set cross-entropy with
gradient clipping -> validation (pair accuracy against hard negatives) each epoch, keeping the
best. ``out_dir`` gets ``config.yaml``, ``log.jsonl``, ``last.pt`` and ``best.pt``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from cache_tools.reader import open_cache
from tflocal.checkpoint import check_signature, load_checkpoint, save_checkpoint
from tflocal.config import to_dict
from tflocal.data import (
    BatchDataset,
    CandidateBatch,
    Units,
    build_units,
    make_loader,
    split_by_image,
)
from tflocal.errors import UserError
from tflocal.models import TRAINABLE, build_head, count_parameters
from tflocal.models.config import ModelConfig
from tflocal.optim import make_optimizer
from tflocal.validate import validate

MIXED_PRECISION = ("no", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
CACHE_INFO = (
    "source",
    "created",
    "n_images",
    "n_texts",
    "context_length",
    "image_size",
    "preprocess",
    "package_version",
)
"""Cache attributes recorded in checkpoints besides the encoder signature (provenance only)."""


@dataclass
class OptimConfig:
    lr: float = 3e-4
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.05
    """AdamW weight decay (not applied to biases, norms, embeddings and position tables)."""
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 200
    """Linear warm-up from 0 to lr over this many steps, then cosine decay to min_lr_ratio*lr."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of lr."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = no clipping)."""

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise UserError("optim: lr must be > 0; weight_decay, warmup_steps and grad_clip >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"optim.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")


@dataclass
class DataConfig:
    batch_size: int = 32
    """Units (positive captions with their image) per step and process."""
    n_neg: int = 4
    """Hard negatives per candidate set (sampled each step when a caption has more)."""
    k_inbatch: int = 3
    """In-batch negatives per set: captions of other images most similar by global embedding
    (image-text cosine; caption-caption cosine for towers with global_space 'none')."""
    t2i: bool = True
    """Also a text->image set per caption whose image has negative images (same group)."""
    t2i_weight: float = 1.0
    """Weight of the text->image loss."""
    val_fraction: float = 0.05
    """Fraction of images held out for validation when val_cache is not given (0 = none)."""
    val_batch_size: int = 64
    num_workers: int = 2
    """DataLoader worker processes (each opens the cache itself); 0 reads in the main process."""
    in_memory: bool = False
    """Load the whole cache payload into RAM first (fast random access when it fits)."""
    shuffle_chunk: int = 0
    """0: full shuffle each epoch; > 0: chunk-level shuffle in blocks of this many units
    (contiguous HDF5 reads for caches larger than RAM)."""
    max_negs: int = 64
    """Most hard negatives kept per caption (validation uses all of these)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.val_batch_size < 1:
            raise UserError("data.batch_size and data.val_batch_size must be >= 1")
        if self.n_neg < 0 or self.k_inbatch < 0 or self.num_workers < 0 or self.shuffle_chunk < 0:
            raise UserError("data.n_neg, k_inbatch, num_workers and shuffle_chunk must be >= 0")
        if self.n_neg == 0 and self.k_inbatch == 0:
            raise UserError(
                "data.n_neg and data.k_inbatch are both 0: a candidate set needs at least one negative"
            )
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")


@dataclass
class TrainConfig:
    cache: str = ""
    """Training cache (HDF5 file written by `tflocal cache`)."""
    val_cache: str | None = None
    """Validation cache of the same encoder; None = hold out data.val_fraction of the images."""
    head: str = "tflocal"
    """'tflocal' (cross-encoder over patches and tokens) or 'global' (global embeddings only)."""
    out_dir: str = "runs/train"
    """Where config.yaml, log.jsonl, last.pt and best.pt go."""
    epochs: int = 10
    max_steps: int | None = None
    """Total optimizer steps; None = epochs x batches per epoch. Sets the schedule length."""
    stop_at_step: int | None = None
    """Stop (as if interrupted, saving last.pt) when this step is reached; the schedule stays that
    of the full run, and `resume` continues it. For time-boxed jobs."""
    temperature: float = 1.0
    """Scores are divided by it before the cross-entropy over each candidate set."""
    mixed_precision: str = "no"
    """'no', 'bf16' or 'fp16' (accelerate autocast; fp16 uses a gradient scaler)."""
    seed: int = 0
    val_every: int = 1
    """Validate every this many epochs (and always at the end)."""
    log_every: int = 20
    """Steps between log.jsonl records and progress-bar updates."""
    save_every: int | None = None
    """Also save last.pt every this many steps (always at each epoch end)."""
    resume: bool | str = "auto"
    """'auto': continue from out_dir/last.pt when it exists; true: it must exist; false: start over."""
    device: str = "auto"
    """'auto', 'cpu' or 'cuda'."""
    progress: bool = True
    """Show a progress bar (pairs/s and loss)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if not self.cache:
            raise UserError("config key 'cache' is required: the HDF5 cache to train on")
        if self.head not in TRAINABLE:
            raise UserError(f"head={self.head!r} cannot be trained; choices: {', '.join(TRAINABLE)}")
        if self.mixed_precision in ("False", "false", "fp32"):  # YAML reads a bare `no` as false
            self.mixed_precision = "no"
        if self.mixed_precision not in MIXED_PRECISION:
            raise UserError(
                f"mixed_precision={self.mixed_precision!r} unknown; choices: {', '.join(MIXED_PRECISION)}"
            )
        if self.device not in DEVICES:
            raise UserError(f"device={self.device!r} unknown; choices: {', '.join(DEVICES)}")
        if self.resume not in (True, False, "auto"):
            raise UserError(f"resume={self.resume!r}: use true, false or auto")
        if self.epochs < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise UserError("epochs and max_steps must be >= 1")
        if self.temperature <= 0 or self.log_every < 1 or self.val_every < 1:
            raise UserError("temperature must be > 0, log_every and val_every >= 1")


class NonFiniteLossError(UserError):
    """The loss (or gradient norm) became NaN/inf: the run stopped without saving."""


def candidate_loss(
    scores: torch.Tensor, batch: CandidateBatch, temperature: float, t2i_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over each candidate set (target: column 0). scores [N] -> (scalar loss, stats)."""
    loss, logits = _set_cross_entropy(scores, batch, temperature, t2i_weight)
    acc = (logits[: batch.n_i2t].argmax(dim=1) == 0).float().mean()
    return loss, {"acc": float(acc)}


def _set_cross_entropy(
    scores: torch.Tensor, batch: CandidateBatch, temperature: float, t2i_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """scores [N] -> (mean cross-entropy of the image->text sets + t2i_weight x that of the
    text->image sets, logits [S, C])."""
    logits = batch.score_matrix(scores.float()) / temperature  # [S, C]
    ce = F.cross_entropy(
        logits, torch.zeros(batch.n_sets, dtype=torch.long, device=logits.device), reduction="none"
    )
    loss = ce[: batch.n_i2t].mean()
    if batch.n_sets > batch.n_i2t:
        loss = loss + t2i_weight * ce[batch.n_i2t :].mean()
    return loss, logits


def _accelerator(cfg: TrainConfig) -> Any:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is visible: use device=auto or device=cpu")
    # accelerate keeps process-wide singletons: clear the settings of an earlier train() call in this
    # process (mixed precision, device), keeping the process group of an `accelerate launch` run
    single = not PartialState._shared_state or PartialState().num_processes == 1
    AcceleratorState._reset_state(reset_partial_state=single)
    GradientState._reset_state()
    try:
        return Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.device == "cpu")
    except ValueError as err:
        raise UserError(
            f"mixed_precision={cfg.mixed_precision!r} is not available here ({err}): use 'no' or 'bf16'"
        ) from err


def _open(path: str, in_memory: bool) -> Any:
    cache = open_cache(path)
    return cache.load_into_memory() if in_memory else cache


class _Log:
    """JSONL log (main process only)."""

    def __init__(self, path: Path, append: bool, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled and not append:
            path.write_text("")

    def __call__(self, **record: Any) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def _data(cfg: TrainConfig) -> tuple[Any, Any, Units, Units | None]:
    """(train cache, validation cache, training units, validation units or None)."""
    cache = _open(cfg.cache, cfg.data.in_memory)
    units = build_units(cache, max_negs=cfg.data.max_negs)
    if cfg.val_cache:
        val_cache = _open(cfg.val_cache, cfg.data.in_memory)
        check_signature(cache.signature, val_cache, f"training cache {cfg.cache}")
        return cache, val_cache, units, build_units(val_cache, max_negs=cfg.data.max_negs)
    if cfg.data.val_fraction > 0:
        return cache, cache, *split_by_image(units, cfg.data.val_fraction, cfg.seed)
    return cache, cache, units, None


@dataclass
class Run:
    """Everything a training run holds between setup and the end of fit."""

    cfg: TrainConfig
    acc: Any
    out: Path
    cache: Any
    val_cache: Any
    train_units: Units
    val_units: Units | None
    model: torch.nn.Module
    raw: torch.nn.Module
    dataset: BatchDataset
    opt: torch.optim.Optimizer
    sched: Any
    log: _Log
    per_epoch: int
    total: int
    resumed: bool
    n_params: int
    step: int = 0
    best: float = -1.0
    best_step: int | None = None
    last_val: dict[str, float] | None = None

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"

    def save(self, path: Path, epoch: int) -> None:
        """Checkpoint (main process only): weights, optimizer, schedule and progress."""
        if not self.acc.is_main_process:
            return
        extra = {
            "epoch": epoch,
            "best": self.best,
            "best_step": self.best_step,
            "val": self.last_val,
            "total_steps": self.total,
            "cache": {k: self.cache.attrs.get(k) for k in CACHE_INFO} | {"path": str(self.cfg.cache)},
        }
        save_checkpoint(path, self.raw, self.cfg.head, self.raw.cfg, self.cfg, self.cache.signature, self.step,
                        self.opt, self.sched, extra)  # fmt: skip


def _resume(run: Run) -> None:
    """Load ``last.pt`` into the run (same head, same model config, same embedding space)."""
    cfg, last_path = run.cfg, run.last_path
    if not last_path.is_file():
        raise UserError(f"resume=true but {last_path} does not exist: use resume=auto or resume=false")
    ckpt = load_checkpoint(last_path)
    check_signature(ckpt["cache_signature"], run.cache, f"checkpoint {last_path}")
    if ckpt["head"] != cfg.head or ckpt["model_cfg"] != to_dict(cfg.model):
        raise UserError(
            f"{last_path} holds head {ckpt['head']!r} {ckpt['model_cfg']}, not {cfg.head!r} {to_dict(cfg.model)}: "
            "set resume=false or use another out_dir"
        )
    run.model.load_state_dict(ckpt["state_dict"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    run.step = int(ckpt["step"])
    run.best, run.best_step = ckpt["extra"].get("best", -1.0), ckpt["extra"].get("best_step")


def setup(cfg: TrainConfig) -> Run:
    """Data (units, split, batches) -> head -> AdamW + schedule -> resume -> log, on the accelerator."""
    acc = _accelerator(cfg)
    set_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache, val_cache, train_units, val_units = _data(cfg)
    model = build_head(cfg.head, cfg.model, cache.spec)
    cfg = dataclasses.replace(cfg, model=model.cfg)  # resolved (max_text_tokens from the cache)
    dataset = BatchDataset(cache, train_units, batch_size=cfg.data.batch_size, n_neg=cfg.data.n_neg,
                           k_inbatch=cfg.data.k_inbatch, needs=model.needs, seed=cfg.seed, t2i=cfg.data.t2i,
                           shuffle_chunk=cfg.data.shuffle_chunk, world=acc.num_processes, rank=acc.process_index,
                           max_text_tokens=cfg.model.max_text_tokens)  # fmt: skip
    per_epoch = dataset.batches_per_epoch()
    if per_epoch == 0:
        raise UserError(
            f"{len(train_units)} training captions give no full batch on {acc.num_processes} process(es): lower data.batch_size"
        )
    total = cfg.max_steps or cfg.epochs * per_epoch
    opt, sched = make_optimizer(model, cfg.optim, total)
    resumed = cfg.resume is True or (cfg.resume == "auto" and (out / "last.pt").is_file())
    run = Run(cfg, acc, out, cache, val_cache, train_units, val_units, model, model, dataset, opt, sched,
              _Log(out / "log.jsonl", append=resumed, enabled=acc.is_main_process), per_epoch, total, resumed,
              count_parameters(model))  # fmt: skip
    if resumed:
        _resume(run)
    if acc.is_main_process:
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    run.log(event="start", step=run.step, total_steps=total, batches_per_epoch=per_epoch, params=run.n_params,
            head=cfg.head, train_units=len(train_units), val_units=len(val_units) if val_units is not None else 0,
            resumed=resumed)  # fmt: skip
    run.model, run.opt = acc.prepare(model, opt)
    run.raw = acc.unwrap_model(run.model)
    return run


def train_step(run: Run, batch: CandidateBatch, epoch: int) -> tuple[float, float]:
    """One optimizer step on one batch -> (loss, in-set top-1 accuracy). Stops on a non-finite loss."""
    cfg, acc, model = run.cfg, run.acc, run.model
    torch.manual_seed(cfg.seed + run.step * acc.num_processes + acc.process_index)  # dropout, resumable
    batch = batch.to(acc.device)
    with acc.autocast():
        scores = model(
            batch.pairs(run.raw.needs, dedup_images=bool(getattr(run.raw, "accepts_pair_image", False)))
        )
    loss, stats = candidate_loss(scores, batch, cfg.temperature, cfg.data.t2i_weight)
    for aux in getattr(run.raw, "auxiliary_scores", dict)().values():  # e.g. a read-out's global path
        loss = loss + _set_cross_entropy(aux, batch, cfg.temperature, cfg.data.t2i_weight)[0]
    finite = torch.isfinite(loss.detach())
    if acc.num_processes > 1:  # every process stops together
        finite = acc.reduce((~finite).float(), reduction="max") == 0
    if not bool(finite):
        run.log(event="nonfinite", step=run.step, loss=float(loss.detach()))
        raise NonFiniteLossError(
            f"loss became {float(loss.detach())} at step {run.step} (epoch {epoch}): stopped without saving; "
            f"{run.last_path} still holds the last good state. Lower optim.lr, set mixed_precision=no "
            "or a smaller optim.grad_clip, then resume"
        )
    acc.backward(loss)
    if cfg.optim.grad_clip > 0 and acc.sync_gradients:
        norm = acc.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        if cfg.mixed_precision != "fp16" and not torch.isfinite(torch.as_tensor(norm)):
            raise NonFiniteLossError(
                f"gradient norm became {float(norm)} at step {run.step}: stopped without saving"
            )
    run.opt.step()
    run.sched.step()
    run.opt.zero_grad(set_to_none=True)
    run.step += 1
    return float(loss.detach()), stats["acc"]


def fit(run: Run) -> dict[str, Any]:
    """Epochs of :func:`train_step` until the schedule ends (or ``stop_at_step``), validating and
    checkpointing at each epoch end. Returns the summary."""
    cfg, acc = run.cfg, run.acc
    stop = min(run.total, cfg.stop_at_step or run.total)
    bar = tqdm(total=run.total, initial=run.step, disable=not (acc.is_main_process and cfg.progress),
               desc=f"train {cfg.head}", unit="step")  # fmt: skip
    window = {"loss": 0.0, "acc": 0.0, "n": 0, "pairs": 0, "t": time.perf_counter()}
    pairs_total, t_start = 0, time.perf_counter()
    run.model.train()
    while run.step < stop:
        epoch, skip = divmod(run.step, run.per_epoch)
        run.dataset.set_epoch(epoch, start=skip)
        for batch in make_loader(run.dataset, cfg.data.num_workers, pin_memory=acc.device.type == "cuda"):
            loss, top1 = train_step(run, batch, epoch)
            window["loss"] += loss
            window["acc"] += top1
            window["n"] += 1
            window["pairs"] += batch.n_pairs * acc.num_processes
            pairs_total += batch.n_pairs * acc.num_processes
            if run.step % cfg.log_every == 0 or run.step == stop:
                dt = max(time.perf_counter() - window["t"], 1e-9)
                rec = {"loss": window["loss"] / window["n"], "acc": window["acc"] / window["n"],
                       "pairs_per_s": window["pairs"] / dt, **getattr(run.raw, "mix_weights", dict)()}  # fmt: skip
                run.log(event="train", step=run.step, epoch=epoch, lr=run.sched.get_last_lr()[0], **rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", pairs_s=f"{rec['pairs_per_s']:.0f}")
                window.update(loss=0.0, acc=0.0, n=0, pairs=0, t=time.perf_counter())
            bar.update(1)
            if cfg.save_every and run.step % cfg.save_every == 0:
                run.save(run.last_path, epoch)
            if run.step >= stop:
                break
        end_of_epoch = run.step % run.per_epoch == 0 and (run.step // run.per_epoch) % cfg.val_every == 0
        if (end_of_epoch or run.step >= run.total) and run.val_units is not None and len(run.val_units):
            run.last_val = validate(run.model, run.val_cache, run.val_units, cfg, acc)
            run.log(event="val", step=run.step, epoch=epoch, **run.last_val)
            if run.last_val["val_metric"] > run.best:
                run.best, run.best_step = run.last_val["val_metric"], run.step
                run.save(run.best_path, epoch)
        run.save(run.last_path, epoch)
        acc.wait_for_everyone()
    bar.close()
    elapsed = time.perf_counter() - t_start
    return {
        "steps": run.step,
        "total_steps": run.total,
        "finished": run.step >= run.total,
        "best_val_acc": run.best if run.best_step is not None else None,
        "best_step": run.best_step,
        "val": run.last_val,
        "checkpoint": str(run.best_path if run.best_step is not None else run.last_path),
        "last": str(run.last_path),
        "out_dir": str(run.out),
        "params": run.n_params,
        "pairs_per_s": pairs_total / elapsed if elapsed > 0 else None,
    }


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train ``cfg.head`` on ``cfg.cache``: :func:`setup`, then :func:`fit`. Returns a summary:
    steps, best_val_acc, best_step, checkpoint (best.pt, or last.pt without validation), last,
    out_dir, params, pairs_per_s."""
    run = setup(cfg)
    summary = fit(run)
    run.log(event="end", **{k: v for k, v in summary.items() if k != "val"})
    return summary
