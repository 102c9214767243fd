"""``bivlc:PATH``: BiVLC items ``image, caption, negative_caption, negative_image, type, subtype``.

PATH is either the HF download (a directory with ``data/<split>-*.parquet``, or one parquet
file; images stored as ``{"bytes", "path"}`` structs, decoded to PIL; needs ``pyarrow``), or a
JSONL / JSON file (a list, or a dict id -> item) whose ``image`` / ``negative_image`` are paths
relative to the file (or to ``images=``). A directory with no parquet is searched for one
``*.jsonl`` / ``*.json``.

Item ids: ``<split>/<k>``, k the row's position in its split, counted across the split's shards
in file order (the HF release's test split is ``test-00000-of-00002`` + ``test-00001-of-00002``,
so the second shard's rows continue the count; that is the HF dataset's own index), or for
JSON(L) the item's ``id`` (default its position).

Each item gives two records sharing ``group`` = the item id:

* ``<id>:original``: the image, texts ``[caption (positive), negative_caption (its negative)]``;
* ``<id>:negative``: the negative image, texts ``[negative_caption (positive), caption (its negative)]``.

``op`` is the item's ``type`` (replace / swap / add), ``kind`` its ``subtype`` normalized
(obj -> object, att -> attribute, rel -> relation); the raw values stay in the meta.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.base import Source, clean_text, load_json, normalize_kind
from cache_tools.sources.parquet import decode_image, iter_parquet_rows, parquet_files, parquet_split
from cache_tools.sources.records import ImageRecord, TextRecord


class BiVLCSource(Source):
    """BiVLC: two images x two captions per item."""

    name = "bivlc"
    OPTIONS = {"split": "parquet download: read only this split (test, validation); default all"}

    def __init__(self, path: str | Path, images: str | Path | None = None, **options: Any) -> None:
        super().__init__(path, images, **options)
        split = self.options.get("split")
        self.parquet = parquet_files(self.path, split)
        self.table: Path | None = None
        if not self.parquet:
            if self.path.is_file() and self.path.suffix in (".json", ".jsonl"):
                self.table = self.path
            elif self.path.is_dir():
                found = sorted(self.path.glob("*.jsonl")) + sorted(self.path.glob("*.json"))
                self.table = found[0] if found else None
            if self.table is None:
                what = f" for split {split}" if split else ""
                raise UserError(
                    f"{self.name}: no parquet{what}, JSONL or JSON file in {self.path}; give the HF download "
                    "(data/*.parquet) or a JSONL with image paths"
                )

    def details(self) -> str:
        return "files: " + ", ".join(f.name for f in self.parquet or [self.table])  # type: ignore[list-item]

    def _items(self) -> Iterator[tuple[str, dict[str, Any], Path]]:
        """Yield ``(item_id, raw item, root for relative image paths)``."""
        if self.parquet:
            counters: dict[str, int] = {}  # the row number within the split, across its shards
            for file, _row, item in iter_parquet_rows(self.parquet):
                split = parquet_split(file)
                k = counters[split] = counters.get(split, -1) + 1
                yield f"{split}/{k}", item, self.images or file.parent
            return
        assert self.table is not None
        root = self.images or self.table.parent
        if self.table.suffix == ".jsonl":
            with open(self.table, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError as err:
                        self.item_seen()
                        self.skip(f"{self.table.name}:{lineno}", f"malformed JSON ({err.msg})")
                        continue
                    yield (
                        str(item.get("id", lineno - 1)) if isinstance(item, dict) else str(lineno),
                        item,
                        root,
                    )
            return
        data = load_json(self.table)
        pairs = data.items() if isinstance(data, dict) else ((None, v) for v in data)
        for k, (key, item) in enumerate(pairs):
            default = key if key is not None else k
            yield str(item.get("id", default) if isinstance(item, dict) else default), item, root

    def _records(self) -> Iterator[ImageRecord]:
        for iid, item, root in self._items():
            self.item_seen()
            if not isinstance(item, dict):
                self.skip(iid, "item is not an object")
                continue
            caption, negative = clean_text(item.get("caption")), clean_text(item.get("negative_caption"))
            if caption is None or negative is None:
                self.skip(iid, "empty or missing caption / negative_caption")
                continue
            try:
                image = decode_image(item.get("image"), root)
                neg_image = decode_image(item.get("negative_image"), root)
            except ValueError as err:
                self.skip(iid, str(err))
                continue
            if image is None or neg_image is None:
                self.skip(iid, "missing image / negative_image")
                continue
            op, subtype = str(item.get("type", "")), str(item.get("subtype", ""))
            kind = normalize_kind(subtype)
            meta = {"item": iid, "type": op, "subtype": subtype}
            for role, img, true, false in (
                ("original", image, caption, negative),
                ("negative", neg_image, negative, caption),
            ):
                yield ImageRecord(
                    f"{iid}:{role}",
                    img,
                    [TextRecord(true, meta=dict(meta)), TextRecord(false, 0, op, kind, dict(meta))],
                    group=iid,
                    meta={"role": role, "item": iid},
                )
