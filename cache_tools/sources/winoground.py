"""``winoground:DIR``: the Hugging Face ``facebook/winoground`` download.

Read from ``DIR/data/examples.jsonl`` (or ``DIR/examples.jsonl``) with ``id, image_0, image_1,
caption_0, caption_1, tag, secondary_tag, num_main_preds, collapsed_tag``; images
``<images root>/<image_x>.png`` where the root is ``images=``, ``DIR/data/images/`` or
``DIR/images/`` (unzip ``data/images.zip``). Without examples.jsonl, parquet files
(``DIR/data/*.parquet``, image columns as ``{"bytes", "path"}``) are read if ``pyarrow`` is
installed.

Each item gives two records with ``group`` = the item id: ``image_0`` with texts
``[caption_0 (positive), caption_1 (its negative)]`` and ``image_1`` with
``[caption_1 (positive), caption_0 (its negative)]``. The captions hold the same words in a
different order, so ``op`` is ``"swap"``; ``kind`` comes from ``collapsed_tag`` (Object ->
object, Relation -> relation, Both -> ""; ``tag`` holds the fine-grained label such as "Noun" or
"Verb"). Text meta: item, caption index, and the tags ``tag, secondary_tag, num_main_preds,
collapsed_tag`` as published (the evaluation reports a row per collapsed tag).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.base import Source, clean_text, first_dir, normalize_kind, resolve_path
from cache_tools.sources.parquet import decode_image, iter_parquet_rows, parquet_files
from cache_tools.sources.records import ImageRecord, TextRecord

TAG_FIELDS = ("tag", "secondary_tag", "num_main_preds", "collapsed_tag")


class WinogroundSource(Source):
    """Winoground: two images x two captions per item."""

    name = "winoground"
    OPTIONS: dict[str, str] = {}

    def __init__(self, path: str | Path, images: str | Path | None = None, **options: Any) -> None:
        super().__init__(path, images, **options)
        if self.path.is_file() and self.path.suffix == ".jsonl":
            self.examples: Path | None = self.path
            base = self.path.parent
        else:
            base = self.path
            self.examples = next(
                (p for p in (base / "data" / "examples.jsonl", base / "examples.jsonl") if p.is_file()), None
            )
        self.parquet = [] if self.examples is not None else parquet_files(self.path)
        if self.examples is None and not self.parquet:
            raise UserError(
                f"{self.name}: no data/examples.jsonl, examples.jsonl or parquet file in {self.path}; "
                "give the folder of the facebook/winoground download"
            )
        self.image_root: Path | None = None
        if self.examples is not None:
            self.image_root = self.images or first_dir(
                [base / "data" / "images", base / "images", self.examples.parent / "images"]
            )
            if self.image_root is None:
                raise UserError(
                    f"{self.name}: no image folder {base / 'data' / 'images'}; unzip data/images.zip there or pass images=DIR"
                )

    def details(self) -> str:
        return (
            f"images: {self.image_root}"
            if self.image_root
            else "parquet: " + ", ".join(f.name for f in self.parquet)
        )

    def _items(self) -> Iterator[tuple[str, Any]]:
        if self.examples is None:
            for _file, row, item in iter_parquet_rows(self.parquet):
                yield f"row {row}", item
            return
        with open(self.examples, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{self.examples.name}:{lineno}", json.loads(line)
                except json.JSONDecodeError as err:
                    self.item_seen()
                    self.skip(f"{self.examples.name}:{lineno}", f"malformed JSON ({err.msg})")

    def _image(self, value: Any) -> Any:
        if self.image_root is not None and isinstance(value, str):
            return resolve_path(value if Path(value).suffix else f"{value}.png", self.image_root)
        return decode_image(value, self.path)

    def _records(self) -> Iterator[ImageRecord]:
        for where, item in self._items():
            self.item_seen()
            if not isinstance(item, dict) or "id" not in item:
                self.skip(where, 'not an object with an "id"')
                continue
            iid = str(item["id"])
            caps = [clean_text(item.get("caption_0")), clean_text(item.get("caption_1"))]
            if None in caps:
                self.skip(iid, "empty or missing caption_0 / caption_1")
                continue
            try:
                images = [self._image(item.get("image_0")), self._image(item.get("image_1"))]
            except ValueError as err:
                self.skip(iid, str(err))
                continue
            if None in images:
                self.skip(iid, "missing image_0 / image_1")
                continue
            tags = {k: item[k] for k in TAG_FIELDS if k in item}
            kind = normalize_kind(item.get("collapsed_tag"))
            for x in (0, 1):
                y = 1 - x
                name = item.get(f"image_{x}")
                rid = name if isinstance(name, str) and name else f"ex_{iid}_img_{x}"  # the HF file naming
                texts = [
                    TextRecord(caps[x], meta={"item": iid, "caption": x} | tags),  # type: ignore[arg-type]
                    TextRecord(caps[y], 0, "swap", kind, {"item": iid, "caption": y} | tags),  # type: ignore[arg-type]
                ]
                yield ImageRecord(rid, images[x], texts, group=iid, meta={"item": iid, "image": x})
