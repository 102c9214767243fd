"""AdamW with decay on matrices only, and a warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch


class WarmupCosine:
    """lr multiplier at step s: s/warmup during warm-up, then cosine from 1 to min_ratio at ``total``."""

    def __init__(self, warmup: int, total: int, min_ratio: float = 0.0):
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def param_groups(
    model: torch.nn.Module, weight_decay: float, lr: float | None = None, scalar_lr: float = 1.0
) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices, none on biases, norms, embeddings and position tables;
    with ``scalar_lr`` != 1 (and ``lr``) the single-number parameters (0-d) get their own group at
    ``lr * scalar_lr``, no decay."""
    decay, no_decay, scalars = [], [], []
    split = scalar_lr != 1.0 and lr is not None
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if split and p.ndim == 0:
            scalars.append(p)
            continue
        (
            decay
            if p.ndim >= 2 and "table" not in name and "modality" not in name and "summary" not in name
            else no_decay
        ).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if scalars:
        groups.append({"params": scalars, "weight_decay": 0.0, "lr": float(lr) * scalar_lr})
    return groups


def make_optimizer(
    model: torch.nn.Module, optim: Any, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`param_groups` and its :class:`WarmupCosine` schedule of ``total_steps``
    (``optim``: an OptimConfig)."""
    params = list(model.parameters())
    # the fused kernel (one pass over all tensors) is faster than the per-tensor loop that is
    # the CPU default, and as deterministic; other devices keep the default
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    opt = torch.optim.AdamW(
        param_groups(model, optim.weight_decay, optim.lr, 1.0 if optim.scalar_lr is None else optim.scalar_lr),
        lr=optim.lr,
        betas=(optim.beta1, optim.beta2),
        fused=fused or None,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, WarmupCosine(optim.warmup_steps, total_steps, optim.min_lr_ratio)
    )
    return opt, sched
