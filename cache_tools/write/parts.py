"""The encoding pipeline of one part: images opened ahead in threads, encoded in fixed batches,
then the part's captions (each distinct string once), through :mod:`cache_tools.write.encode`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cache_tools.encoders.base import Encoder
from cache_tools.encoders.images import crop_boxes, load_image
from cache_tools.sources.records import ImageRecord
from cache_tools.store.h5io import dumps
from cache_tools.write.arena import Arena
from cache_tools.write.encode import encode_pixels, encode_texts, preprocess_image


@dataclass
class Part:
    """Encoded arrays of one part, indices local to the part (the columns of ``write_arrays``)."""

    image_ids: list[str] = field(default_factory=list)
    patches: list[np.ndarray] | np.ndarray = field(default_factory=list)  # [N_img, P, D_img] once encoded
    image_global: list[np.ndarray] = field(default_factory=list)
    image_group: list[str] = field(default_factory=list)
    image_meta: list[str] = field(default_factory=list)
    image_box: list[tuple[float, float, float, float]] = field(default_factory=list)
    crops_global: list[np.ndarray] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    token_strings: list[str] = field(default_factory=list)
    text_global: list[np.ndarray] | np.ndarray = field(default_factory=list)  # [N_txt, D_gt] once encoded
    image_index: list[int] = field(default_factory=list)
    positive_index: list[int] = field(default_factory=list)
    op: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    text_meta: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def prefetch(tasks: Iterable[Callable[[], Any]], pool: ThreadPoolExecutor, ahead: int) -> Iterator[Any]:
    """Run zero-argument callables in ``pool`` keeping ``ahead`` in flight; yield results in order."""
    pending: list = []
    for task in tasks:
        pending.append(pool.submit(task))
        if len(pending) > ahead:
            yield pending.pop(0).result()
    for fut in pending:
        yield fut.result()


class ImageLoader:
    """Opens and preprocesses one record's image (and crops) in a worker thread."""

    def __init__(self, encoder: Encoder, crops: bool):
        self.encoder, self.crops = encoder, crops
        self.boxes = crop_boxes() if crops else None

    def __call__(
        self, record: ImageRecord
    ) -> tuple[ImageRecord, torch.Tensor | None, torch.Tensor | None, str]:
        """-> (record, pixels [3,H,W] or None, crop pixels [C,3,H,W] or None, error or "")."""
        if record.image is None:
            return record, None, None, ""
        try:
            pixels, crop_pixels = preprocess_image(self.encoder, load_image(record), self.boxes)
            return record, pixels, crop_pixels, ""
        except Exception as err:  # noqa: BLE001 - any unreadable image is skipped and recorded
            return record, None, None, f"{type(err).__name__}: {err}"


def check_texts(record: ImageRecord, part: Part) -> list[int]:
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


UNKNOWN_TOKENS = {"[unk]", "<unk>", "<|unk|>", "<unk_token>"}
SPECIAL = {
    "[cls]",
    "[sep]",
    "[pad]",
    "<s>",
    "</s>",
    "<pad>",
    "<bos>",
    "<eos>",
    "<|startoftext|>",
    "<|endoftext|>",
}


def unreadable(text: str, token_strings: list[str]) -> bool:
    """A caption with no letter or digit, or whose every word token is the unknown token."""
    if not any(ch.isalnum() for ch in text):
        return True
    words = 0
    for s in token_strings:
        w = s.lower()
        if w in SPECIAL:
            continue
        if w not in UNKNOWN_TOKENS:
            return False  # a known word: readable (most captions stop at their first word)
        words += 1
    return words > 0


def _add_record(part: Part, record: ImageRecord, row: int, keep: list[int]) -> None:
    """Append the kept texts of ``record`` (image row ``row``, -1 for none) to the part's columns."""
    local: dict[int, int] = {}
    for j in keep:
        t = record.texts[j]
        local[j] = len(part.texts)
        part.texts.append(t.text)
        part.image_index.append(row)
        part.positive_index.append(-1 if t.positive < 0 else local[t.positive])
        part.op.append(t.op)
        part.kind.append(t.kind)
        part.text_meta.append(dumps(t.meta))


def encode_part(
    records: list[ImageRecord],
    encoder: Encoder,
    batch_size: int,
    loader: ImageLoader,
    pool: ThreadPoolExecutor,
    bar: tqdm,
    warn: Callable[[str], None],
    arena: Arena | None = None,
) -> Part:
    """Encode one part's records: images in batches of ``batch_size``, then its captions. The
    patches ([N_img, P, D_img], one array) and caption tokens are encoded into ``arena``'s memory
    when given (valid until it is reset), else into new arrays."""
    part = Part()
    batch: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    text_jobs: list[tuple[int, ImageRecord, list[int]]] = []
    take = arena.take if arena is not None else np.empty
    region: list[np.ndarray] = []  # the part's patches [len(records), P, D_img], made at the first batch
    n_encoded = 0

    def patches_into(shape: tuple[int, ...], dtype) -> np.ndarray:
        if not region:
            region.append(take((len(records), *shape[1:]), dtype))
        if region[0].shape[1:] != shape[1:]:
            raise ValueError(
                f"the encoder's patches changed shape within a part: {region[0].shape[1:]} -> {shape[1:]}"
            )
        return region[0][n_encoded : n_encoded + shape[0]]

    def flush_images() -> None:
        nonlocal n_encoded
        if not batch:
            return
        crop_pixels = torch.cat([b[1] for b in batch]) if loader.crops else None
        enc = encode_pixels(
            encoder, torch.stack([b[0] for b in batch]), crop_pixels, batch_size, patches_into
        )
        n_encoded += len(enc.patches)
        part.image_global.extend(enc.global_)
        if enc.crops is not None:
            part.crops_global.extend(enc.crops)
        bar.update(len(batch))
        batch.clear()

    for record, pixels, crop_pixels, error in prefetch(
        (lambda r=r: loader(r) for r in records), pool, ahead=2 * batch_size
    ):
        if error:
            part.skipped.append((f"image {record.id} ({record.image})", error))
            warn(f"skipped image {record.id}: {error} — fix or remove it; the run goes on")
            bar.update(1)
            continue
        keep = check_texts(record, part)
        row = -1
        if pixels is not None:
            row = len(part.image_ids)
            part.image_ids.append(record.id)
            part.image_group.append(record.group)
            part.image_meta.append(dumps(record.meta))
            part.image_box.append(tuple(record.box) if record.box is not None else (np.nan,) * 4)
            batch.append((pixels, crop_pixels))
        else:
            bar.update(1)
        text_jobs.append((row, record, keep))
        if len(batch) == batch_size:
            flush_images()
    flush_images()
    if region:
        part.patches = region[0][:n_encoded]

    for row, record, keep in text_jobs:
        _add_record(part, record, row, keep)

    def on_batch(done: int, total: int) -> None:
        # redraw at the bar's own pace (every 30 s into a log file, see cache_tools.infra.progress)
        due = time.time() - getattr(bar, "last_print_t", 0.0) >= getattr(bar, "mininterval", 0.0)
        bar.set_postfix_str(f"texts {done}/{total}", refresh=due or done == total)

    enc = encode_texts(encoder, part.texts, batch_size, on_batch=on_batch, alloc=take)
    part.tokens = enc.tokens
    part.token_strings = [json.dumps(ts) for ts in enc.token_strings]
    part.text_global = enc.global_
    part.truncated = enc.truncated.tolist()
    for text, strings in zip(part.texts, enc.token_strings):
        if unreadable(text, strings):
            warn(
                f"caption {text[:60]!r} has no letters or digits the encoder's vocabulary knows "
                "(emoji or punctuation only): encoded anyway, but it carries no words; fix or remove it"
            )
    for t in np.flatnonzero(enc.truncated):
        warn(
            f"caption truncated to the encoder's {encoder.context_length} tokens: "
            f"text {t} {part.texts[t][:60]!r}"
        )
    return part
