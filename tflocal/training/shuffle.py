"""Which epoch shuffle a training run uses: full permutation or chunk-level (``data.shuffle``)."""

from __future__ import annotations

from typing import Any

AUTO_MEMORY_SHARE = 0.5
"""``data.shuffle: auto`` picks chunk shuffle when the cache's payload exceeds this share of
MemAvailable."""


def mem_available() -> int | None:
    """Bytes of MemAvailable from /proc/meminfo, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def shuffle_chunk_for(
    mode: str,
    shuffle_chunk: int,
    cache: Any,
    n_units: int,
    in_memory: bool,
    available: int | None = None,
    share: float = AUTO_MEMORY_SHARE,
) -> int:
    """Units per shuffle block for ``BatchDataset`` (0 = full shuffle).

    ``shuffle_chunk > 0`` is used as given (chunk shuffle). Otherwise ``mode`` decides:
    ``full`` -> 0; ``chunk`` -> units per image x ``cache.block_rows``; ``auto`` -> chunk when the
    cache is read from disk and its payload bytes exceed ``share`` x ``available`` (MemAvailable
    when None), full otherwise.
    """
    if shuffle_chunk > 0:
        return shuffle_chunk
    if mode == "full":
        return 0
    if mode == "auto":
        if in_memory or getattr(cache, "in_memory", False):
            return 0
        avail = mem_available() if available is None else available
        if avail is None or cache.payload_bytes() <= share * avail:
            return 0
    n_images = max(1, int(cache.file["images/ids"].shape[0]))
    per_image = max(1, round(n_units / n_images))
    return per_image * int(cache.block_rows)
