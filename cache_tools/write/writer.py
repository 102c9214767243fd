"""Chunked, resumable, shard-aware HDF5 cache writer.

How a run is made safe to kill at any point (``kill -9`` included):

* records are encoded in fixed *parts* (a few hundred records; the part boundaries and the
  batches inside them depend only on the plan, so a resumed run encodes exactly the batches an
  uninterrupted run would);
* each finished part is written to ``OUT.parts/part-NNNNNN.h5`` under a temporary name and
  renamed atomically, so a part file either is complete or does not exist;
* when all parts exist they are assembled into ``OUT`` (again through a temporary name) and the
  parts folder is removed. Starting the same command again skips finished parts.

What is guaranteed: a resumed run writes a file identical (every dataset) to an uninterrupted
run of the same *plan* (encoder signature, source, batch size, part size, crops, record range);
a rerun with another plan is refused. Image rows do not depend on the part size (fixed batches
from each part's start); caption rows may differ by float rounding across part sizes, because
captions are batched within a part. Only one process writes an output at a time
(:class:`cache_tools.infra.locks.OutputLock`, taken before anything is touched), and free space is
checked before each file is started (:mod:`cache_tools.infra.space`).

With ``accelerate launch`` (or ``shard=(index, count)``) each process takes one contiguous
range of records and writes one shard ``OUT.shardIIIII-of-NNNNN.h5``; the main process then
writes ``OUT`` as a small file whose payload datasets are HDF5 virtual datasets over the shards
(:func:`cache_tools.store.shards.merge_shards`), so the shards open as one cache without copying.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from cache_tools.encoders.base import Encoder
from cache_tools.encoders.images import crop_boxes
from cache_tools.errors import UserError
from cache_tools.infra.locks import OutputLock
from cache_tools.infra.progress import progress as progress_bar
from cache_tools.infra.space import check_space, no_space, space_reason
from cache_tools.sources.records import ImageRecord
from cache_tools.store.schema import FORMAT_VERSION, encoder_signature
from cache_tools.store.shards import concat_caches
from cache_tools.write.arrays import write_arrays
from cache_tools.write.parts import ImageLoader, Part, encode_part

PART_BYTES = 256 << 20
"""Target payload per part; a part is also the most work a kill can lose."""


def _write_part(path: Path, part: Part, encoder: Encoder, crops: bool) -> None:
    meta = encoder.metadata()
    n_img = len(part.image_ids)
    p = encoder.grid[0] * encoder.grid[1]
    write_arrays(
        path,
        {k: v for k, v in meta.items() if k != "preprocess"},
        part.image_ids,
        np.stack(part.patches) if n_img else np.zeros((0, p, encoder.image_dim), np.float16),
        np.stack(part.image_global) if n_img else np.zeros((0, encoder.global_image_dim), np.float32),
        part.texts,
        part.tokens,
        np.stack(part.text_global) if part.texts else np.zeros((0, encoder.global_text_dim), np.float32),
        part.image_index,
        part.positive_index,
        op=part.op,
        kind=part.kind,
        text_meta=part.text_meta,
        image_meta=part.image_meta,
        image_group=part.image_group,
        token_strings=part.token_strings,
        truncated=part.truncated,
        image_box=np.asarray(part.image_box, np.float32).reshape(n_img, 4),
        crops_global=(
            np.stack(part.crops_global)
            if n_img
            else np.zeros((0, len(crop_boxes()), encoder.global_image_dim))
        )
        if crops
        else None,
        skipped=part.skipped,
    )


def _part_records(encoder: Encoder, batch_size: int, crops: bool) -> int:
    """Records per part: ~PART_BYTES of payload, a multiple of the batch size."""
    per_image = encoder.grid[0] * encoder.grid[1] * encoder.image_dim * 2 + 64 * encoder.text_dim * 2
    if crops:
        per_image += len(crop_boxes()) * encoder.global_image_dim * 4
    n = max(1, PART_BYTES // per_image // batch_size) * batch_size
    return int(min(n, max(batch_size, 4096)))


@dataclass
class WriteSummary:
    """What a finished run wrote. ``resumed_parts``: parts found done from an earlier run, or -1
    when the whole cache was already complete (nothing was done)."""

    path: Path
    n_images: int
    n_texts: int
    n_tokens: int
    n_skipped: int
    n_truncated: int
    bytes: int
    seconds: float
    resumed_parts: int

    @classmethod
    def of(cls, path: Path, seconds: float, resumed_parts: int) -> WriteSummary:
        """The summary of the finished cache at ``path``, read from its attributes."""
        with h5py.File(path, "r") as f:
            a = f.attrs
            counts = [int(a[k]) for k in ("n_images", "n_texts", "n_tokens", "n_skipped", "n_truncated")]
        return cls(path, *counts, path.stat().st_size, seconds, resumed_parts)

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.n_images} images, {self.n_texts} texts ({self.n_tokens} tokens), "
            f"{self.n_skipped} skipped, {self.n_truncated} truncated, {self.bytes / 2**20:.1f} MiB, "
            f"{self.seconds:.1f}s"
            + (
                " (already complete: nothing to do)"
                if self.resumed_parts < 0
                else f" (resumed: {self.resumed_parts} parts were already done)"
                if self.resumed_parts
                else ""
            )
        )


def shard_path(out: Path, index: int, count: int) -> Path:
    return out.with_name(f"{out.stem}.shard{index:05d}-of-{count:05d}{out.suffix}")


def write_cache(
    records: Iterable[ImageRecord],
    encoder: Encoder,
    out_path: str | Path,
    batch_size: int = 32,
    crops: bool = False,
    source: str = "",
    config: dict[str, Any] | None = None,
    shard: tuple[int, int] = (0, 1),
    num_workers: int = 2,
    part_records: int | None = None,
    progress: bool = True,
    skipped_from_source: Callable[[], list[tuple[str, str]]] | None = None,
) -> WriteSummary:
    """Encode ``records`` with ``encoder`` and write the cache at ``out_path`` (resumable).

    Args:
        records: the source's records, in a deterministic order (``len()`` used when present).
        shard: ``(index, count)``: this process encodes the index-th of ``count`` contiguous
            ranges of records into ``shard_path(out_path, index, count)`` (count 1: ``out_path``).
        part_records: records per resumable part (default: ~256 MiB of payload).
        skipped_from_source: returns what the source itself skipped while iterating.
    Returns:
        A :class:`WriteSummary` of the file written.
    """
    t0 = time.perf_counter()
    out = Path(out_path)
    index, count = shard
    target = out if count == 1 else shard_path(out, index, count)
    lock = OutputLock(target, "`tflocal cache` run", LOCK_ADVICE)
    with lock:  # before touching anything: a second writer stops here
        try:
            return _write_locked(
                records, encoder, target, shard, batch_size, crops, source, config, num_workers,
                part_records, progress, skipped_from_source, t0,
            )  # fmt: skip
        except OSError as err:
            if not no_space(err):
                raise
            for tmp in target.parent.glob(f"{target.name}*.tmp"):
                tmp.unlink(missing_ok=True)
            parts_dir = target.with_name(target.name + ".parts")
            for tmp in parts_dir.glob("*.tmp"):
                tmp.unlink(missing_ok=True)
            raise UserError(
                f"no space left on the disk of {target} ({space_reason(err)}) while writing it: {SPACE_ADVICE}"
            ) from None


LOCK_ADVICE = "Wait for it to finish (or stop it), or choose another --out"
SPACE_ADVICE = "Free some space and run the same command again: the finished parts are kept"


def part_bytes(part: Part) -> int:
    """About how many bytes the part's file takes (payload arrays and strings)."""
    arrays = [*part.patches, *part.image_global, *part.crops_global, *part.tokens, *part.text_global]
    strings = [*part.texts, *part.token_strings, *part.text_meta, *part.image_meta, *part.image_ids]
    return (
        sum(int(np.asarray(a).nbytes) for a in arrays)
        + sum(len(x) + 16 for x in strings)
        + 64 * len(part.texts)
    )


def _write_locked(
    records: Iterable[ImageRecord],
    encoder: Encoder,
    target: Path,
    shard: tuple[int, int],
    batch_size: int,
    crops: bool,
    source: str,
    config: dict[str, Any] | None,
    num_workers: int,
    part_records: int | None,
    progress: bool,
    skipped_from_source: Callable[[], list[tuple[str, str]]] | None,
    t0: float,
) -> WriteSummary:
    index, count = shard
    records_list = records if isinstance(records, Sequence) else None
    total = len(records) if hasattr(records, "__len__") else None  # type: ignore[arg-type]
    lo, hi = 0, total
    if count > 1:
        if total is None:
            raise ValueError("sharded caching needs a source with a length")
        lo, hi = total * index // count, total * (index + 1) // count
    part_size = part_records or _part_records(encoder, batch_size, crops)
    signature = encoder_signature(encoder.metadata())
    plan = {
        "signature": signature,
        "source": source,
        "batch_size": batch_size,
        "part_records": part_size,
        "crops": crops,
        "range": [lo, hi],
        "format_version": FORMAT_VERSION,
    }
    parts_dir = target.with_name(target.name + ".parts")
    if target.exists():
        if _finished(target, plan):
            shutil.rmtree(parts_dir, ignore_errors=True)  # a run killed after its final rename left it
            return WriteSummary.of(target, 0.0, -1)
        raise UserError(f"{target} exists and was made by another command: remove it or choose another --out")
    if total == 0:
        _no_records(source, skipped_from_source)
    target.parent.mkdir(parents=True, exist_ok=True)
    parts_dir.mkdir(exist_ok=True)
    plan_file = parts_dir / "plan.json"
    if plan_file.exists():
        old = json.loads(plan_file.read_text())
        if old != plan:
            diff = sorted(k for k in plan if old.get(k) != plan[k])
            raise UserError(
                f"{parts_dir} holds an unfinished run with other settings ({', '.join(diff)}): "
                "run the same command again to resume it, or delete that folder to start over"
            )
    else:
        tmp = plan_file.with_name("plan.json.tmp")
        tmp.write_text(json.dumps(plan, indent=1))
        os.replace(tmp, plan_file)

    def part_file(i: int) -> Path:
        return parts_dir / f"part-{i:06d}.h5"

    warned = [0]

    def warn(msg: str) -> None:
        warned[0] += 1
        if warned[0] <= 10:
            tqdm.write(f"tflocal cache: {msg}", file=sys.stderr)
        elif warned[0] == 11:
            tqdm.write(
                "tflocal cache: more warnings hidden; see the summary and the 'skipped' datasets",
                file=sys.stderr,
            )

    n_range = None if hi is None else hi - lo
    n_parts_done = 0
    bar = progress_bar(
        total=n_range, desc=f"caching {target.name}", unit="img", disable=not progress, smoothing=0.1
    )
    loader = ImageLoader(encoder, crops)
    pool = ThreadPoolExecutor(max_workers=max(1, num_workers))
    part_paths: list[Path] = []
    try:
        it = iter(records_list[lo:hi] if records_list is not None and count > 1 else records)
        if records_list is None and count > 1:
            for _ in range(lo):
                next(it)
        i = 0
        while True:
            chunk: list[ImageRecord] = []
            for rec in it:
                chunk.append(rec)
                if len(chunk) == part_size or (n_range is not None and i * part_size + len(chunk) >= n_range):
                    break
            if not chunk:
                break
            path = part_file(i)
            part_paths.append(path)
            if path.exists():
                n_parts_done += 1
                bar.update(len(chunk))
            else:
                part = encode_part(chunk, encoder, batch_size, loader, pool, bar, warn)
                check_space(path, part_bytes(part), "the cache part", SPACE_ADVICE)
                _write_part(path, part, encoder, crops)
            i += 1
            if n_range is not None and i * part_size >= n_range:
                break
        if index == 0:  # read the source to its end: entries it skips after the last record count too
            for _ in it:
                pass
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    if not part_paths:
        shutil.rmtree(parts_dir, ignore_errors=True)
        _no_records(source, skipped_from_source)
    source_skipped = skipped_from_source() if skipped_from_source else []
    attrs = {
        **encoder.metadata(),
        "source": source,
        "config": config or {},
        "plan": plan,
        "shard": [index, count],
    }
    check_space(target, sum(p.stat().st_size for p in part_paths), "the cache", SPACE_ADVICE)
    assemble(part_paths, target, attrs, extra_skipped=source_skipped if index == 0 else [])
    shutil.rmtree(parts_dir, ignore_errors=True)
    return WriteSummary.of(target, time.perf_counter() - t0, n_parts_done)


def _finished(target: Path, plan: dict[str, Any]) -> bool:
    """Whether ``target`` is a complete cache of this plan; UserError when it is no cache at all."""
    try:
        with h5py.File(target, "r") as f:
            return bool(f.attrs.get("complete")) and json.loads(f.attrs.get("plan", "{}")) == plan
    except (OSError, ValueError, KeyError) as err:
        raise UserError(
            f"{target} exists and is not a readable tflocal cache ({str(err).splitlines()[0][:120]}): "
            "remove it or choose another --out"
        ) from None


def _no_records(source: str, skipped_from_source: Callable[[], list[tuple[str, str]]] | None) -> None:
    skipped = skipped_from_source() if skipped_from_source else []
    first = f"; first: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
    raise UserError(
        f"{source or 'the data source'} gave no records to cache ({len(skipped)} entries skipped{first}): "
        "check the path and its format; nothing was written"
    )


def assemble(
    parts: Sequence[Path], out: Path, attrs: dict[str, Any], extra_skipped: Sequence[tuple[str, str]] = ()
) -> Path:
    """Concatenate part caches into one cache at ``out`` (indices rebased), atomically."""
    return concat_caches(parts, out, attrs, extra_skipped=extra_skipped, virtual=False)
