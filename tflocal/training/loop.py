"""Train an alignment head on a cache (accelerate: CPU, one GPU, or ``accelerate launch`` on several).

``train(cfg)`` reads top to bottom: data (units, split, loaders) -> head, AdamW, warm-up + cosine
schedule -> optional resume from ``out/last.pt`` -> epochs of candidate-set cross-entropy with
gradient clipping -> validation (pair accuracy against hard negatives) each epoch, keeping the
best. ``out`` (locked for the run, see :mod:`tflocal.training.run_folder`) gets config.yaml, log.jsonl, last.pt, best.pt."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate.utils import set_seed

from cache_tools.infra.progress import progress
from tflocal.config import to_dict
from tflocal.errors import UserError
from tflocal.models import build_head, count_parameters
from tflocal.models.base import Head
from tflocal.models.checkpoint import save_checkpoint
from tflocal.pairs.candidates import (
    BatchDataset,
    CandidateBatch,
    Units,
    make_loader,
)
from tflocal.training.config import DataConfig, OptimConfig, TrainConfig  # noqa: F401 - configs live there
from tflocal.training.loss import candidate_loss, set_cross_entropy
from tflocal.training.optim import make_optimizer
from tflocal.training.run_folder import (
    Log,
    NonFiniteLossError,
    accelerator,
    check_finite,
    close_out,
    load_data,
    note_no_validation,
    open_out,
    resume,
    stop_advice,
    will_resume,
)
from tflocal.training.shard_reads import gather_counts, merged_info, merged_ops
from tflocal.training.shuffle import shuffle_chunk_for
from tflocal.training.validation import validate

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
    raw: Head  # the head itself (``model`` may be the accelerator's wrapper of it)
    dataset: BatchDataset
    opt: torch.optim.Optimizer
    sched: Any
    log: Log
    per_epoch: int
    total: int
    resumed: bool
    n_params: int
    step: int = 0
    best: float = -1.0
    best_step: int | None = None
    last_val: dict[str, float] | None = None
    has_val: bool = False  # whether any process has validation units (all validate together)
    val_ops: Any = None  # own shards: the whole cache's operator names (validate's shard_ops)
    cache_info: dict[str, Any] | None = None  # own shards: the merged cache's CACHE_INFO

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"

    def save(self, path: Path, epoch: int) -> None:
        """Checkpoint (main process only): weights, optimizer, schedule and progress. Non-finite
        weights are never saved (NonFiniteLossError instead)."""
        if not self.acc.is_main_process:
            return
        check_finite(self, f"before saving {path.name}")
        extra = {
            "epoch": epoch,
            "best": self.best,
            "best_step": self.best_step,
            "val": self.last_val,
            "total_steps": self.total,
            "cache": (self.cache_info or {k: self.cache.attrs.get(k) for k in CACHE_INFO})
            | {"path": str(self.cfg.cache)},
        }
        save_checkpoint(
            path,
            self.raw,
            self.cfg.head,
            self.raw.cfg,
            self.cfg,
            self.cache.signature,
            self.step,
            self.opt,
            self.sched,
            extra,
        )


def setup(cfg: TrainConfig) -> Run:
    """Data (units, split, batches) -> head -> AdamW + schedule -> resume -> log, on the accelerator.

    Several processes on a cache written as shards: each reads its own shards
    (:mod:`tflocal.training.shard_reads`), all with the same number of batches an epoch."""
    acc = accelerator(cfg)
    set_seed(cfg.seed)
    cache, val_cache, train_units, val_units, shards = load_data(cfg, acc.num_processes, acc.process_index)
    own = shards is not None  # this process's units are its own: no striding over processes
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)  # train() made and locked it already; setup() alone works too
    model = build_head(cfg.head, cfg.model, cache.spec)
    cfg = dataclasses.replace(cfg, model=model.cfg)  # resolved (max_text_tokens from the cache)
    dataset = BatchDataset(
        cache,
        train_units,
        batch_size=cfg.data.batch_size,
        n_neg=cfg.data.n_neg,
        k_inbatch=cfg.data.k_inbatch,
        needs=model.needs,
        seed=cfg.seed,
        t2i=cfg.data.t2i,
        shuffle_chunk=shuffle_chunk_for(
            cfg.data.shuffle, cfg.data.shuffle_chunk, cache, len(train_units), cfg.data.in_memory
        ),
        world=1 if own else acc.num_processes,
        rank=0 if own else acc.process_index,
        max_text_tokens=cfg.model.max_text_tokens,
    )
    has_val = val_units is not None and len(val_units) > 0
    if own:
        dataset.max_batches = int(gather_counts(acc, dataset.batches_per_epoch()).min())
        dataset.set_epoch(0)
        has_val = val_units is not None and int(gather_counts(acc, len(val_units)).sum()) > 0
    per_epoch = dataset.batches_per_epoch()
    if per_epoch == 0:
        raise UserError(
            f"{len(train_units)} training captions give no full batch on {acc.num_processes} process(es): lower data.batch_size"
        )
    total = cfg.max_steps or cfg.epochs * per_epoch
    opt, sched = make_optimizer(model, cfg.optim, total)
    resumed = will_resume(cfg)
    run = Run(
        cfg,
        acc,
        out,
        cache,
        val_cache,
        train_units,
        val_units,
        model,
        model,
        dataset,
        opt,
        sched,
        Log(out / "log.jsonl", append=not cfg.overwrite, enabled=acc.is_main_process),
        per_epoch,
        total,
        resumed,
        count_parameters(model),
        has_val=has_val,
    )
    if own:
        run.cache_info = merged_info(cfg.cache, CACHE_INFO)
        run.val_ops = None if cfg.val_cache else merged_ops(cfg.cache)
    if resumed:
        resume(run)
    if not has_val:
        note_no_validation(run)
    if acc.is_main_process:
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    run.log(
        event="start",
        step=run.step,
        total_steps=total,
        batches_per_epoch=per_epoch,
        params=run.n_params,
        head=cfg.head,
        train_units=len(train_units),
        val_units=len(val_units) if val_units is not None else 0,
        resumed=resumed,
        **({"shard_files": [str(p) for p in shards]} if own else {}),
    )
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
            batch.pairs(run.raw.needs, dedup_images=bool(run.raw.accepts_pair_image))
        )
    loss, stats = candidate_loss(scores, batch, cfg.temperature, cfg.data.t2i_weight)
    for aux in run.raw.auxiliary_scores().values():  # e.g. a read-out's global path
        loss = loss + set_cross_entropy(aux, batch, cfg.temperature, cfg.data.t2i_weight)[0]
    for extra in run.raw.auxiliary_losses(batch.cols == 0).values():  # e.g. a count regression
        loss = loss + extra
    finite = torch.isfinite(loss.detach())
    if acc.num_processes > 1:  # every process stops together
        finite = acc.reduce((~finite).float(), reduction="max") == 0
    if not bool(finite):
        run.log(event="nonfinite", step=run.step, loss=float(loss.detach()))
        raise NonFiniteLossError(
            f"loss became {float(loss.detach())} at step {run.step} (epoch {epoch}): stopped without saving; "
            + stop_advice(run)
        )
    acc.backward(loss)
    if cfg.optim.grad_clip > 0 and acc.sync_gradients:
        norm = acc.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        if cfg.mixed_precision != "fp16" and not torch.isfinite(torch.as_tensor(norm)):
            raise NonFiniteLossError(
                f"gradient norm became {float(norm)} at step {run.step}: stopped without saving; "
                + stop_advice(run)
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
    bar = progress(
        total=run.total,
        initial=run.step,
        disable=not (acc.is_main_process and cfg.progress),
        desc=f"train {cfg.head}",
        unit="step",
    )
    window = {"loss": 0.0, "acc": 0.0, "n": 0, "pairs": 0, "t": time.perf_counter()}
    pairs_total, t_start = 0, time.perf_counter()
    run.model.train()
    loader = make_loader(
        run.dataset, cfg.data.num_workers, pin_memory=acc.device.type == "cuda", persistent=True
    )
    while run.step < stop:
        epoch, skip = divmod(run.step, run.per_epoch)
        run.dataset.set_epoch(epoch, start=skip)
        for batch in loader:
            loss, top1 = train_step(run, batch, epoch)
            window["loss"] += loss
            window["acc"] += top1
            window["n"] += 1
            window["pairs"] += batch.n_pairs * acc.num_processes
            pairs_total += batch.n_pairs * acc.num_processes
            if run.step % cfg.log_every == 0 or run.step == stop:
                dt = max(time.perf_counter() - window["t"], 1e-9)
                rec = {
                    "loss": window["loss"] / window["n"],
                    "acc": window["acc"] / window["n"],
                    "pairs_per_s": window["pairs"] / dt,
                    **run.raw.mix_weights(),
                }
                run.log(event="train", step=run.step, epoch=epoch, lr=run.sched.get_last_lr()[0], **rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", pairs_s=f"{rec['pairs_per_s']:.0f}")
                window.update(loss=0.0, acc=0.0, n=0, pairs=0, t=time.perf_counter())
            bar.update(1)
            if cfg.save_every and run.step % cfg.save_every == 0:
                run.save(run.last_path, epoch)
            if run.step >= stop:
                break
        end_of_epoch = run.step % run.per_epoch == 0 and (run.step // run.per_epoch) % cfg.val_every == 0
        if (end_of_epoch or run.step >= run.total) and run.has_val:
            run.last_val = validate(run.model, run.val_cache, run.val_units, cfg, acc, run.val_ops)
            run.log(event="val", step=run.step, epoch=epoch, **run.last_val)
            if run.last_val.get("val_nonfinite", 0):
                raise NonFiniteLossError(
                    f"{run.last_val['val_nonfinite']} validation scores were non-finite after step {run.step}: "
                    f"the weights broke; stopped without saving; {stop_advice(run)}"
                )
            if run.last_val["val_metric"] > run.best:
                run.best, run.best_step = run.last_val["val_metric"], run.step
                run.save(run.best_path, epoch)
        run.save(run.last_path, epoch)
        acc.wait_for_everyone()
    bar.close()
    del loader  # its workers end here
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
        "out": str(run.out),
        "params": run.n_params,
        "pairs_per_s": pairs_total / elapsed if elapsed > 0 else None,
    }


@contextlib.contextmanager
def deterministic_kernels(cfg: TrainConfig) -> Iterator[None]:
    """``cfg.deterministic`` on a CPU run: ``torch.use_deterministic_algorithms(True, warn_only=True)``
    inside (an op without a deterministic kernel warns rather than stops), the caller's setting after."""
    cpu = cfg.on_cpu()
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if cfg.deterministic and cpu:
        _set_deterministic(True, warn_only=True)
    try:
        yield
    finally:
        _set_deterministic(before[0], warn_only=before[1])


def _set_deterministic(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms``, without the import of ``torch._inductor.config`` it
    makes to pass the mode on to compiled code (4 s a process here; nothing here is compiled)
    unless inductor is loaded already."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train ``cfg.head`` on ``cfg.cache``: :func:`setup`, then :func:`fit`. Returns a summary:
    steps, best_val_acc, best_step, checkpoint (best.pt, or last.pt without validation), last,
    out, params, pairs_per_s."""
    out, lock, created = open_out(cfg, will_resume(cfg))  # locked before anything in it is touched
    failed = True
    try:
        with deterministic_kernels(cfg):
            run = setup(cfg)
            summary = fit(run)
        run.log(event="end", **{k: v for k, v in summary.items() if k != "val"})
        failed = False
        return summary
    finally:
        close_out(out, lock, created, failed)
