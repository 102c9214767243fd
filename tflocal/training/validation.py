"""Validation during training: the pair metric of the benchmarks, over held-out candidate sets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tflocal.evaluate.metrics import pair_correct
from tflocal.models.base import Head
from tflocal.pairs.candidates import Units, make_batch


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    cache: Any,
    units: Units,
    cfg: Any,
    accelerator: Any,
    shard_ops: np.ndarray | None = None,
) -> dict[str, float]:
    """Pair accuracy against hard negatives: score(positive) > score(negative), over every
    (caption, hard negative) pair; group accuracy: all of a caption's negatives beaten; top-1
    within the candidate set with k in-batch negatives (the metric when there are no hard negatives).

    ``shard_ops`` None: ``units`` are the same on every process, each scores every W-th batch.
    Else each process holds its own units (its shards of the cache) and scores all of them;
    ``shard_ops`` (str [O], sorted, the whole cache's operator names) line up the per-operator
    sums across processes."""
    was_training = model.training
    model.eval()
    raw = model if isinstance(model, Head) else accelerator.unwrap_model(model)
    needs = raw.needs
    dedup = bool(raw.accepts_pair_image)
    n_neg = units.negs.shape[1]
    sums = torch.zeros(6, dtype=torch.float64)  # pair ok, pairs, group ok, groups, top1 ok, sets
    if shard_ops is None:
        op_names, text_op = np.unique(np.asarray(getattr(cache, "op", []), dtype=str), return_inverse=True)
    else:
        op_names = np.asarray(shard_ops, dtype=str)
        text_op = np.searchsorted(op_names, np.asarray(getattr(cache, "op", []), dtype=str))
    text_op = np.where(op_names[text_op] == "", -1, text_op).astype(np.int64)  # "" = a positive
    by_op = torch.zeros(2, len(op_names), dtype=torch.float64)  # pair ok, pairs per operator
    bs = cfg.data.val_batch_size
    nonfinite = 0  # scores the model returned as NaN/inf: a broken state, never a result
    first, stride = (accelerator.process_index, accelerator.num_processes) if shard_ops is None else (0, 1)
    for b in range(first, -(-len(units) // bs), stride):
        sub = units.subset(np.arange(b * bs, min((b + 1) * bs, len(units))))
        batch = make_batch(
            cache,
            sub,
            n_neg=n_neg,
            k_inbatch=cfg.data.k_inbatch,
            needs=needs,
            t2i=False,
            max_text_tokens=cfg.model.max_text_tokens,
        ).to(accelerator.device)
        with accelerator.autocast():
            scores = model(batch.pairs(needs, dedup_images=dedup))
        nonfinite += int((~torch.isfinite(scores.float())).sum())
        m = batch.score_matrix(scores.float()).cpu()
        hard = m[:, 1 : 1 + n_neg]
        real = torch.isfinite(hard)
        beat = torch.zeros_like(real)  # the benchmarks' pair metric: score(positive) > score(negative)
        pos = m[:, :1].expand_as(hard)
        beat[real] = torch.from_numpy(pair_correct(pos[real].numpy(), hard[real].numpy()))
        has = real.any(dim=1)
        if len(op_names):
            ops = torch.from_numpy(np.where(sub.negs >= 0, text_op[np.maximum(sub.negs, 0)], -1))
            known = real & (ops >= 0)
            by_op[0].index_add_(0, ops[known], beat[known].double())
            by_op[1].index_add_(0, ops[known], torch.ones(int(known.sum()), dtype=torch.float64))
        sums += torch.tensor(
            [
                beat.sum(),
                real.sum(),
                (beat.sum(1) == real.sum(1))[has].sum(),
                has.sum(),
                (m.argmax(dim=1) == 0).sum(),
                m.shape[0],
            ],
            dtype=torch.float64,
        )
    if accelerator.num_processes > 1:
        sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
        by_op = accelerator.reduce(by_op.to(accelerator.device), reduction="sum").cpu()
    model.train(was_training)
    if accelerator.num_processes > 1:
        nonfinite = int(
            accelerator.reduce(torch.tensor(nonfinite, device=accelerator.device), reduction="sum")
        )
    out = {"val_pairs": int(sums[1]), "val_sets": int(sums[5]), "val_nonfinite": nonfinite}
    out["val_pair_acc"] = float(sums[0] / sums[1]) if sums[1] else float("nan")
    out["val_group_acc"] = float(sums[2] / sums[3]) if sums[3] else float("nan")
    out["val_top1"] = float(sums[4] / sums[5]) if sums[5] else float("nan")
    out["val_metric"] = out["val_pair_acc"] if sums[1] else out["val_top1"]
    for i, name in enumerate(op_names):  # pair accuracy by the operator that made the negative
        if name and by_op[1, i] > 0:
            out[f"val_pair_acc/{name}"] = float(by_op[0, i] / by_op[1, i])
    return out
