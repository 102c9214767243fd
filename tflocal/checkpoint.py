"""Self-describing checkpoints: weights + head name + model/training config + the cache
signature they were trained on. Loading against a cache of another embedding space is refused.

File: one ``torch.save`` dict (loaded with ``weights_only=True``)::

    format "tflocal-checkpoint", version, head, model_cfg (dict), train_cfg (dict | None),
    cache_signature (cache_tools.schema.encoder_signature), step, state_dict,
    optimizer / scheduler state (or None), extra (JSON-able dict: epoch, validation...)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tflocal.errors import UserError

FORMAT = "tflocal-checkpoint"
VERSION = 1


def _plain(obj: Any) -> Any:
    """Dataclass configs -> dicts; everything JSON-able (refused otherwise)."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj))


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    head_name: str,
    model_cfg: Any,
    train_cfg: Any,
    cache_signature: dict[str, Any],
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (a temporary file, then rename): a crash never leaves a
    half-written file in place of a good one. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model_cfg = _plain(model_cfg)
    if (
        isinstance(model_cfg, dict)
        and model_cfg.get("max_text_tokens") is None
        and hasattr(model, "max_text")
    ):
        # the text position table's size was resolved from the cache: record it, so the head
        # rebuilds with the same shapes whatever cache it is later loaded against
        model_cfg["max_text_tokens"] = int(model.max_text)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "head": head_name,
        "model_cfg": model_cfg,
        "train_cfg": _plain(train_cfg) if train_cfg is not None else None,
        "cache_signature": _plain(cache_signature),
        "step": int(step),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": _plain(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict (tensors on CPU); UserError if missing or not a tflocal checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found: train one with `tflocal train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise UserError(f"{path} is not a readable tflocal checkpoint ({err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a tflocal checkpoint (no '{FORMAT}' marker)")
    if int(ckpt.get("version", -1)) != VERSION:
        raise UserError(
            f"{path} is checkpoint version {ckpt.get('version')}, this tflocal reads version {VERSION}"
        )
    return ckpt


def signature_mismatch(recorded: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Keys of ``recorded`` whose value differs in ``actual`` (compared as JSON, so tuples == lists)."""
    return [k for k in recorded if json.dumps(recorded[k]) != json.dumps(actual.get(k))]


def check_signature(recorded: dict[str, Any], cache: Any, what: str) -> None:
    """Refuse ``cache`` (a Cache, an attrs dict or a path) unless its encoder signature equals ``recorded``."""
    from cache_tools.schema import encoder_signature

    if isinstance(cache, (str, Path)):
        from cache_tools.reader import open_cache

        cache = open_cache(cache)
    attrs = cache if isinstance(cache, dict) else cache.attrs
    actual = encoder_signature(attrs)
    diff = signature_mismatch(recorded, actual)
    if diff:
        details = "; ".join(f"{k}: trained on {recorded[k]!r}, cache has {actual.get(k)!r}" for k in diff)
        where = f" {cache.path}" if hasattr(cache, "path") else ""
        raise UserError(
            f"{what} cannot score cache{where}: it was trained on another embedding space ({details}). "
            "Use a cache built with the encoder the head was trained on, or train a head on this cache"
        )


def load_head(
    path: str | Path, cache: Any | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained head in eval mode on ``device``. With ``cache`` (a Cache, its attrs or a
    path), refuse it when its encoder signature differs from the one recorded (UserError naming
    the keys). Returns (model, info) where info holds head, model_cfg, train_cfg,
    cache_signature, step, extra and path."""
    from tflocal.models import build_head

    ckpt = load_checkpoint(path)
    if cache is not None:
        check_signature(ckpt["cache_signature"], cache, f"checkpoint {path}")
    model = build_head(ckpt["head"], ckpt["model_cfg"], ckpt["cache_signature"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    info = {k: ckpt[k] for k in ("head", "model_cfg", "train_cfg", "cache_signature", "step", "extra")}
    info["path"] = str(path)
    return model, info
