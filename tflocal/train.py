"""Train an alignment head on a cache (accelerate: CPU, one GPU, or ``accelerate launch`` on several).

``train(cfg)`` reads top to bottom: data (units, split, loaders) -> head, AdamW, warm-up + cosine
schedule -> optional resume from ``out_dir/last.pt`` -> epochs of candidate-set cross-entropy with
gradient clipping -> validation (pair accuracy against hard negatives) each epoch, keeping the
best. ``out_dir`` gets ``config.yaml``, ``log.jsonl``, ``last.pt`` and ``best.pt``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tflocal.data import (
    BatchDataset,
    CandidateBatch,
    Units,
    build_units,
    make_batch,
    make_loader,
    split_by_image,
)
from tflocal.errors import UserError
from tflocal.train_config import DataConfig, OptimConfig, TrainConfig  # noqa: F401 - configs live there

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


class NonFiniteLossError(UserError):
    """The loss (or gradient norm) became NaN/inf: the run stopped without saving."""


class WarmupCosine:
    """lr multiplier at step s: s/warmup during warm-up, then cosine from 1 to min_ratio at ``total``."""

    def __init__(self, warmup: int, total: int, min_ratio: float = 0.0):
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def candidate_loss(
    scores: torch.Tensor, batch: CandidateBatch, temperature: float, t2i_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over each candidate set (target: column 0). scores [N] -> (scalar loss, stats)."""
    logits = batch.score_matrix(scores.float()) / temperature  # [S, C]
    ce = F.cross_entropy(
        logits, torch.zeros(batch.n_sets, dtype=torch.long, device=logits.device), reduction="none"
    )
    loss = ce[: batch.n_i2t].mean()
    if batch.n_sets > batch.n_i2t:
        loss = loss + t2i_weight * ce[batch.n_i2t :].mean()
    acc = (logits[: batch.n_i2t].argmax(dim=1) == 0).float().mean()
    return loss, {"acc": float(acc)}


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices, none on biases, norms, embeddings and position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (
            decay
            if p.ndim >= 2 and "table" not in name and "modality" not in name and "summary" not in name
            else no_decay
        ).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def validate(
    model: torch.nn.Module, cache: Any, units: Units, cfg: TrainConfig, accelerator: Any
) -> dict[str, float]:
    """Pair accuracy against hard negatives: score(positive) > score(negative), over every
    (caption, hard negative) pair; group accuracy: all of a caption's negatives beaten; top-1
    within the candidate set with k in-batch negatives (the metric when there are no hard negatives)."""
    was_training = model.training
    model.eval()
    raw = model if hasattr(model, "needs") else accelerator.unwrap_model(model)
    needs = raw.needs
    dedup = bool(getattr(raw, "accepts_pair_image", False))
    n_neg = units.negs.shape[1]
    sums = torch.zeros(6, dtype=torch.float64)  # pair ok, pairs, group ok, groups, top1 ok, sets
    op_names, text_op = np.unique(np.asarray(getattr(cache, "op", []), dtype=str), return_inverse=True)
    text_op = np.where(op_names[text_op] == "", -1, text_op).astype(np.int64)  # "" = a positive
    by_op = torch.zeros(2, len(op_names), dtype=torch.float64)  # pair ok, pairs per operator
    bs = cfg.data.val_batch_size
    for b in range(accelerator.process_index, -(-len(units) // bs), accelerator.num_processes):
        sub = units.subset(np.arange(b * bs, min((b + 1) * bs, len(units))))
        batch = make_batch(cache, sub, n_neg=n_neg, k_inbatch=cfg.data.k_inbatch, needs=needs, t2i=False,
                           max_text_tokens=cfg.model.max_text_tokens).to(accelerator.device)  # fmt: skip
        with accelerator.autocast():
            scores = model(batch.pairs(needs, dedup_images=dedup))
        m = batch.score_matrix(scores.float()).cpu()
        hard = m[:, 1 : 1 + n_neg]
        real = torch.isfinite(hard)
        beat = (m[:, :1] > hard) & real
        has = real.any(dim=1)
        if len(op_names):
            ops = torch.from_numpy(np.where(sub.negs >= 0, text_op[np.maximum(sub.negs, 0)], -1))
            known = real & (ops >= 0)
            by_op[0].index_add_(0, ops[known], beat[known].double())
            by_op[1].index_add_(0, ops[known], torch.ones(int(known.sum()), dtype=torch.float64))
        sums += torch.tensor([beat.sum(), real.sum(), (beat.sum(1) == real.sum(1))[has].sum(), has.sum(),
                              (m.argmax(dim=1) == 0).sum(), m.shape[0]], dtype=torch.float64)  # fmt: skip
    if accelerator.num_processes > 1:
        sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
        by_op = accelerator.reduce(by_op.to(accelerator.device), reduction="sum").cpu()
    model.train(was_training)
    out = {"val_pairs": int(sums[1]), "val_sets": int(sums[5])}
    out["val_pair_acc"] = float(sums[0] / sums[1]) if sums[1] else float("nan")
    out["val_group_acc"] = float(sums[2] / sums[3]) if sums[3] else float("nan")
    out["val_top1"] = float(sums[4] / sums[5]) if sums[5] else float("nan")
    out["val_metric"] = out["val_pair_acc"] if sums[1] else out["val_top1"]
    for i, name in enumerate(op_names):  # pair accuracy by the operator that made the negative
        if name and by_op[1, i] > 0:
            out[f"val_pair_acc/{name}"] = float(by_op[0, i] / by_op[1, i])
    return out


def _accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is visible: use device=auto or device=cpu")
    from accelerate.state import AcceleratorState, GradientState, PartialState

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
    from cache_tools.reader import open_cache

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
    from tflocal.checkpoint import check_signature

    cache = _open(cfg.cache, cfg.data.in_memory)
    units = build_units(cache, max_negs=cfg.data.max_negs)
    if cfg.val_cache:
        val_cache = _open(cfg.val_cache, cfg.data.in_memory)
        check_signature(cache.signature, val_cache, f"training cache {cfg.cache}")
        return cache, val_cache, units, build_units(val_cache, max_negs=cfg.data.max_negs)
    if cfg.data.val_fraction > 0:
        return cache, cache, *split_by_image(units, cfg.data.val_fraction, cfg.seed)
    return cache, cache, units, None


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train ``cfg.head`` on ``cfg.cache``. Returns a summary: steps, best_val_acc, best_step,
    checkpoint (best.pt, or last.pt without validation), last, out_dir, params, pairs_per_s."""
    import dataclasses

    import yaml
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from tflocal.checkpoint import check_signature, load_checkpoint, save_checkpoint
    from tflocal.config import to_dict
    from tflocal.models import build_head, count_parameters

    acc = _accelerator(cfg)
    main = acc.is_main_process
    set_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    cache, val_cache, train_units, val_units = _data(cfg)
    if cfg.model.max_text_tokens is None:  # record the resolved value in the checkpoint
        ctx = int(cache.attrs.get("context_length") or 77)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_text_tokens=ctx))

    model = build_head(cfg.head, cfg.model, cache.attrs)
    needs = model.needs
    dedup = bool(getattr(model, "accepts_pair_image", False))  # project each image once per batch
    dataset = BatchDataset(cache, train_units, batch_size=cfg.data.batch_size, n_neg=cfg.data.n_neg,
                           k_inbatch=cfg.data.k_inbatch, needs=needs, seed=cfg.seed, t2i=cfg.data.t2i,
                           shuffle_chunk=cfg.data.shuffle_chunk, world=acc.num_processes, rank=acc.process_index,
                           max_text_tokens=cfg.model.max_text_tokens)  # fmt: skip
    per_epoch = dataset.batches_per_epoch()
    if per_epoch == 0:
        raise UserError(
            f"{len(train_units)} training captions give no full batch on {acc.num_processes} process(es): lower data.batch_size"
        )
    total = cfg.max_steps or cfg.epochs * per_epoch

    # -- optimizer, schedule, resume -----------------------------------------------------
    opt = torch.optim.AdamW(
        param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, WarmupCosine(cfg.optim.warmup_steps, total, cfg.optim.min_lr_ratio)
    )
    step, best, best_step, last_val = 0, -1.0, None, None
    last_path, best_path = out / "last.pt", out / "best.pt"
    resuming = cfg.resume is True or (cfg.resume == "auto" and last_path.is_file())
    if resuming:
        if not last_path.is_file():
            raise UserError(f"resume=true but {last_path} does not exist: use resume=auto or resume=false")
        ckpt = load_checkpoint(last_path)
        check_signature(ckpt["cache_signature"], cache, f"checkpoint {last_path}")
        if ckpt["head"] != cfg.head or ckpt["model_cfg"] != to_dict(cfg.model):
            raise UserError(f"{last_path} holds head {ckpt['head']!r} {ckpt['model_cfg']}, not {cfg.head!r} {to_dict(cfg.model)}: "
                            "set resume=false or use another out_dir")  # fmt: skip
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
        best, best_step = ckpt["extra"].get("best", -1.0), ckpt["extra"].get("best_step")
    if main:
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    log = _Log(out / "log.jsonl", append=resuming, enabled=main)
    n_params = count_parameters(model)
    log(event="start", step=step, total_steps=total, batches_per_epoch=per_epoch, params=n_params, head=cfg.head,
        train_units=len(train_units), val_units=len(val_units) if val_units is not None else 0, resumed=resuming)  # fmt: skip
    model, opt = acc.prepare(model, opt)
    raw = acc.unwrap_model(model)

    def save(path: Path, epoch: int) -> None:
        if main:
            extra = {
                "epoch": epoch,
                "best": best,
                "best_step": best_step,
                "val": last_val,
                "total_steps": total,
                "cache": {k: cache.attrs.get(k) for k in CACHE_INFO} | {"path": str(cfg.cache)},
            }
            save_checkpoint(path, raw, cfg.head, cfg.model, cfg, cache.signature, step, opt, sched, extra)

    # -- loop ----------------------------------------------------------------------------
    stop = min(total, cfg.stop_at_step or total)
    bar = tqdm(
        total=total, initial=step, disable=not (main and cfg.progress), desc=f"train {cfg.head}", unit="step"
    )
    window = {"loss": 0.0, "acc": 0.0, "n": 0, "pairs": 0, "t": time.perf_counter()}
    pairs_total, t_start = 0, time.perf_counter()
    model.train()
    while step < stop:
        epoch, skip = divmod(step, per_epoch)
        dataset.set_epoch(epoch, start=skip)
        for batch in make_loader(dataset, cfg.data.num_workers, pin_memory=acc.device.type == "cuda"):
            torch.manual_seed(cfg.seed + step * acc.num_processes + acc.process_index)  # dropout, resumable
            batch = batch.to(acc.device)
            with acc.autocast():
                scores = model(batch.pairs(needs, dedup_images=dedup))
            loss, stats = candidate_loss(scores, batch, cfg.temperature, cfg.data.t2i_weight)
            finite = torch.isfinite(loss.detach())
            if acc.num_processes > 1:  # every process stops together
                finite = acc.reduce((~finite).float(), reduction="max") == 0
            if not bool(finite):
                log(event="nonfinite", step=step, loss=float(loss.detach()))
                raise NonFiniteLossError(
                    f"loss became {float(loss.detach())} at step {step} (epoch {epoch}): stopped without saving; "
                    f"{last_path} still holds the last good state. Lower optim.lr, set mixed_precision=no "
                    "or a smaller optim.grad_clip, then resume"
                )
            acc.backward(loss)
            if cfg.optim.grad_clip > 0 and acc.sync_gradients:
                norm = acc.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                if cfg.mixed_precision != "fp16" and not torch.isfinite(torch.as_tensor(norm)):
                    raise NonFiniteLossError(
                        f"gradient norm became {float(norm)} at step {step}: stopped without saving"
                    )
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            window["loss"] += float(loss.detach())
            window["acc"] += stats["acc"]
            window["n"] += 1
            window["pairs"] += batch.n_pairs * acc.num_processes
            pairs_total += batch.n_pairs * acc.num_processes
            if step % cfg.log_every == 0 or step == stop:
                dt = max(time.perf_counter() - window["t"], 1e-9)
                rec = {
                    "loss": window["loss"] / window["n"],
                    "acc": window["acc"] / window["n"],
                    "pairs_per_s": window["pairs"] / dt,
                }
                log(event="train", step=step, epoch=epoch, lr=sched.get_last_lr()[0], **rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", pairs_s=f"{rec['pairs_per_s']:.0f}")
                window.update(loss=0.0, acc=0.0, n=0, pairs=0, t=time.perf_counter())
            bar.update(1)
            if cfg.save_every and step % cfg.save_every == 0:
                save(last_path, epoch)
            if step >= stop:
                break
        val_due = (step % per_epoch == 0 and (step // per_epoch) % cfg.val_every == 0) or step >= total
        if val_due and val_units is not None and len(val_units):
            last_val = validate(model, val_cache, val_units, cfg, acc)
            log(event="val", step=step, epoch=epoch, **last_val)
            if last_val["val_metric"] > best:
                best, best_step = last_val["val_metric"], step
                save(best_path, epoch)
        save(last_path, epoch)
        acc.wait_for_everyone()
    bar.close()
    elapsed = time.perf_counter() - t_start
    summary = {
        "steps": step,
        "total_steps": total,
        "finished": step >= total,
        "best_val_acc": best if best_step is not None else None,
        "best_step": best_step,
        "val": last_val,
        "checkpoint": str(best_path if best_step is not None else last_path),
        "last": str(last_path),
        "out_dir": str(out),
        "params": n_params,
        "pairs_per_s": pairs_total / elapsed if elapsed > 0 else None,
    }
    log(event="end", **{k: v for k, v in summary.items() if k != "val"})
    return summary
