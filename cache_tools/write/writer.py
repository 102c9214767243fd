"""Chunked, resumable, shard-aware HDF5 cache writer.

How a run is made safe to kill at any point (``kill -9`` included):

* records are encoded in fixed *parts* (a few hundred records; the part boundaries and the
  batches inside them depend only on the plan, so a resumed run encodes exactly the batches an
  uninterrupted run would);
* the parts go into one growing file, ``OUT.parts/cache.h5``, so each byte is written once: the
  first part makes it (under a temporary name, renamed atomically), each later part is appended
  to it under an undo journal (:mod:`cache_tools.write.journal`), which a resumed run applies
  first, so the file always holds whole parts and a kill loses the part being added at most;
* when all parts are there its attributes are set (again journaled), it is renamed to ``OUT``
  and the parts folder is removed. Starting the same command again skips finished parts.

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

import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from cache_tools.store.h5io import chunk_rows, extend
from cache_tools.store.schema import FORMAT_VERSION, decode_attrs, encode_attr, encoder_signature
from cache_tools.store.shards import PAYLOAD, completed_attrs, concat_caches, row_bases
from cache_tools.write.arena import Arena
from cache_tools.write.arrays import append_arrays, write_arrays
from cache_tools.write.journal import journaled, recover
from cache_tools.write.parts import ImageLoader, Part, encode_part

PART_BYTES = 256 << 20
"""Target payload per part; a part is also the most work a kill can lose."""


def _part_columns(part: Part, encoder: Encoder, crops: bool) -> tuple[tuple, dict[str, Any]]:
    """A part's columns as ``write_arrays`` and ``append_arrays`` take them: (args, kwargs)."""
    meta = encoder.metadata()
    n_img = len(part.image_ids)
    p = encoder.grid[0] * encoder.grid[1]
    args = (
        {k: v for k, v in meta.items() if k != "preprocess"},
        part.image_ids,
        _rows_of(part.patches, (p, encoder.image_dim), np.float16),
        np.stack(part.image_global) if n_img else np.zeros((0, encoder.global_image_dim), np.float32),
        part.texts,
        part.tokens,
        _rows_of(part.text_global, (encoder.global_text_dim,), np.float32),
        part.image_index,
        part.positive_index,
    )
    no_crops = np.zeros((0, len(crop_boxes()), encoder.global_image_dim))
    kwargs = dict(
        op=part.op,
        kind=part.kind,
        text_meta=part.text_meta,
        image_meta=part.image_meta,
        image_group=part.image_group,
        token_strings=part.token_strings,
        truncated=part.truncated,
        image_box=np.asarray(part.image_box, np.float32).reshape(n_img, 4),
        crops_global=(np.stack(part.crops_global) if n_img else no_crops) if crops else None,
        skipped=part.skipped,
    )
    return args, kwargs


def _rows_of(rows: list[np.ndarray] | np.ndarray, tail: tuple[int, ...], dtype) -> np.ndarray:
    """A part's column as one array [N, *tail]: as it is when encoded into one, else stacked."""
    if isinstance(rows, np.ndarray):
        return rows
    return np.stack(rows) if len(rows) else np.zeros((0, *tail), dtype)


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
            run = _Run(
                records=records,
                encoder=encoder,
                target=target,
                shard=shard,
                batch_size=batch_size,
                crops=crops,
                source=source,
                config=config,
                num_workers=num_workers,
                part_records=part_records,
                progress=progress,
                skipped_from_source=skipped_from_source,
                t0=t0,
            )
            return _write_locked(run)
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
    columns = [part.patches, part.image_global, part.crops_global, part.tokens, part.text_global]
    strings = [*part.texts, *part.token_strings, *part.text_meta, *part.image_meta, *part.image_ids]
    return (
        sum(
            c.nbytes if isinstance(c, np.ndarray) else sum(int(np.asarray(a).nbytes) for a in c)
            for c in columns
        )
        + sum(len(x) + 16 for x in strings)
        + 64 * len(part.texts)
    )


@dataclass(frozen=True)
class _Run:
    """What one locked run was asked to do: the arguments of :func:`write_cache`.

    ``target`` is the file this process writes (the cache, or its shard); ``shard`` is
    ``(index, count)``; ``t0`` is the run's start (``time.perf_counter()``).
    """

    records: Iterable[ImageRecord]
    encoder: Encoder
    target: Path
    shard: tuple[int, int]
    batch_size: int
    crops: bool
    source: str
    config: dict[str, Any] | None
    num_workers: int
    part_records: int | None
    progress: bool
    skipped_from_source: Callable[[], list[tuple[str, str]]] | None
    t0: float


@dataclass(frozen=True)
class _Plan:
    """Where a run's records go: records ``[lo, hi)`` of the source (``hi`` None: to its end, whose
    length ``total`` is unknown), in parts of ``part_size`` records under ``parts_dir``.
    ``settings`` is the plan kept in ``plan.json`` and in the finished cache: a resumed run must
    match it."""

    total: int | None
    lo: int
    hi: int | None
    part_size: int
    settings: dict[str, Any]
    parts_dir: Path

    @property
    def n_range(self) -> int | None:
        """Records this run encodes (None: unknown until the source ends)."""
        return None if self.hi is None else self.hi - self.lo


def _write_locked(run: _Run) -> WriteSummary:
    plan = _plan_of(run)
    target = run.target
    if target.exists():
        if _finished(target, plan.settings):
            shutil.rmtree(plan.parts_dir, ignore_errors=True)  # a run killed after its final rename left it
            return WriteSummary.of(target, 0.0, -1)
        raise UserError(f"{target} exists and was made by another command: remove it or choose another --out")
    if plan.total == 0:
        _no_records(run.source, run.skipped_from_source)
    target.parent.mkdir(parents=True, exist_ok=True)
    _claim_parts_dir(plan)
    n_parts, n_parts_done, finalized = _encode_parts(run, plan)
    if not n_parts:
        shutil.rmtree(plan.parts_dir, ignore_errors=True)
        _no_records(run.source, run.skipped_from_source)
    _assemble_run(run, plan, finalized)
    return WriteSummary.of(target, time.perf_counter() - run.t0, n_parts_done)


def _plan_of(run: _Run) -> _Plan:
    """The record range, part size and recorded settings of ``run``."""
    records, encoder = run.records, run.encoder
    index, count = run.shard
    total = len(records) if hasattr(records, "__len__") else None  # type: ignore[arg-type]
    lo, hi = 0, total
    if count > 1:
        if total is None:
            raise ValueError("sharded caching needs a source with a length")
        lo, hi = total * index // count, total * (index + 1) // count
    part_size = run.part_records or _part_records(encoder, run.batch_size, run.crops)
    settings = {
        "signature": encoder_signature(encoder.metadata()),
        "source": run.source,
        "batch_size": run.batch_size,
        "part_records": part_size,
        "crops": run.crops,
        "range": [lo, hi],
        "format_version": FORMAT_VERSION,
    }
    parts_dir = run.target.with_name(run.target.name + ".parts")
    return _Plan(total, lo, hi, part_size, settings, parts_dir)


def _claim_parts_dir(plan: _Plan) -> None:
    """Create the parts folder and its ``plan.json``, or check that an unfinished run there has this plan."""
    plan.parts_dir.mkdir(exist_ok=True)
    plan_file = plan.parts_dir / "plan.json"
    settings = plan.settings
    if plan_file.exists():
        old = json.loads(plan_file.read_text())
        if old != settings:
            diff = sorted(k for k in settings if old.get(k) != settings[k])
            raise UserError(
                f"{plan.parts_dir} holds an unfinished run with other settings ({', '.join(diff)}): "
                "run the same command again to resume it, or delete that folder to start over"
            )
    else:
        tmp = plan_file.with_name("plan.json.tmp")
        tmp.write_text(json.dumps(settings, indent=1))
        os.replace(tmp, plan_file)


def _warner() -> Callable[[str], None]:
    """A warning printer that shows the first ten warnings, then one line saying more are hidden."""
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

    return warn


def _source_iter(run: _Run, plan: _Plan) -> Iterator[ImageRecord]:
    """An iterator over the source positioned at record ``plan.lo``."""
    records = run.records
    count = run.shard[1]
    records_list = records if isinstance(records, Sequence) else None
    it = iter(records_list[plan.lo : plan.hi] if records_list is not None and count > 1 else records)
    if records_list is None and count > 1:
        for _ in range(plan.lo):
            next(it)
    return it


def _chunks(it: Iterator[ImageRecord], part_size: int, n_range: int | None) -> Iterator[list[ImageRecord]]:
    """The run's parts, read from ``it`` one at a time: ``part_size`` records each (the last may be
    shorter), ``n_range`` records in all (None: to the end of ``it``). Reads nothing past them."""
    i = 0
    while True:
        chunk: list[ImageRecord] = []
        for rec in it:
            chunk.append(rec)
            if len(chunk) == part_size or (n_range is not None and i * part_size + len(chunk) >= n_range):
                break
        if not chunk:
            return
        yield chunk
        i += 1
        if n_range is not None and i * part_size >= n_range:
            return


PARTS_DONE = "parts_done"
"""Attribute of the growing file's ``texts`` group: how many parts it holds (absent: all of them,
with the cache's attributes set; only the rename to the output is left)."""


def _growing(plan: _Plan) -> Path:
    """The file the run's parts go into, one after another: the cache once they are all there."""
    return plan.parts_dir / "cache.h5"


def _parts_done(grow: Path) -> tuple[int, bool]:
    """(parts the growing file holds, whether it is finished), after undoing an interrupted append."""
    recover(grow)
    if not grow.exists():
        return 0, False
    with h5py.File(grow, "r") as f:
        done = f["texts"].attrs.get(PARTS_DONE)
    return (sys.maxsize, True) if done is None else (int(done), False)


def _add_part(grow: Path, i: int, part: Part, encoder: Encoder, crops: bool) -> None:
    """Write part ``i`` into the growing file: part 0 makes it (through a temporary name); a later
    part is appended to it under an undo journal, so a kill loses that part only. Each part's bytes
    are written to disk once, straight from the part's arrays, its payload chunks past the page
    cache where the file system allows (:mod:`cache_tools.write.direct_io`)."""
    args, kwargs = _part_columns(part, encoder, crops)
    if i == 0:
        tmp = grow.with_name(grow.name + ".tmp")
        with journaled(tmp, create=True) as f:  # a new file: journals nothing; chunks go direct
            write_arrays(f, *args, **kwargs)
            f["texts"].attrs[PARTS_DONE] = 1
        os.replace(tmp, grow)
        return
    with journaled(grow) as f:
        append_arrays(f, *args, **kwargs)
        f["texts"].attrs[PARTS_DONE] = i + 1


def _collect_between_parts(gc_on: bool) -> None:
    """Python's cyclic garbage collector runs once a part, not during its encoding: a part
    makes some 10^6 small objects (captions, token strings, metadata), and the automatic full
    collections over them took ~20% of the encoding's time (``bench/scale.py``)."""
    if gc_on:
        gc.collect()


def _encode_parts(run: _Run, plan: _Plan) -> tuple[int, int, bool]:
    """Encode every part the growing file does not hold yet and add it there (in a writer thread,
    so a part's disk writes overlap the next part's encoding); returns how many parts the run
    has, how many an earlier run had finished, and whether the file is finished."""
    warn = _warner()
    n_parts_done = 0
    bar = progress_bar(
        total=plan.n_range,
        desc=f"caching {run.target.name}",
        unit="img",
        disable=not run.progress,
        smoothing=0.1,
    )
    loader = ImageLoader(run.encoder, run.crops)
    pool = ThreadPoolExecutor(max_workers=max(1, run.num_workers))
    grow = _growing(plan)
    done, finalized = _parts_done(grow)
    n_parts = 0
    arenas = (Arena(), Arena())  # part i is encoded into arenas[i % 2] while part i - 1 is written
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer")
    writing: Future | None = None  # the part being added to the file while the next is encoded
    gc_was_on = gc.isenabled()
    gc.disable()  # see _collect_between_parts
    try:
        it = _source_iter(run, plan)
        for i, chunk in enumerate(_chunks(it, plan.part_size, plan.n_range)):
            n_parts += 1
            if i < done:
                n_parts_done += 1
                bar.update(len(chunk))
            else:
                arena = arenas[i % 2]
                arena.reset()  # part i - 2, which used it, is in the file: writing.result() was awaited
                part = encode_part(chunk, run.encoder, run.batch_size, loader, pool, bar, warn, arena)
                if writing is not None:
                    writing.result()  # parts go in in order, one in flight
                check_space(grow, part_bytes(part), "the cache part", SPACE_ADVICE)
                writing = writer.submit(_add_part, grow, i, part, run.encoder, run.crops)
                _collect_between_parts(gc_was_on)
        if writing is not None:
            writing.result()
        if run.shard[0] == 0:  # read the source to its end: entries it skips after the last record count too
            for _ in it:
                pass
    finally:
        if gc_was_on:
            gc.enable()
        writer.shutdown(wait=True)  # an append under way finishes (or its journal undoes it after a kill)
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return n_parts, n_parts_done, finalized


def _assemble_run(run: _Run, plan: _Plan, finalized: bool) -> None:
    """Finish the growing file as ``run.target`` (its attributes set and ``skipped`` completed, as
    :func:`concat_caches` gives them; then renamed) and remove the parts folder. When its payload chunks are
    not the concatenation's (a first part smaller than a chunk), it is copied instead."""
    index, count = run.shard
    source_skipped = run.skipped_from_source() if run.skipped_from_source else []
    attrs = {
        **run.encoder.metadata(),
        "source": run.source,
        "config": run.config or {},
        "plan": plan.settings,
        "shard": [index, count],
    }
    extra = source_skipped if index == 0 else []
    grow = _growing(plan)
    if not finalized and not _payload_chunks_match([grow]):
        check_space(run.target, grow.stat().st_size, "the cache", SPACE_ADVICE)
        # a copy: the texts group's attributes (PARTS_DONE) are not copied
        concat_caches([grow], run.target, attrs, extra_skipped=extra)
    else:
        if not finalized:
            with journaled(grow) as f:
                _complete(f, attrs, extra)
                del f["texts"].attrs[PARTS_DONE]
        os.replace(grow, run.target)
    shutil.rmtree(plan.parts_dir, ignore_errors=True)


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


def _payload_chunks_match(parts: Sequence[Path]) -> bool:
    """Whether every payload dataset of ``parts[0]`` has the chunk shape that
    :func:`concat_caches` gives the concatenation of ``parts``."""
    files = [h5py.File(p, "r") for p in parts]
    try:
        for name in PAYLOAD:
            if name not in files[0]:
                continue
            d = files[0][name]
            total = sum(f[name].shape[0] for f in files if name in f)
            row_bytes = int(np.prod(d.shape[1:], dtype=np.int64)) * d.dtype.itemsize
            if total == 0 or d.chunks is None or d.chunks[0] != chunk_rows(row_bytes, total):
                return False
        return True
    finally:
        for f in files:
            f.close()


def _complete(f: h5py.File, attrs: dict[str, Any], extra_skipped: Sequence[tuple[str, str]]) -> None:
    """Add ``extra_skipped`` to the part cache open in ``f`` and set the root attributes
    ``concat_caches`` gives a concatenation: the first part's, then ``attrs``, then the counts."""
    merged = {**decode_attrs(f.attrs), **attrs}
    for key, col in (("item", 0), ("reason", 1)):
        if extra_skipped:
            extend(f["skipped"][key], [s[col] for s in extra_skipped])
    merged.update(completed_attrs(f, *row_bases([f])))
    for k, v in merged.items():
        f.attrs[k] = encode_attr(v)
