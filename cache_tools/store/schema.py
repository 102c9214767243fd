"""The HDF5 cache layout: names, shapes, dtypes, root attributes, version and validation.

Layout (``N_img`` images, ``N_txt`` texts, ``N_tok`` caption tokens in all, ``C`` crops)::

    /                       attrs: see ROOT_ATTRS
    images/ids              [N_img]            str     unique id from the source
    images/patches          [N_img, P, D_img]  float16 patch tokens (P = grid_h * grid_w)
    images/global           [N_img, D_gi]      float32 the model's own encode_image output
    images/group            [N_img]            str     benchmark item ("" if none)
    images/meta             [N_img]            str     JSON object per image
    images/box              [N_img, 4]         float32 crop box applied (NaN if none)
    images/crops/global     [N_img, C, D_gi]   float32 (only with --crops) crop embeddings
    images/crops/boxes      [C, 4]             float32 crop boxes, fractions of the image
    texts/strings           [N_txt]            str
    texts/tokens            [N_tok, D_txt]     float16 packed real tokens of every text
    texts/offsets           [N_txt + 1]        int64   text t owns tokens[offsets[t]:offsets[t+1]]
    texts/token_strings     [N_txt]            str     JSON list of the T_t token strings
    texts/global            [N_txt, D_gt]      float32 the model's own encode_text output
    texts/image_index       [N_txt]            int64   image the text belongs to, -1 if none
    texts/positive_index    [N_txt]            int64   -1 for a positive; else the positive it negates
    texts/op                [N_txt]            str     operator of a negative, "" otherwise
    texts/kind              [N_txt]            str     object / attribute / relation / ""
    texts/truncated         [N_txt]            bool    caption longer than the context
    texts/meta              [N_txt]            str     JSON object per text
    skipped/item            [N_skip]           str     what could not be read
    skipped/reason          [N_skip]           str     why
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import h5py
import numpy as np

from cache_tools.errors import CacheFormatError

FORMAT_VERSION = 1
STR = h5py.string_dtype("utf-8")

SPACES = ("joint", "hidden")
GLOBAL_SPACES = ("joint", "none")

ROOT_ATTRS = (
    "format_version",  # int, FORMAT_VERSION
    "encoder",  # registry name, e.g. openclip:ViT-B-32@openai
    "space",  # joint | hidden (patch and caption tokens)
    "global_space",  # joint | none
    "image_dim",  # D_img
    "text_dim",  # D_txt
    "global_image_dim",  # D_gi
    "global_text_dim",  # D_gt
    "grid",  # [grid_h, grid_w]
    "image_size",  # [H, W] after preprocessing
    "context_length",  # text context of the encoder
    "dtype",  # float16 (tokens and patches)
    "preprocess",  # description of the image transform
    "source",  # FORMAT:PATH the cache was built from
    "n_images",
    "n_texts",
    "n_tokens",
    "n_skipped",
    "n_truncated",
    "package_version",
    "config",  # JSON of the creating config
    "created",
    "complete",  # bool: False while a run is in progress
)

ENCODER_KEYS = (
    "encoder",
    "space",
    "global_space",
    "image_dim",
    "text_dim",
    "global_image_dim",
    "global_text_dim",
    "grid",
)
"""The attributes that identify the embedding space: checkpoints record them and refuse others."""


def encode_attr(value: Any) -> Any:
    """Root attribute values: scalars and strings as is, lists/dicts as JSON text."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return ""
    return value


def decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, str) and v[:1] in "[{":
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass
        out[k] = v
    return out


def check_version(attrs: dict[str, Any], path: str) -> None:
    version = attrs.get("format_version")
    if version is None:
        raise CacheFormatError(f"{path} is not a tflocal cache (no 'format_version' attribute)")
    if int(version) != FORMAT_VERSION:
        raise CacheFormatError(
            f"{path} has cache format_version {version}, this tflocal reads version {FORMAT_VERSION}: "
            "rebuild the cache with `tflocal cache`, or install the tflocal version that wrote it"
        )


def encoder_signature(attrs: dict[str, Any]) -> dict[str, Any]:
    """The part of a cache's attributes that identifies its embedding space."""
    sig = {k: attrs.get(k) for k in ENCODER_KEYS}
    if isinstance(sig.get("grid"), tuple):
        sig["grid"] = list(sig["grid"])
    return sig


SPACES = ("joint", "hidden")
"""Where patch and caption tokens live: the model's joint space, or each tower's own hidden space."""
GLOBAL_SPACES = ("joint", "none")
"""Whether image and text global embeddings are comparable by cosine."""


@dataclass(frozen=True)
class CacheSpec:
    """What a cache's embeddings are, derived from its root attributes: the one description of
    a cache that heads size themselves from, scorers check, and checkpoints store whole.

    space: "joint" | "hidden" (patch and caption tokens); global_space: "joint" | "none";
    grid: (rows, cols) of patches, P = rows * cols; context_length: the text encoder's tokens.
    Attributes a partial mapping lacks take the conservative default (not joint).
    """

    encoder: str = ""
    space: str = "hidden"
    global_space: str = "none"
    image_dim: int = 0
    text_dim: int = 0
    global_image_dim: int = 0
    global_text_dim: int = 0
    grid: tuple[int, int] = (1, 1)
    context_length: int = 77

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space {self.space!r} is not one of {', '.join(SPACES)}")
        if self.global_space not in GLOBAL_SPACES:
            raise ValueError(f"global_space {self.global_space!r} is not one of {', '.join(GLOBAL_SPACES)}")

    @classmethod
    def from_attrs(cls, attrs: Any) -> CacheSpec:
        """From a cache's attributes (or a stored spec / signature mapping); passes a CacheSpec through."""
        if isinstance(attrs, CacheSpec):
            return attrs
        kw: dict[str, Any] = {}
        for f in fields(cls):
            value = attrs.get(f.name)
            if value is None or value == "":
                continue
            if f.name == "grid":
                value = tuple(int(g) for g in value)
            elif f.name in ("encoder", "space", "global_space"):
                value = str(value)
            else:
                value = int(value)
            kw[f.name] = value
        return cls(**kw)

    @property
    def joint_tokens(self) -> bool:
        """Patch and caption tokens are comparable by cosine (MaxSim, token-patch maps)."""
        return self.space == "joint" and self.image_dim == self.text_dim

    @property
    def joint_globals(self) -> bool:
        """Image and text global embeddings are comparable by cosine."""
        return self.global_space == "joint"

    @property
    def n_patches(self) -> int:
        return int(self.grid[0]) * int(self.grid[1])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["grid"] = list(self.grid)
        return out

    def signature(self) -> dict[str, Any]:
        """The keys that identify the embedding space (:data:`ENCODER_KEYS`)."""
        d = self.to_dict()
        return {k: d[k] for k in ENCODER_KEYS}
