"""The one output contract every encoder adapter follows.

An adapter wraps a frozen model and exposes:

* ``preprocess(img: PIL.Image) -> Tensor [3, H, W]`` — the model's own image transform;
* ``encode_images(pixels [B, 3, H, W]) -> ImageOutput`` — patch tokens ``[B, P, D_img]``
  (``P = grid[0] * grid[1]``, no CLS / register tokens, row-major over the grid) and global
  embeddings ``[B, D_gi]`` exactly as the model's own ``encode_image`` /
  ``get_image_features`` returns them (not normalized);
* ``encode_texts(texts: list[str]) -> TextOutput`` — per caption the embeddings ``[T_i, D_txt]``
  of its real tokens (special tokens included, padding excluded), the token strings, and global
  embeddings ``[B, D_gt]`` exactly as ``encode_text`` / ``get_text_features`` return them.

``space`` says where patch and caption tokens live: ``"joint"`` (the model's final norm and
projection applied, comparable to the global embeddings and to each other) or ``"hidden"``
(the towers' own hidden spaces). ``global_space`` is ``"joint"`` when image and text global
embeddings are comparable by cosine, ``"none"`` for unaligned towers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ImageOutput:
    """patches: [B, P, D_img]; global_: [B, D_gi]."""

    patches: torch.Tensor
    global_: torch.Tensor


@dataclass
class TextOutput:
    """tokens: B tensors [T_i, D_txt]; token_strings: B lists of T_i strings;
    global_: [B, D_gt]; truncated: B flags (the caption was longer than the context)."""

    tokens: list[torch.Tensor]
    token_strings: list[list[str]]
    global_: torch.Tensor
    truncated: list[bool]


class Encoder(ABC):
    """A frozen image/text encoder pair behind one contract (see module docstring)."""

    name: str
    """The registry name it was loaded from, e.g. ``openclip:ViT-B-32@openai``."""
    space: str
    """``"joint"`` or ``"hidden"``: the space of patch and caption tokens."""
    global_space: str
    """``"joint"`` (image/text globals comparable) or ``"none"``."""
    image_dim: int
    text_dim: int
    global_image_dim: int
    global_text_dim: int
    grid: tuple[int, int]
    image_size: tuple[int, int]
    context_length: int
    sorts_texts: bool = False
    """True when ``encode_texts`` sorts its captions by length and cuts its own padded
    sub-batches (the towers): :func:`cache_tools.write.encode.encode_texts` then hands it many
    captions per call, so that the length groups span the whole part, not one batch."""
    device: torch.device

    @abstractmethod
    def preprocess(self, image: Any) -> torch.Tensor:
        """PIL image -> [3, H, W] float tensor, the model's own transform."""

    @abstractmethod
    def encode_images(self, pixels: torch.Tensor) -> ImageOutput:
        """[B, 3, H, W] -> ImageOutput (patches [B, P, D_img], global_ [B, D_gi])."""

    @abstractmethod
    def encode_texts(self, texts: list[str]) -> TextOutput:
        """B strings -> TextOutput (tokens B x [T_i, D_txt], global_ [B, D_gt])."""

    def metadata(self) -> dict[str, Any]:
        """What the cache records about this encoder (stored as HDF5 root attributes)."""
        return {
            "encoder": self.name,
            "space": self.space,
            "global_space": self.global_space,
            "image_dim": self.image_dim,
            "text_dim": self.text_dim,
            "global_image_dim": self.global_image_dim,
            "global_text_dim": self.global_text_dim,
            "grid": list(self.grid),
            "image_size": list(self.image_size),
            "context_length": self.context_length,
            "preprocess": self.preprocess_description(),
        }

    def preprocess_description(self) -> str:
        return ""

    def to(self, device: str | torch.device) -> Encoder:
        raise NotImplementedError
