"""Self-describing checkpoints: weights + head name + model/training config + the cache
signature they were trained on. Loading against a cache of another embedding space is refused.

File: one ``torch.save`` dict (loaded with ``weights_only=True``)::

    format "tflocal-checkpoint", version, head, model_cfg (dict, resolved), train_cfg (dict | None),
    cache_signature (cache_tools.store.schema.encoder_signature), cache_spec (CacheSpec.to_dict), step, state_dict,
    optimizer / scheduler state (or None), extra (JSON-able dict: epoch, validation...)
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cache_tools.infra.space import check_space, free_bytes, no_space
from cache_tools.store.reader import open_cache
from cache_tools.store.schema import CacheSpec, encoder_signature
from tflocal.errors import UserError
from tflocal.models import build_head

FORMAT = "tflocal-checkpoint"
VERSION = 1
LEGACY_MODEL_KEYS = {
    "global_path": False,
    "local_loss": False,
    "readout": "summary",
    "relation_form": "direction",
    "count_term": False,
    "pair_features": "full",
    "number_words": "keep",
    "count_form": "classes",
    "count_peaks": False,
    "compare_term": False,
    "block_init": "default",
}
"""Model config keys a checkpoint may lack, with what a head saved without them was: saved
before read-outs had a global path (``global_path``, ``local_loss``), before there was a
choice of read-out (``readout``: the joint summary read-out, the only one then), or before the
``segments`` read-out had its pair relation, count and compare terms (``relation_form``: the
plane direction alone; ``count_term``, ``count_peaks``, ``compare_term``: off; ``number_words``:
'keep'; ``count_form``: 'classes'), or before blocks could start as the identity
(``block_init``: 'default'). A checkpoint
stores its resolved config in full (``model_cfg``), so one saved with a key at its default
holds the key and is loaded as it was, whatever the default is now."""


def _plain(obj: Any) -> Any:
    """Dataclass configs -> dicts; everything JSON-able (refused otherwise)."""
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
    # the head's own resolved config and the cache spec it was sized for, when it keeps them
    # (heads from build_head do): a checkpoint rebuilds the same shapes on any compatible cache
    model_cfg = _plain(getattr(model, "cfg", None) or model_cfg)
    spec = getattr(model, "spec", None) or CacheSpec.from_attrs(cache_signature)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "head": head_name,
        "model_cfg": model_cfg,
        "train_cfg": _plain(train_cfg) if train_cfg is not None else None,
        "cache_signature": _plain(cache_signature),
        "cache_spec": spec.to_dict(),
        "step": int(step),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": _plain(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    keep = f"{path} still holds the previous state" if path.is_file() else f"nothing was written to {path}"
    advice = f"Free some space (or choose another out_dir) and run again; {keep}"
    check_space(path, _tensor_bytes(payload), "the checkpoint", advice)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a failed write as a RuntimeError
        tmp.unlink(missing_ok=True)
        why = (
            "no space left" if no_space(err) or free_bytes(path.parent) < _tensor_bytes(payload) else str(err)
        )
        raise UserError(f"cannot write the checkpoint {path} ({why[:200]}). {advice}") from None
    return path


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested payload (what torch.save writes, besides small metadata)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


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
    if isinstance(ckpt.get("model_cfg"), dict):  # keys added later, with the value they had before
        ckpt["model_cfg"] = {**LEGACY_MODEL_KEYS, **ckpt["model_cfg"]}
    return ckpt


def signature_mismatch(recorded: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Keys of ``recorded`` whose value differs in ``actual`` (compared as JSON, so tuples == lists)."""
    return [k for k in recorded if json.dumps(recorded[k]) != json.dumps(actual.get(k))]


def check_signature(recorded: dict[str, Any], cache: Any, what: str) -> None:
    """Refuse ``cache`` (a Cache, an attrs dict or a path) unless its encoder signature equals ``recorded``."""
    if isinstance(cache, (str, Path)):
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
    ckpt = load_checkpoint(path)
    if cache is not None:
        check_signature(ckpt["cache_signature"], cache, f"checkpoint {path}")
    model = build_head(ckpt["head"], ckpt["model_cfg"], ckpt.get("cache_spec") or ckpt["cache_signature"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    info = {k: ckpt[k] for k in ("head", "model_cfg", "train_cfg", "cache_signature", "step", "extra")}
    info["path"] = str(path)
    return model, info
