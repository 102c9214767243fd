"""A deterministic, dependency-free encoder for writer/reader tests, and a scorer that reads a
table (for exact metric values).

Patches are a fixed random projection of 8x8 pixel blocks of a 32x32 image (grid 4x4); text
tokens are a fixed random embedding per character-hashed word, with a BOS and EOS token; the
global embeddings are the mean of patches / the EOS token. Not a model: just a stable function
of its input, so tests can check what the cache stores against a direct computation.
"""

from __future__ import annotations

import numpy as np
import torch

from cache_tools.encoders.base import Encoder, ImageOutput, TextOutput


class FakeEncoder(Encoder):
    def __init__(self, dim: int = 16, text_dim: int = 12, context_length: int = 8):
        self.name = "fake:test"
        self.space = "joint"
        self.global_space = "joint"
        self.image_dim, self.text_dim = dim, text_dim
        self.global_image_dim = self.global_text_dim = dim
        self.grid = (4, 4)
        self.image_size = (32, 32)
        self.context_length = context_length
        self.device = torch.device("cpu")
        g = torch.Generator().manual_seed(1234)
        self.proj = torch.randn(3 * 8 * 8, dim, generator=g)
        self.text_proj = torch.randn(text_dim, dim, generator=g)
        self.calls = 0

    def preprocess(self, image):
        arr = np.asarray(image.convert("RGB").resize(self.image_size), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def encode_images(self, pixels: torch.Tensor) -> ImageOutput:
        self.calls += 1
        b = pixels.shape[0]
        blocks = pixels.unfold(2, 8, 8).unfold(3, 8, 8)  # [B,3,4,4,8,8]
        blocks = blocks.permute(0, 2, 3, 1, 4, 5).reshape(b, 16, 3 * 64)
        patches = blocks @ self.proj
        return ImageOutput(patches=patches, global_=patches.mean(1) * 2.0)

    def _word(self, w: str) -> torch.Tensor:
        seed = sum((i + 1) * ord(c) for i, c in enumerate(w)) % (2**31)
        return torch.randn(self.text_dim, generator=torch.Generator().manual_seed(seed))

    def encode_texts(self, texts: list[str]) -> TextOutput:
        toks, strs, glob, trunc = [], [], [], []
        for t in texts:
            words = ["<bos>", *t.lower().split(), "<eos>"]
            trunc.append(len(words) > self.context_length)
            words = (
                words[: self.context_length - 1] + ["<eos>"] if len(words) > self.context_length else words
            )
            emb = torch.stack([self._word(w) for w in words])
            toks.append(emb)
            strs.append(words)
            glob.append(emb.mean(0) @ self.text_proj)
        return TextOutput(tokens=toks, token_strings=strs, global_=torch.stack(glob), truncated=trunc)


JOINT = {"space": "joint", "global_space": "joint"}
"""Cache attributes of a joint-space encoder, for caches written directly with ``write_arrays``."""


class TableScorer:
    """score(i, t) = table[i, t]: image rows x text columns, known in advance."""

    name = "table"
    checkpoint = ""

    def __init__(self, table: np.ndarray):
        self.table = np.asarray(table, dtype=np.float32)

    def score(self, image_idx, text_idx):
        return self.table[np.asarray(image_idx), np.asarray(text_idx)]
