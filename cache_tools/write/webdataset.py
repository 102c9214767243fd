"""Caching a ``wds:`` source shard by shard: each process its own tar shards, resumable per shard.

``build_per_shard(cfg, source, encoder, state)`` is what :func:`cache_tools.write.build.build_cache`
runs for a source with ``per_shard = True`` (:class:`~cache_tools.sources.wds.WdsSource`). Tar
shard ``i`` goes to process ``i % num_processes`` (``accelerate launch``: each process opens only
its own shards) and is written with :func:`~cache_tools.write.writer.write_cache` to
``<out>.wds/<i:06d>-<shard name>.h5``: a finished shard cache is kept, so an interrupted run
resumes at the first unfinished shard (and inside it at the writer's last finished part). What
a shard could not use (corrupt samples, a broken tar) is stored in that shard cache's
``skipped``. When every process is done, the main process concatenates the shard caches in
shard order into ``<out>`` (one ordinary cache) and removes the folder.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import h5py

from cache_tools.errors import UserError
from cache_tools.store.schema import decode_attrs
from cache_tools.write.writer import WriteSummary, write_cache


def shard_cache(out: Path, index: int, name: str) -> Path:
    """Where shard ``index`` (file name ``name``) is cached before the final concatenation."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    return out.with_name(out.name + ".wds") / f"{index:06d}-{safe}.h5"


def summary_of(path: Path, seconds: float, resumed: int) -> WriteSummary:
    with h5py.File(path, "r") as f:
        a = f.attrs
        return WriteSummary(
            path,
            int(a["n_images"]),
            int(a["n_texts"]),
            int(a["n_tokens"]),
            int(a["n_skipped"]),
            int(a["n_truncated"]),
            path.stat().st_size,
            seconds,
            resumed,
        )


class _ShardRecords:
    """The records of one shard, iterable (no length: the writer streams them)."""

    def __init__(self, source: Any, index: int, skipped: list[tuple[str, str]]):
        self.source, self.index, self.skipped = source, index, skipped

    def __iter__(self):
        self.skipped.clear()
        return self.source.shard_records(self.index, self.skipped)


def build_per_shard(cfg: Any, source: Any, encoder: Any, state: Any, progress: bool = True) -> WriteSummary:
    """Cache ``source`` (a per-shard source) into ``cfg.out``; see the module docstring.

    Args:
        cfg: the :class:`~cache_tools.config.CacheConfig` (out, batch_size, crops, num_workers, data).
        state: ``accelerate.PartialState`` (or anything with process_index, num_processes,
            is_main_process, is_local_main_process and wait_for_everyone()).
    """
    import time

    from cache_tools.store.shards import concat_caches

    t0 = time.perf_counter()
    if cfg.limit:
        raise UserError(
            "--limit does not apply to wds: sources; pick fewer shards with the brace range instead"
        )
    out = Path(cfg.out)
    if out.is_file():
        with h5py.File(out, "r") as f:
            attrs = decode_attrs(f.attrs)
        if attrs.get("complete") and attrs.get("source") == cfg.data:
            return summary_of(out, 0.0, -1)
        raise UserError(f"{out} exists and was made by another command: remove it or choose another --out")
    rank, world = state.process_index, state.num_processes
    paths = [shard_cache(out, i, n) for i, n in enumerate(source.shard_names())]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    resumed, mine = 0, []
    for i in range(rank, len(paths), world):
        if paths[i].is_file():
            resumed += 1
        skipped: list[tuple[str, str]] = []
        s = write_cache(
            _ShardRecords(source, i, skipped),
            encoder,
            paths[i],
            batch_size=cfg.batch_size,
            crops=cfg.crops,
            source=f"{cfg.data} shard {source.shards[i]}",
            config=asdict(cfg),
            num_workers=cfg.num_workers,
            progress=progress and state.is_local_main_process,
            skipped_from_source=lambda skipped=skipped: list(skipped),
        )
        mine.append(s)
    state.wait_for_everyone()
    if state.is_main_process:
        concat_caches(paths, out, {"source": cfg.data, "config": asdict(cfg), "wds_shards": len(paths)})
        shutil.rmtree(paths[0].parent, ignore_errors=True)
    state.wait_for_everyone()
    if state.is_main_process:
        return summary_of(out, time.perf_counter() - t0, resumed)
    # another process: what it wrote itself (its shard caches are gone into <out> by now)
    fields = ("n_images", "n_texts", "n_tokens", "n_skipped", "n_truncated", "bytes")
    totals = [sum(getattr(s, k) for s in mine) for k in fields]
    return WriteSummary(out, *totals, time.perf_counter() - t0, resumed)  # type: ignore[arg-type]
