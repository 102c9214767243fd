"""Lazy cache reader: small index arrays in RAM, payload read on demand in few contiguous slices.

``open_cache(path)`` reads the attributes and the small per-text / per-image arrays once; the
HDF5 file itself is opened lazily and re-opened after a ``fork`` (each DataLoader worker gets
its own handle). Random row access goes through :func:`cache_tools.store.h5io.read_rows`, which
merges indices into contiguous slices: pair it with :func:`chunk_shuffle` for training batches,
or call :meth:`Cache.load_into_memory` when the payload fits in RAM.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cache_tools.errors import CacheFormatError, UserError
from cache_tools.infra.padding import pad_tokens
from cache_tools.store.direct_rows import DirectRows, direct_rows
from cache_tools.store.h5io import read_str
from cache_tools.store.schema import CacheSpec, check_version, decode_attrs, encoder_signature
from cache_tools.store.shards import merge_shards
from cache_tools.store.virtual_rows import ShardRows, read_from, shard_rows

_PAYLOAD = {
    "patches": "images/patches",
    "image_global": "images/global",
    "crops_global": "images/crops/global",
    "tokens": "texts/tokens",
    "text_global": "texts/global",
}


def chunk_shuffle(n: int, block: int, seed: int, span: int | None = None) -> np.ndarray:
    """A permutation of ``range(n)`` shuffled at the level of blocks of rows.

    Blocks of ``block`` consecutive rows (use :attr:`Cache.block_rows`, the HDF5 chunk) are put
    in random order, then rows are shuffled within each run of ``span`` consecutive positions.
    With ``span`` = the batch size, every batch is the union of about ``span / block`` whole
    blocks in random order: it reads as a few dense slices (close to sequential speed) while
    its members still come from random places of the file. A new ``seed`` each epoch.

    Returns:
        int64 array [n].
    """
    rng = np.random.default_rng(seed)
    block = max(1, int(block))
    span = max(1, int(span or 4 * block))
    starts = np.arange(0, n, block)
    rng.shuffle(starts)
    order = np.concatenate([np.arange(s, min(s + block, n)) for s in starts]) if n else np.empty(0, np.int64)
    for i in range(0, n, span):
        seg = order[i : i + span]
        rng.shuffle(seg)
    return order.astype(np.int64)


class Cache:
    """A tflocal HDF5 cache (see :mod:`cache_tools.store.schema` for the layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"cache {self.path} not found: build it with `tflocal cache`")
        self._file: h5py.File | None = None
        self._pid = -1
        self._mem: dict[str, np.ndarray] = {}
        self._sources: dict[str, ShardRows | DirectRows | None] = {}
        try:
            self._read_index()
        except (OSError, KeyError, ValueError, TypeError) as err:
            self.close()
            first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise CacheFormatError(
                f"{self.path} is not a readable tflocal cache ({first}): it is not HDF5, or truncated or "
                "damaged; build it again with `tflocal cache` (or give the right file)"
            ) from None

    def _read_index(self) -> None:
        f = self.file
        self.attrs: dict[str, Any] = decode_attrs(f.attrs)
        check_version(self.attrs, str(self.path))
        if not self.attrs.get("complete", False):
            raise CacheFormatError(
                f"{self.path} is incomplete: run the same `tflocal cache` command again to finish it"
            )
        self.image_ids = read_str(f["images/ids"])
        self.image_group = read_str(f["images/group"])
        self.strings = read_str(f["texts/strings"])
        self.offsets = f["texts/offsets"][()]
        self.image_index = f["texts/image_index"][()]
        self.positive_index = f["texts/positive_index"][()]
        self.op = read_str(f["texts/op"])
        self.kind = read_str(f["texts/kind"])
        self.n_images = len(self.image_ids)
        self.n_texts = len(self.strings)
        self.has_crops = "images/crops/global" in f
        self.crop_boxes = f["images/crops/boxes"][()] if self.has_crops else np.zeros((0, 4), np.float32)
        for name in _PAYLOAD.values():  # a payload dataset pointing past the end of a cut file
            if name in f and f[name].shape[0]:
                f[name][-1:]

    # -- file handle, per process -------------------------------------------------------
    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r", rdcc_nbytes=64 << 20, rdcc_nslots=10007)
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = -1
        return state

    def close(self) -> None:
        for source in self._sources.values():
            if source is not None:
                source.close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Cache({str(self.path)!r}, encoder={self.attrs.get('encoder')!r}, space={self.attrs.get('space')!r}, "
            f"images={self.n_images}, texts={self.n_texts})"
        )

    # -- identity -------------------------------------------------------------------------
    @property
    def signature(self) -> dict[str, Any]:
        return encoder_signature(self.attrs)

    @cached_property
    def spec(self) -> CacheSpec:
        """What this cache's embeddings are (token space, global space, grid, dims, context)."""
        return CacheSpec.from_attrs(self.attrs)

    # -- small per-item data ---------------------------------------------------------------
    @cached_property
    def _image_meta(self) -> np.ndarray:
        return read_str(self.file["images/meta"])

    @cached_property
    def _text_meta(self) -> np.ndarray:
        return read_str(self.file["texts/meta"])

    def image_meta(self, i: int) -> dict[str, Any]:
        return json.loads(self._image_meta[i])

    def text_meta(self, t: int) -> dict[str, Any]:
        return json.loads(self._text_meta[t])

    def token_strings(self, t: int) -> list[str]:
        return json.loads(self.file["texts/token_strings"][t])

    def token_strings_batch(self, idx: Sequence[int] | np.ndarray) -> list[list[str]]:
        """The token strings of texts ``idx`` (B lists). Caches in RAM keep the whole column."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if self.in_memory:
            if "token_strings" not in self._mem:
                self._mem["token_strings"] = read_str(self.file["texts/token_strings"])
            raw = self._mem["token_strings"][idx]
        elif idx.size:
            u, inv = np.unique(idx, return_inverse=True)
            raw = self.file["texts/token_strings"].asstr()[u][inv.reshape(-1)]
        else:
            raw = []
        return [json.loads(s) for s in raw]

    @cached_property
    def image_box(self) -> np.ndarray:
        """[N_img, 4] crop boxes applied before encoding (NaN where none)."""
        return self.file["images/box"][()]

    @cached_property
    def truncated(self) -> np.ndarray:
        return self.file["texts/truncated"][()]

    @cached_property
    def skipped(self) -> list[tuple[str, str]]:
        sk = self.file["skipped"]
        return list(zip(read_str(sk["item"]).tolist(), read_str(sk["reason"]).tolist()))

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per text: int64 [N_txt]."""
        return np.diff(self.offsets)

    # -- payload ---------------------------------------------------------------------------
    def _dset(self, key: str) -> h5py.Dataset | np.ndarray | ShardRows | DirectRows:
        """Where payload ``key``'s rows are read from: memory, the shard files of a merged cache,
        this file's bytes (:mod:`cache_tools.store.direct_rows`), or h5py."""
        if key in self._mem:
            return self._mem[key]
        name = _PAYLOAD[key]
        if name not in self._sources:
            d = self.file[name]
            self._sources[name] = shard_rows(d, self.path.parent) or direct_rows(d)
        return self._sources[name] or self.file[name]

    def _rows(self, key: str, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows ``idx`` [B] of payload ``key`` -> [B, ...]."""
        return read_from(self._dset(key), np.asarray(idx))

    def patches(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """float16 [B, P, D_img] patch tokens of images ``idx``."""
        return self._rows("patches", idx)

    def image_global(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 [B, D_gi] global image embeddings (as the model returns them)."""
        return self._rows("image_global", idx).astype(np.float32, copy=False)

    def text_global(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 [B, D_gt] global text embeddings (as the model returns them)."""
        return self._rows("text_global", idx).astype(np.float32, copy=False)

    def crops_global(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 [B, C, D_gi] global embeddings of the crops ``crop_boxes`` [C, 4]."""
        if not self.has_crops:
            raise UserError(f"cache {self.path} has no crops: rebuild it with `tflocal cache --crops`")
        return self._rows("crops_global", idx).astype(np.float32, copy=False)

    def tokens(self, idx: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """B float16 arrays [T_t, D_txt]: the real tokens of texts ``idx``."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        starts, stops = self.offsets[idx], self.offsets[idx + 1]
        rows = (
            np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])
            if idx.size
            else np.empty(0, np.int64)
        )
        flat = self._rows("tokens", rows)
        out, pos = [], 0
        for n in (stops - starts).tolist():
            out.append(flat[pos : pos + n])
            pos += n
        return out

    def padded_tokens(
        self, idx: Sequence[int] | np.ndarray, max_len: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of texts ``idx`` right-padded: (float16 [B, T, D_txt], bool mask [B, T], True = real).

        ``T`` is the longest text in the batch, or ``max_len`` (longer texts are cut).
        """
        return pad_tokens(self.tokens(idx), int(self.attrs["text_dim"]), max_len)

    @property
    def block_rows(self) -> int:
        """Rows per shuffle block for :func:`chunk_shuffle`: whole HDF5 chunks of
        ``images/patches``, about 2 MiB in all (a dense read; random rows stay cheap because
        the chunks themselves are small)."""
        d = self.file["images/patches"]
        chunk = int(d.chunks[0]) if d.chunks else 64
        row_bytes = max(1, int(np.prod(d.shape[1:], dtype=np.int64)) * d.dtype.itemsize)
        return chunk * max(1, (2 << 20) // (chunk * row_bytes))

    def payload_bytes(self) -> int:
        f = self.file
        return sum(f[name].size * f[name].dtype.itemsize for name in _PAYLOAD.values() if name in f)

    def load_into_memory(self, max_bytes: int | None = None) -> Cache:
        """Read the payload datasets into RAM (refused when larger than ``max_bytes``)."""
        need = self.payload_bytes()
        if max_bytes is not None and need > max_bytes:
            raise UserError(
                f"cache {self.path} needs {need / 2**30:.1f} GiB in RAM, more than the {max_bytes / 2**30:.1f} GiB allowed"
            )
        f = self.file
        for key, name in _PAYLOAD.items():
            if name in f and key not in self._mem:
                self._mem[key] = f[name][()]
        return self

    @property
    def in_memory(self) -> bool:
        return "patches" in self._mem


def open_cache(path: str | Path | Sequence[str | Path]) -> Cache:
    """Open a cache file; a list of shard files opens as one logical cache (virtual, no copy)."""
    if isinstance(path, (list, tuple)):
        if len(path) == 1:
            return Cache(path[0])
        tmpdir = Path(tempfile.mkdtemp(prefix="tflocal-shards-"))
        return Cache(merge_shards(tmpdir / "merged.h5", [Path(p).resolve() for p in path]))
    return Cache(path)
