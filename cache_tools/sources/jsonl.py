"""``jsonl:MANIFEST.jsonl`` (or ``jsonl:DIR`` of several manifests): the generic format.

One JSON object per line::

    {"id": "a",                       # optional; defaults to the image path as written
     "image": "imgs/a.png",           # relative to the manifest's directory (or to images=)
     "captions": ["a red cube"],      # or "caption": "a red cube"
     "negatives": ["a blue cube",     # negative of caption 0
                   {"text": "a red ball", "op": "replace", "kind": "object",
                    "depth": 1, "positive": 0}],
     "negative_images": ["imgs/a_neg.png"],   # optional: images that do NOT match the captions
     "group": "item7",                # optional benchmark item id
     ...}                             # any other key is kept in the record's meta

Each line gives one record (texts: the captions, then the negatives with ``positive`` = the
index of their caption). Each ``negative_images`` entry gives one more record with no texts,
``group`` = the item id and ``meta["role"] = "negative_image"``. For ``jsonl:DIR`` every
``*.jsonl`` in DIR is read in name order and ``meta["split"]`` is the file stem; ``split=``
picks one (ShapesWorld writes ``train.jsonl``, ``test_id.jsonl``, ``test_ood.jsonl``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.base import (
    Source,
    clean_text,
    normalize_kind,
    parse_list,
    resolve_path,
    select_files,
)
from cache_tools.sources.records import ImageRecord, TextRecord

RESERVED = {"id", "image", "captions", "caption", "negatives", "negative_images", "group"}


class JsonlSource(Source):
    """Generic JSONL manifest(s); see the module docstring for the line format."""

    name = "jsonl"
    OPTIONS = {"split": "in jsonl:DIR, read only these manifests (file stems, comma-separated)"}

    def __init__(self, path: str | Path, images: str | Path | None = None, **options: Any) -> None:
        super().__init__(path, images, **options)
        if self.path.is_dir():
            files = sorted(self.path.glob("*.jsonl"))
            if not files:
                raise UserError(f"{self.name}: no *.jsonl manifest in {self.path}")
            self.files = select_files(self.name, files, parse_list(self.options.get("split")), "split")
            self.split_meta = True
        else:
            if "split" in self.options:
                raise UserError(
                    f"{self.name}: split= applies to a directory of manifests, not to the file {self.path}"
                )
            self.files = [self.path]
            self.split_meta = False

    def details(self) -> str:
        return "manifests: " + ", ".join(f.name for f in self.files)

    def _records(self) -> Iterator[ImageRecord]:
        for file in self.files:
            root = self.images or file.parent
            split = file.stem if self.split_meta else None
            with open(file, "rb") as f:
                for lineno, raw in enumerate(f, 1):
                    where = f"{file.name}:{lineno}"
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as err:
                        raise UserError(
                            f"{file}:{lineno} is not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                            f"{err.start + 1}): save the manifest as UTF-8 and run again"
                        ) from None
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError as err:
                        self.skip(where, f"malformed JSON ({err.msg} at column {err.colno})")
                        continue
                    if not isinstance(item, dict):
                        self.skip(where, "line is not a JSON object")
                        continue
                    yield from self._item_records(item, where, root, split)

    def _item_records(self, item: dict, where: str, root: Path, split: str | None) -> Iterator[ImageRecord]:
        image = item.get("image")
        if not isinstance(image, str) or not image.strip():
            self.skip(where, 'missing "image" (a path relative to the manifest)')
            return
        rid = str(item.get("id", image))
        raw_caps = item.get("captions", [item["caption"]] if "caption" in item else [])
        if isinstance(raw_caps, str):
            raw_caps = [raw_caps]
        texts: list[TextRecord] = []
        cap_index: dict[int, int] = {}  # index in "captions" -> index in texts
        for k, c in enumerate(raw_caps):
            text = clean_text(c)
            if text is None:
                self.skip(f"{where} ({rid}) caption {k}", "empty or non-string caption")
                continue
            cap_index[k] = len(texts)
            texts.append(TextRecord(text))
        if not texts:
            self.skip(where, f'no usable caption for {rid} ("captions": [str, ...] or "caption": str)')
            return
        for k, neg in enumerate(item.get("negatives") or []):
            rec = self._negative(neg, cap_index)
            if isinstance(rec, str):
                self.skip(f"{where} ({rid}) negative {k}", rec)
            else:
                texts.append(rec)
        neg_images = item.get("negative_images") or []
        group = str(item.get("group", rid if neg_images else ""))
        meta = {k: v for k, v in item.items() if k not in RESERVED}
        if split is not None:
            meta["split"] = split
        yield ImageRecord(rid, resolve_path(image, root), texts, group=group, meta=meta)
        for k, path in enumerate(neg_images):
            if not isinstance(path, str) or not path.strip():
                self.skip(f"{where} ({rid}) negative image {k}", "not a path")
                continue
            nmeta = {"role": "negative_image", "of": rid} | ({"split": split} if split is not None else {})
            yield ImageRecord(f"{rid}#neg{k}", resolve_path(path, root), [], group=group, meta=nmeta)

    @staticmethod
    def _negative(neg: Any, cap_index: dict[int, int]) -> TextRecord | str:
        """A negative entry -> TextRecord, or the reason it cannot be used."""
        if isinstance(neg, str):
            neg = {"text": neg}
        if not isinstance(neg, dict):
            return "negative is neither a string nor an object"
        text = clean_text(neg.get("text"))
        if text is None:
            return "empty or missing negative text"
        pos = neg.get("positive", 0)
        if not isinstance(pos, int) or pos not in cap_index:
            return f"positive={pos!r} is not the index of a usable caption"
        meta = {k: v for k, v in neg.items() if k not in ("text", "positive", "op", "kind")}
        kind = str(neg.get("kind", ""))
        return TextRecord(text, cap_index[pos], str(neg.get("op", "")), normalize_kind(kind) or kind, meta)


class ShapesWorldSource(JsonlSource):
    """``shapesworld:DIR``: the JSONL manifests ShapesWorld writes (train / test_id / test_ood)."""

    name = "shapesworld"


class World3DSource(JsonlSource):
    """``world3d:DIR``: the JSONL manifests the 3D world writes (train / test_id / test_ood /
    test_novel), the ShapesWorld line format plus minimal pairs: two lines of a test split share
    ``"group"`` (``<split>/pair<k>``), one with ``"role": "original"`` and one with ``"role":
    "negative"`` (its twin image), both with a ``"category"`` (color, material, size, quantity,
    plane, depth, support, comparative, equality); ``role`` and ``category`` are kept in the image
    meta, ``group`` in the record's group."""

    name = "world3d"
