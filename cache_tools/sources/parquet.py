"""Reading Hugging Face parquet downloads: rows as dicts, image cells as PIL images.

``pyarrow`` is optional: asking for a parquet file without it is a :class:`UserError` that says
``pip install pyarrow``. An HF ``Image`` column is stored as a struct ``{"bytes", "path"}``;
:func:`decode_image` turns it into a lazily decoded ``PIL.Image`` (or a path when only a path
is stored).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.base import resolve_path


def require_pyarrow() -> Any:
    """Import and return ``pyarrow.parquet``, or raise a UserError telling how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise UserError(
            "reading parquet files needs pyarrow: pip install pyarrow "
            "(or convert the dataset to JSONL with image paths)"
        ) from err
    return pq


def parquet_files(root: Path, split: str | None = None) -> list[Path]:
    """The ``*.parquet`` files of an HF download (``root`` itself, ``root/*.parquet`` or
    ``root/data/*.parquet``), sorted; ``split`` keeps the files named ``<split>-*``/``<split>.parquet``."""
    if root.is_file():
        files = [root] if root.suffix == ".parquet" else []
    else:
        files = sorted(root.glob("*.parquet")) or sorted((root / "data").glob("*.parquet"))
    if split is not None:
        files = [f for f in files if parquet_split(f) == split]
    return files


def parquet_split(file: Path) -> str:
    """HF shard name -> split: ``test-00000-of-00001.parquet`` -> ``test``."""
    return file.stem.split("-", 1)[0]


def iter_parquet_rows(files: list[Path], batch_size: int = 64) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """Yield ``(file, row_index_within_file, row)`` for every row of every file, in order."""
    pq = require_pyarrow()
    for file in files:
        row = 0
        for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_size):
            for rec in batch.to_pylist():
                yield file, row, rec
                row += 1


def decode_image(value: Any, root: Path) -> Any:
    """An image cell -> ``PIL.Image`` (from bytes), a resolved path string, or ``None``.

    Raises:
        ValueError: the bytes are not an image PIL can open.
    """
    from PIL import Image

    if isinstance(value, dict):
        if value.get("bytes"):
            value = value["bytes"]
        elif value.get("path"):
            value = value["path"]
        else:
            return None
    if isinstance(value, (bytes, bytearray)):
        try:
            return Image.open(io.BytesIO(value))
        except Exception as err:  # noqa: BLE001 - PIL raises several types for bad bytes
            raise ValueError(f"undecodable image bytes ({type(err).__name__})") from err
    if isinstance(value, str) and value:
        return resolve_path(value, root)
    return None
