"""Chunked, resumable, shard-aware HDF5 cache writer.

How a run is made safe to kill at any point (``kill -9`` included):

* records are encoded in fixed *parts* (a few hundred records; the part boundaries and the
  batches inside them depend only on the plan, so a resumed run encodes exactly the batches an
  uninterrupted run would);
* each finished part is written to ``OUT.parts/part-NNNNNN.h5`` under a temporary name and
  renamed atomically, so a part file either is complete or does not exist;
* when all parts exist they are assembled into ``OUT`` (again through a temporary name) and the
  parts folder is removed. Starting the same command again skips finished parts.

With ``accelerate launch`` (or ``shard=(index, count)``) each process takes one contiguous
range of records and writes one shard ``OUT.shardIIIII-of-NNNNN.h5``; the main process then
writes ``OUT`` as a small file whose payload datasets are HDF5 virtual datasets over the shards
(:func:`cache_tools.shards.merge_shards`), so the shards open as one cache without copying.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from cache_tools import __version__
from cache_tools.encoders.base import Encoder
from cache_tools.errors import UserError
from cache_tools.h5io import create, dumps
from cache_tools.records import ImageRecord
from cache_tools.schema import FORMAT_VERSION, STR, encode_attr, encoder_signature

CROP_GRIDS = ((2, 2), (3, 3))
"""Crop grids cached with ``crops=True``: 4 + 9 = 13 crops per image."""

PART_BYTES = 256 << 20
"""Target payload per part; a part is also the most work a kill can lose."""


def crop_boxes(grids: Sequence[tuple[int, int]] = CROP_GRIDS) -> np.ndarray:
    """Crop boxes as fractions (x0, y0, x1, y1), row-major within each grid: [C, 4]."""
    boxes = []
    for gh, gw in grids:
        for r in range(gh):
            for c in range(gw):
                boxes.append((c / gw, r / gh, (c + 1) / gw, (r + 1) / gh))
    return np.asarray(boxes, dtype=np.float32)


def load_image(record: ImageRecord) -> Any:
    """Open ``record.image`` as an RGB PIL image, cropped to ``record.box`` if set."""
    from PIL import Image

    img = record.image
    if isinstance(img, (str, Path)):
        with Image.open(img) as f:
            img = f.convert("RGB")
    elif hasattr(img, "convert"):
        img = img.convert("RGB")
    else:
        raise TypeError(f"unsupported image object {type(img).__name__}")
    if record.box is not None:
        img = img.crop(tuple(float(v) for v in record.box))
    if img.width < 1 or img.height < 1:
        raise ValueError("empty image after cropping")
    return img


@dataclass
class _Part:
    """Encoded arrays of one part, indices local to the part."""

    image_ids: list[str] = field(default_factory=list)
    patches: list[np.ndarray] = field(default_factory=list)
    image_global: list[np.ndarray] = field(default_factory=list)
    image_group: list[str] = field(default_factory=list)
    image_meta: list[str] = field(default_factory=list)
    image_box: list[tuple[float, float, float, float]] = field(default_factory=list)
    crops_global: list[np.ndarray] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    token_strings: list[str] = field(default_factory=list)
    text_global: list[np.ndarray] = field(default_factory=list)
    image_index: list[int] = field(default_factory=list)
    positive_index: list[int] = field(default_factory=list)
    op: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    text_meta: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def write_arrays(
    path: str | Path,
    attrs: dict[str, Any],
    image_ids: Sequence[str],
    patches: np.ndarray,
    image_global: np.ndarray,
    texts: Sequence[str],
    tokens: Sequence[np.ndarray],
    text_global: np.ndarray,
    image_index: Sequence[int],
    positive_index: Sequence[int],
    op: Sequence[str] | None = None,
    kind: Sequence[str] | None = None,
    text_meta: Sequence[dict | str] | None = None,
    image_meta: Sequence[dict | str] | None = None,
    image_group: Sequence[str] | None = None,
    token_strings: Sequence[Sequence[str] | str] | None = None,
    truncated: Sequence[bool] | None = None,
    image_box: np.ndarray | None = None,
    crops_global: np.ndarray | None = None,
    skipped: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write a complete, valid cache directly from arrays (tests, synthetic caches, parts).

    Args:
        attrs: root attributes; must include the encoder keys of ``schema.ENCODER_KEYS``
            (missing dims are inferred from the arrays).
        patches: [N_img, P, D_img]; image_global: [N_img, D_gi].
        tokens: N_txt arrays [T_t, D_txt]; text_global: [N_txt, D_gt].
        image_index, positive_index: [N_txt] (see ``cache_tools.schema``).
        crops_global: optional [N_img, C, D_gi] for the boxes of :func:`crop_boxes`.
    """
    path = Path(path)
    n_img, n_txt = len(image_ids), len(texts)
    patches = np.asarray(patches, dtype=np.float16)
    d_img = patches.shape[2] if patches.ndim == 3 else int(attrs.get("image_dim", 0))
    d_txt = next((t.shape[1] for t in tokens), int(attrs.get("text_dim", 0)))
    if patches.shape[0] != n_img or len(image_global) != n_img:
        raise ValueError("patches / image_global rows must match image_ids")
    if len(tokens) != n_txt or len(text_global) != n_txt or len(image_index) != n_txt:
        raise ValueError("tokens / text_global / image_index rows must match texts")
    lengths = np.asarray([len(t) for t in tokens], dtype=np.int64)
    offsets = np.zeros(n_txt + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    packed = np.concatenate(tokens, axis=0) if n_txt else np.zeros((0, d_txt))
    image_global = np.asarray(image_global, dtype=np.float32).reshape(n_img, -1)
    text_global = np.asarray(text_global, dtype=np.float32).reshape(n_txt, -1)

    def _meta(items: Sequence[dict | str] | None, n: int) -> list[str]:
        if items is None:
            return ["{}"] * n
        return [m if isinstance(m, str) else dumps(m) for m in items]

    if token_strings is None:
        token_strings = [json.dumps([str(i) for i in range(n)]) for n in lengths]
    token_strings = [s if isinstance(s, str) else json.dumps(list(s)) for s in token_strings]
    full_attrs = {
        "format_version": FORMAT_VERSION,
        "space": "joint",
        "global_space": "joint",
        "image_dim": int(d_img),
        "text_dim": int(d_txt),
        "global_image_dim": int(image_global.shape[1]),
        "global_text_dim": int(text_global.shape[1]),
        "grid": attrs.get("grid") or [1, int(patches.shape[1])],
        "dtype": "float16",
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **attrs,
        "n_images": n_img,
        "n_texts": n_txt,
        "n_tokens": int(offsets[-1]),
        "n_skipped": len(skipped),
        "n_truncated": int(np.sum(truncated)) if truncated is not None else 0,
        "complete": True,
    }
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for k, v in full_attrs.items():
            f.attrs[k] = encode_attr(v)
        img = f.create_group("images")
        create(img, "ids", list(image_ids), STR)
        create(img, "patches", patches.astype(np.float16))
        create(img, "global", image_global)
        create(img, "group", list(image_group) if image_group is not None else [""] * n_img, STR)
        create(img, "meta", _meta(image_meta, n_img), STR)
        box = (
            np.full((n_img, 4), np.nan, np.float32)
            if image_box is None
            else np.asarray(image_box, np.float32)
        )
        create(img, "box", box.reshape(n_img, 4))
        if crops_global is not None:
            crops = img.create_group("crops")
            create(crops, "global", np.asarray(crops_global, dtype=np.float32))
            crops.create_dataset("boxes", data=crop_boxes())
        txt = f.create_group("texts")
        create(txt, "strings", list(texts), STR)
        create(txt, "tokens", packed.astype(np.float16))
        create(txt, "offsets", offsets)
        create(txt, "token_strings", token_strings, STR)
        create(txt, "global", text_global)
        create(txt, "image_index", np.asarray(image_index, dtype=np.int64))
        create(txt, "positive_index", np.asarray(positive_index, dtype=np.int64))
        create(txt, "op", list(op) if op is not None else [""] * n_txt, STR)
        create(txt, "kind", list(kind) if kind is not None else [""] * n_txt, STR)
        create(txt, "truncated", np.asarray(truncated if truncated is not None else [False] * n_txt, bool))
        create(txt, "meta", _meta(text_meta, n_txt), STR)
        sk = f.create_group("skipped")
        create(sk, "item", [s[0] for s in skipped], STR)
        create(sk, "reason", [s[1] for s in skipped], STR)
    os.replace(tmp, path)
    return path


def _prefetch(tasks: Iterable[Callable[[], Any]], pool: ThreadPoolExecutor, ahead: int) -> Iterator[Any]:
    """Run zero-argument callables in ``pool`` keeping ``ahead`` in flight; yield results in order."""
    pending: list = []
    for task in tasks:
        pending.append(pool.submit(task))
        if len(pending) > ahead:
            yield pending.pop(0).result()
    for fut in pending:
        yield fut.result()


class _Loader:
    """Opens and preprocesses one record's image (and crops) in a worker thread."""

    def __init__(self, encoder: Encoder, crops: bool):
        self.encoder, self.crops = encoder, crops
        self.boxes = crop_boxes() if crops else None

    def __call__(
        self, record: ImageRecord
    ) -> tuple[ImageRecord, torch.Tensor | None, torch.Tensor | None, str]:
        if record.image is None:
            return record, None, None, ""
        try:
            img = load_image(record)
            pixels = self.encoder.preprocess(img)
            crop_pixels = None
            if self.boxes is not None:
                w, h = img.size
                crop_pixels = torch.stack(
                    [
                        self.encoder.preprocess(img.crop((x0 * w, y0 * h, x1 * w, y1 * h)))
                        for x0, y0, x1, y1 in self.boxes
                    ]
                )
            return record, pixels, crop_pixels, ""
        except Exception as err:  # noqa: BLE001 - any unreadable image is skipped and recorded
            return record, None, None, f"{type(err).__name__}: {err}"


def _check_texts(record: ImageRecord, part: _Part) -> list[int]:
    """Indices of the record's texts that can be encoded; records the others in ``skipped``."""
    keep: list[int] = []
    for j, t in enumerate(record.texts):
        if not isinstance(t.text, str) or not t.text.strip():
            part.skipped.append((f"{record.id}#text{j}", "empty caption"))
            continue
        if t.positive >= 0 and (t.positive >= len(record.texts) or t.positive not in keep):
            part.skipped.append(
                (f"{record.id}#text{j}", f"negative of caption {t.positive}, which was skipped or is missing")
            )
            continue
        keep.append(j)
    return keep


@torch.inference_mode()
def _encode_part(
    records: list[ImageRecord],
    encoder: Encoder,
    batch_size: int,
    loader: _Loader,
    pool: ThreadPoolExecutor,
    bar: tqdm,
    warn: Callable[[str], None],
) -> _Part:
    part = _Part()
    batch: list[tuple[ImageRecord, torch.Tensor, torch.Tensor | None]] = []
    text_jobs: list[tuple[int, int, ImageRecord, list[int]]] = []  # (record image row or -1, ...)

    def flush_images() -> None:
        if not batch:
            return
        out = encoder.encode_images(torch.stack([b[1] for b in batch]))
        part.patches.extend(out.patches.float().cpu().numpy().astype(np.float16))
        part.image_global.extend(out.global_.float().cpu().numpy())
        if loader.crops:
            crops = torch.cat([b[2] for b in batch])
            g = torch.cat(
                [
                    encoder.encode_images(crops[i : i + batch_size]).global_
                    for i in range(0, len(crops), batch_size)
                ]
            )
            part.crops_global.extend(g.float().cpu().numpy().reshape(len(batch), -1, g.shape[-1]))
        bar.update(len(batch))
        batch.clear()

    for record, pixels, crop_pixels, error in _prefetch(
        (lambda r=r: loader(r) for r in records), pool, ahead=2 * batch_size
    ):
        if error:
            part.skipped.append((f"image {record.id} ({record.image})", error))
            warn(f"skipped image {record.id}: {error} — fix or remove it; the run goes on")
            bar.update(1)
            continue
        keep = _check_texts(record, part)
        row = -1
        if pixels is not None:
            row = len(part.image_ids)
            part.image_ids.append(record.id)
            part.image_group.append(record.group)
            part.image_meta.append(dumps(record.meta))
            part.image_box.append(tuple(record.box) if record.box is not None else (np.nan,) * 4)
            batch.append((record, pixels, crop_pixels))
        else:
            bar.update(1)
        text_jobs.append((row, 0, record, keep))
        if len(batch) == batch_size:
            flush_images()
    flush_images()

    # texts: every kept text of the part, unique strings encoded once, in fixed batches
    for row, _, record, keep in text_jobs:
        local = {}
        for j in keep:
            t = record.texts[j]
            local[j] = len(part.texts)
            part.texts.append(t.text)
            part.image_index.append(row)
            part.positive_index.append(-1 if t.positive < 0 else local[t.positive])
            part.op.append(t.op)
            part.kind.append(t.kind)
            part.text_meta.append(dumps(t.meta))
    unique = list(dict.fromkeys(part.texts))
    encoded: dict[str, tuple[np.ndarray, list[str], np.ndarray, bool]] = {}
    for i in range(0, len(unique), batch_size):
        chunk = unique[i : i + batch_size]
        bar.set_postfix_str(f"texts {i}/{len(unique)}", refresh=(i // batch_size) % 8 == 0)
        out = encoder.encode_texts(chunk)
        g = out.global_.float().cpu().numpy()
        for s, tok, ts, gl, tr in zip(chunk, out.tokens, out.token_strings, g, out.truncated):
            encoded[s] = (tok.float().cpu().numpy().astype(np.float16), ts, gl, bool(tr))
    for t, s in enumerate(part.texts):
        tok, ts, gl, tr = encoded[s]
        part.tokens.append(tok)
        part.token_strings.append(json.dumps(ts))
        part.text_global.append(gl)
        part.truncated.append(tr)
        if tr:
            warn(f"caption truncated to the encoder's {encoder.context_length} tokens: text {t} {s[:60]!r}")
    bar.set_postfix_str(f"texts {len(unique)}/{len(unique)}")
    return part


def _write_part(path: Path, part: _Part, encoder: Encoder, crops: bool) -> None:
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
    path: Path
    n_images: int
    n_texts: int
    n_tokens: int
    n_skipped: int
    n_truncated: int
    bytes: int
    seconds: float
    resumed_parts: int

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.n_images} images, {self.n_texts} texts ({self.n_tokens} tokens), "
            f"{self.n_skipped} skipped, {self.n_truncated} truncated, {self.bytes / 2**20:.1f} MiB, "
            f"{self.seconds:.1f}s"
            + (f" (resumed: {self.resumed_parts} parts were already done)" if self.resumed_parts else "")
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
    target.parent.mkdir(parents=True, exist_ok=True)
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
        with h5py.File(target, "r") as f:
            if f.attrs.get("complete") and json.loads(f.attrs.get("plan", "{}")) == plan:
                n = WriteSummary(
                    target,
                    int(f.attrs["n_images"]),
                    int(f.attrs["n_texts"]),
                    int(f.attrs["n_tokens"]),
                    int(f.attrs["n_skipped"]),
                    int(f.attrs["n_truncated"]),
                    target.stat().st_size,
                    0.0,
                    -1,
                )
                return n

        raise UserError(f"{target} exists and was made by another command: remove it or choose another --out")
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
        plan_file.write_text(json.dumps(plan, indent=1))

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
    bar = tqdm(total=n_range, desc=f"caching {target.name}", unit="img", disable=not progress, smoothing=0.1)
    loader = _Loader(encoder, crops)
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
                part = _encode_part(chunk, encoder, batch_size, loader, pool, bar, warn)
                _write_part(path, part, encoder, crops)
            i += 1
            if n_range is not None and i * part_size >= n_range:
                break
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    source_skipped = skipped_from_source() if skipped_from_source else []
    attrs = {
        **encoder.metadata(),
        "source": source,
        "config": config or {},
        "plan": plan,
        "shard": [index, count],
    }
    assemble(part_paths, target, attrs, extra_skipped=source_skipped if index == 0 else [])
    shutil.rmtree(parts_dir, ignore_errors=True)
    with h5py.File(target, "r") as f:
        a = f.attrs
        return WriteSummary(
            target,
            int(a["n_images"]),
            int(a["n_texts"]),
            int(a["n_tokens"]),
            int(a["n_skipped"]),
            int(a["n_truncated"]),
            target.stat().st_size,
            time.perf_counter() - t0,
            n_parts_done,
        )


def assemble(
    parts: Sequence[Path], out: Path, attrs: dict[str, Any], extra_skipped: Sequence[tuple[str, str]] = ()
) -> Path:
    """Concatenate part caches into one cache at ``out`` (indices rebased), atomically."""
    from cache_tools.shards import concat_caches

    return concat_caches(parts, out, attrs, extra_skipped=extra_skipped, virtual=False)
