"""Alignment heads: every head maps a :class:`PairBatch` of B (image, caption) pairs to B scores.

``HEADS`` names them; ``build_head(name, cfg, spec)`` builds one for a cache's :class:`CacheSpec`.
Every head is a :class:`~tflocal.models.base.Head`, which declares what callers read: ``needs``
(the PairBatch fields it reads, so scorers load only those), ``accepts_pair_image``,
``separable``, ``mix_weights()``, ``auxiliary_scores()`` and the rest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from cache_tools.store.schema import CacheSpec
from tflocal.config import from_dict
from tflocal.errors import UserError
from tflocal.models.base import Head
from tflocal.models.config import UNSET_MEANS, ModelConfig
from tflocal.models.cosine import CosineHead, cosine_score
from tflocal.models.global_head import DualGlobalHead, GlobalHead, global_head
from tflocal.models.joint_head import TFLocalHead
from tflocal.models.maxsim import MaxSimHead, maxsim_score
from tflocal.models.segment_head import SegmentHead
from tflocal.pairs.batch import PAIR_FIELDS, PairBatch

HEADS: dict[str, type[Head]] = {
    "tflocal": TFLocalHead,
    "global": GlobalHead,
    "maxsim": MaxSimHead,
    "cosine": CosineHead,
}
"""The user-facing heads. ``tflocal`` is the localized head: it builds the read-out its
``model.readout`` names (below), by default ``segments``."""
READOUT_HEADS: dict[str, type[Head]] = {
    "tflocal-joint": TFLocalHead,
    "tflocal-segments": SegmentHead,
}
"""Each TFLocal read-out as a named head: ``tflocal-segments`` the late-interaction read-out
(the default: caption segments aligned with image regions), ``tflocal-joint`` the joint
cross-encoder (``readout: summary`` or ``summary+align``)."""
TRAINABLE = ("tflocal", "tflocal-joint", "tflocal-segments", "global")


def head_name(name: str, cfg: ModelConfig) -> str:
    """The registry name of the head a config builds: ``tflocal`` with ``readout: segments`` is
    ``tflocal-segments`` (the user-facing name stays ``tflocal``; this is the class it builds)."""
    if name == "tflocal":
        return "tflocal-segments" if cfg.readout == "segments" else "tflocal-joint"
    return name


def model_config(cfg: ModelConfig | dict[str, Any] | None) -> ModelConfig:
    """A ModelConfig as given, from its dict, or the defaults for None (nothing resolved yet)."""
    if cfg is None:
        return ModelConfig()
    return from_dict(ModelConfig, cfg, prefix="model.") if isinstance(cfg, dict) else cfg


def resolve_config(cfg: ModelConfig | dict[str, Any] | None, spec: CacheSpec) -> ModelConfig:
    """A ModelConfig (from a dict, or defaults for None) with what the cache decides filled in:
    ``max_text_tokens`` = the cache's context length when unset; no ``global_path`` for a spec
    without global embeddings (a dimension of 0); ``local_loss`` None -> on for ``segments`` only;
    ``block_init`` None -> 'zero' for ``segments``, 'default' for the joint read-outs;
    ``count_term`` / ``count_form`` / ``number_words`` None -> off / 'classes' / 'keep'."""
    cfg = model_config(cfg)
    if cfg.max_text_tokens is None:
        cfg = replace(cfg, max_text_tokens=int(spec.context_length))
    if cfg.global_path and not (spec.global_image_dim and spec.global_text_dim):
        cfg = replace(cfg, global_path=False)
    if cfg.local_loss is None:
        cfg = replace(cfg, local_loss=cfg.readout == "segments")
    unset = {k: v for k, v in UNSET_MEANS.items() if getattr(cfg, k) is None}
    if unset:
        cfg = replace(cfg, **unset)
    if cfg.block_init is None:
        cfg = replace(cfg, block_init="zero" if cfg.readout == "segments" else "default")
    return cfg


def build_head(name: str, cfg: ModelConfig | dict[str, Any] | None, spec: CacheSpec | dict[str, Any]) -> Head:
    """Head ``name`` sized for a cache. ``spec``: the cache's :class:`CacheSpec` (or its
    attributes); ``cfg``: a ModelConfig, its dict, or None for defaults. The head keeps its
    resolved config and the spec (``head.cfg``, ``head.spec``), which checkpoints store.
    ``tflocal-segments`` and ``tflocal-joint`` name their read-out: the first always builds
    ``segments``; the second builds ``summary+align`` when the config says so, else ``summary``
    (a config left at the default ``segments`` included)."""
    if name not in HEADS and name not in READOUT_HEADS:
        raise UserError(f"unknown head {name!r}; choices: {', '.join([*HEADS, *READOUT_HEADS])}")
    spec = CacheSpec.from_attrs(spec)
    cfg = model_config(cfg)
    if name == "tflocal-joint" and cfg.readout == "segments":  # the default: the joint read-out's is summary
        cfg = replace(cfg, readout="summary")
    if name == "tflocal-segments" and cfg.readout != "segments":  # the name says which read-out
        cfg = replace(cfg, readout="segments")
    cfg = resolve_config(cfg, spec)
    name = head_name(name, cfg)
    if name == "global":
        return global_head(cfg, spec)
    return {**HEADS, **READOUT_HEADS}[name](cfg, spec)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "HEADS",
    "READOUT_HEADS",
    "PAIR_FIELDS",
    "TRAINABLE",
    "CosineHead",
    "DualGlobalHead",
    "GlobalHead",
    "Head",
    "MaxSimHead",
    "ModelConfig",
    "PairBatch",
    "SegmentHead",
    "TFLocalHead",
    "build_head",
    "head_name",
    "resolve_config",
    "cosine_score",
    "count_parameters",
    "maxsim_score",
]
