"""What keeps a training run's folder safe: one writer at a time, an earlier run's artifacts never
destroyed unless asked (``overwrite``), a resumed run that applies a changed schedule, and
checkpoints that never hold non-finite weights (so "last.pt holds the last good state" is true)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from tqdm.auto import tqdm

from cache_tools.infra.locks import OutputLock
from cache_tools.store.reader import open_cache
from tflocal.config import to_dict
from tflocal.errors import UserError
from tflocal.models.checkpoint import check_signature, load_checkpoint
from tflocal.pairs.candidates import Units, build_units, split_by_image
from tflocal.training.shard_reads import shards_for

ARTIFACTS = ("last.pt", "best.pt")
SCHEDULE_KEYS = ("epochs", "max_steps")


class NonFiniteLossError(UserError):
    """The loss, a gradient norm, the weights or the validation scores became NaN/inf: the run
    stopped without saving that state."""


def say(msg: str) -> None:
    tqdm.write(f"tflocal train: {msg}", file=sys.stderr)


def accelerator(cfg: Any) -> Any:
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


def open_for_training(path: str | list[Path], in_memory: bool) -> Any:
    cache = open_cache(path)
    return cache.load_into_memory() if in_memory else cache


class Log:
    """JSONL log (main process only); ``append=False`` starts it empty. Appending drops a last
    line cut short by a kill, so every line stays one JSON record."""

    def __init__(self, path: Path, append: bool, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled and not append:
            path.write_text("")
        elif enabled and path.is_file():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with path.open("r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def __call__(self, **record: Any) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def will_resume(cfg: Any) -> bool:
    """Whether this run continues ``out/last.pt`` (resume=true, or auto when it exists; never
    with overwrite)."""
    return not cfg.overwrite and (
        cfg.resume is True or (cfg.resume == "auto" and (Path(cfg.out) / "last.pt").is_file())
    )


def load_data(
    cfg: Any, world: int = 1, rank: int = 0
) -> tuple[Any, Any, Units, Units | None, list[Path] | None]:
    """(train cache, validation cache, training units, validation units or None, shard files).

    Process ``rank`` of ``world`` > 1 on a cache written as shards opens only its share of the
    shard files (:mod:`tflocal.training.shard_reads`; the last item lists them) and builds its
    units and validation split from them; otherwise the last item is None and the whole cache
    is read."""
    shards = shards_for(cfg.cache, world, rank, say)
    cache = open_for_training(shards if shards else cfg.cache, cfg.data.in_memory)
    units = build_units(cache, max_negs=cfg.data.max_negs)
    if cfg.val_cache:
        val_cache = open_for_training(cfg.val_cache, cfg.data.in_memory)
        check_signature(cache.signature, val_cache, f"training cache {cfg.cache}")
        return cache, val_cache, units, build_units(val_cache, max_negs=cfg.data.max_negs), shards
    if cfg.data.val_fraction > 0:
        return cache, cache, *split_by_image(units, cfg.data.val_fraction, cfg.seed), shards
    return cache, cache, units, None, shards


def note_no_validation(run: Any) -> None:
    """Say (once, on the main process) that this run has nothing to validate on, and why."""
    cfg = run.cfg
    if cfg.val_cache:
        why = f"val_cache={cfg.val_cache} has no candidate sets"
    else:
        n_img = len(np.unique(run.train_units.image))
        why = f"data.val_fraction={cfg.data.val_fraction} of {n_img} image(s) holds none out"
    run.log(event="no_validation", reason=why)
    if run.acc.is_main_process:
        say(
            f"no validation ({why}): best.pt is not written and last.pt is the result; give val_cache or more images"
        )


def open_out(cfg: Any, resumed: bool) -> tuple[Path, OutputLock, bool]:
    """Create and lock ``cfg.out`` -> (folder, its lock, whether this call created it).

    A fresh run (not resumed) into a folder that holds an earlier run's checkpoints is refused
    unless ``cfg.overwrite``; with it, those checkpoints are removed first."""
    out = Path(cfg.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(out, "`tflocal train` run", "", folder=True)
    if os.environ.get("RANK", "0") != "0":  # under accelerate launch / torchrun the main process holds it
        return out, lock, False
    lock = OutputLock(
        out, "`tflocal train` run", "Wait for it to finish (or stop it), or choose another --out", folder=True
    ).acquire()
    try:
        for stale in out.glob("*.pt.tmp"):  # a save cut short by a kill: we hold the lock, nobody writes it
            stale.unlink()
        old = [name for name in ARTIFACTS if (out / name).is_file()]
        if not resumed and old:
            if not cfg.overwrite:
                raise UserError(
                    f"{out} holds an earlier run ({', '.join(old)}) and resume={cfg.resume}: nothing was "
                    "changed. Use resume=auto to continue it, another --out, or overwrite=true to replace it"
                )
            for name in old:
                (out / name).unlink()
    except BaseException:
        lock.release()
        raise
    return out, lock, created


def close_out(out: Path, lock: OutputLock, created: bool, failed: bool) -> None:
    """Release the folder; after a failure, remove it again when this run created it and left nothing."""
    lock.release()
    if failed and created and out.is_dir() and all(p.name in (".lock", "log.jsonl") for p in out.iterdir()):
        log = out / "log.jsonl"
        if not log.is_file() or not log.read_text().strip():
            shutil.rmtree(out, ignore_errors=True)


def stop_advice(run: Any) -> str:
    """What a stopped run tells the user; true about which checkpoint holds a good state."""
    if run.last_path.is_file():
        step = int(load_checkpoint(run.last_path)["step"])
        return (
            f"{run.last_path} (step {step}) still holds the last good state: lower optim.lr, set "
            "mixed_precision=no or a smaller optim.grad_clip, then run again to resume (a changed "
            "optim.lr or epochs is applied on resume)"
        )
    return (
        "no checkpoint was saved yet, so there is nothing to resume: lower optim.lr, set "
        "mixed_precision=no or a smaller optim.grad_clip, then run again"
    )


def check_finite(run: Any, where: str) -> None:
    """Refuse to go on (and to save) with NaN/inf weights."""
    bad = [n for n, p in run.raw.named_parameters() if not torch.isfinite(p.detach()).all()]
    if bad:
        run.log(event="nonfinite", step=run.step, where=where, params=bad[:5])
        raise NonFiniteLossError(
            f"the weights became non-finite ({bad[0]}{' and others' if len(bad) > 1 else ''}) by step "
            f"{run.step}, found {where}: stopped without saving; {stop_advice(run)}"
        )


def resume(run: Any) -> None:
    """Load ``last.pt`` into the run (same head, model config and embedding space). A changed
    schedule (epochs, max_steps, optim.*) is applied from the resumed step and announced."""
    cfg, last_path = run.cfg, run.last_path
    if not last_path.is_file():
        raise UserError(f"resume=true but {last_path} does not exist: use resume=auto or resume=false")
    ckpt = load_checkpoint(last_path)
    check_signature(ckpt["cache_signature"], run.cache, f"checkpoint {last_path}")
    if ckpt["head"] != cfg.head or ckpt["model_cfg"] != to_dict(cfg.model):
        raise UserError(
            f"{last_path} holds head {ckpt['head']!r} {ckpt['model_cfg']}, not {cfg.head!r} {to_dict(cfg.model)}: "
            "set resume=false or use another --out"
        )
    run.model.load_state_dict(ckpt["state_dict"])
    run.step = int(ckpt["step"])
    run.best, run.best_step = ckpt["extra"].get("best", -1.0), ckpt["extra"].get("best_step")
    changed = _schedule_changes(ckpt, cfg, run.total)
    if not changed:
        run.opt.load_state_dict(ckpt["optimizer"])
        run.sched.load_state_dict(ckpt["scheduler"])
        return
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in run.opt.param_groups]
    run.opt.load_state_dict(ckpt["optimizer"])  # Adam moments kept; hyperparameters from this config
    for group, new in zip(run.opt.param_groups, fresh):
        group.update(new)
    sched = run.sched
    sched.last_epoch = run.step
    for group, base, fn in zip(run.opt.param_groups, sched.base_lrs, sched.lr_lambdas):
        group["lr"] = base * fn(run.step)
    sched._last_lr = [g["lr"] for g in run.opt.param_groups]
    msg = ", ".join(f"{k} {a} -> {b}" for k, a, b in changed)
    run.log(
        event="schedule_changed",
        step=run.step,
        total_steps=run.total,
        changed={k: [a, b] for k, a, b in changed},
    )
    say(
        f"resuming {last_path} at step {run.step} with a changed schedule ({msg}): applied from this step, "
        f"lr now {sched._last_lr[0]:.3g}, {run.total} steps in all"
    )


def _schedule_changes(ckpt: dict, cfg: Any, total: int) -> list[tuple[str, Any, Any]]:
    old = ckpt.get("train_cfg") or {}
    now = to_dict(cfg)
    out = [(k, old.get(k), now[k]) for k in SCHEDULE_KEYS if k in old and old.get(k) != now[k]]
    old_optim = old.get("optim") or {}
    out += [
        (f"optim.{k}", old_optim.get(k), v)
        for k, v in now["optim"].items()
        if k in old_optim and old_optim[k] != v
    ]
    old_total = ckpt["extra"].get("total_steps")
    if old_total is not None and old_total != total and not out:
        out.append(("total_steps", old_total, total))
    return out
