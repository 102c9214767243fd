"""``sugarcrepe:DIR``: the SugarCrepe subset files as published (RAIVNLab/sugar-crepe ``data/``).

DIR holds ``add_att.json, add_obj.json, replace_att.json, replace_obj.json, replace_rel.json,
swap_att.json, swap_obj.json`` (an early release named the object files ``*_ent.json``; both
are read, as ``*_obj``). Each is a dict ``"0", "1", ... -> {filename, caption,
negative_caption}``; images are COCO val2017, found in ``DIR/val2017/`` or ``images=``. Opened
with ``text_only=True`` (Python only, not a ``FORMAT:PATH`` option) the source reads the captions
without the image folder: records still carry the path each image would have under
``DIR/val2017/`` (never opened here), for callers that use only the texts.

One record per distinct image (a COCO image serves many items across subsets); its texts are,
item after item, the caption (positive) and its negative (``positive`` = the caption's index,
``op``/``kind`` from the subset name). Every text's meta holds ``subset`` and ``item`` (the
key in the subset file), so each item's pair is recoverable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.base import (
    Source,
    clean_text,
    first_dir,
    load_json,
    normalize_kind,
    parse_list,
    resolve_path,
)
from cache_tools.sources.records import ImageRecord, TextRecord

SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")
OLD_NAMES = {"add_obj": "add_ent", "replace_obj": "replace_ent", "swap_obj": "swap_ent"}


def subset_op_kind(subset: str) -> tuple[str, str]:
    """``"swap_att"`` -> ``("swap", "attribute")``."""
    op, _, kind = subset.partition("_")
    return op, normalize_kind(kind)


def _item_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


class SugarCrepeSource(Source):
    """SugarCrepe's seven subsets grouped by COCO image."""

    name = "sugarcrepe"
    OPTIONS = {"subsets": f"comma-separated subsets to read (default all: {', '.join(SUBSETS)})"}

    def __init__(
        self, path: str | Path, images: str | Path | None = None, text_only: bool = False, **options: Any
    ) -> None:
        super().__init__(path, images, **options)
        if not self.path.is_dir():
            raise UserError(
                f"{self.name}: {self.path} is not a directory; give the folder holding {SUBSETS[0]}.json ..."
            )
        subsets = parse_list(self.options.get("subsets")) or list(SUBSETS)
        bad = [s for s in subsets if s not in SUBSETS]
        if bad:
            raise UserError(f"{self.name}: unknown subset(s) {', '.join(bad)}; choices: {', '.join(SUBSETS)}")
        self.files: dict[str, Path] = {}
        for s in subsets:
            for stem in (s, OLD_NAMES.get(s)):
                if stem and (self.path / f"{stem}.json").is_file():
                    self.files[s] = self.path / f"{stem}.json"
                    break
        if not self.files:
            raise UserError(
                f"{self.name}: none of {', '.join(s + '.json' for s in subsets)} in {self.path}; "
                "download the data/ folder of RAIVNLab/sugar-crepe"
            )
        self.image_root = self.images or first_dir([self.path / "val2017", self.path.parent / "val2017"])
        if self.image_root is None and text_only:
            self.image_root = self.path / "val2017"
        if self.image_root is None:
            raise UserError(
                f"{self.name}: no image folder {self.path / 'val2017'}; pass images=DIR (COCO val2017 images)"
            )

    def details(self) -> str:
        return f"subsets: {', '.join(self.files)}; images: {self.image_root}"

    def _records(self) -> Iterator[ImageRecord]:
        by_image: dict[str, list[TextRecord]] = {}
        for subset in SUBSETS:
            if subset not in self.files:
                continue
            data = load_json(self.files[subset])
            if not isinstance(data, dict):
                raise UserError(f"{self.name}: {self.files[subset]} should map item keys to items")
            op, kind = subset_op_kind(subset)
            for key in sorted(data, key=_item_order):
                item = data[key]
                where = f"{subset}/{key}"
                self.item_seen()
                if not isinstance(item, dict):
                    self.skip(where, "item is not an object")
                    continue
                filename = item.get("filename")
                caption, negative = clean_text(item.get("caption")), clean_text(item.get("negative_caption"))
                if not isinstance(filename, str) or not filename:
                    self.skip(where, 'missing "filename"')
                    continue
                if caption is None or negative is None:
                    self.skip(where, "empty or missing caption / negative_caption")
                    continue
                texts = by_image.setdefault(filename, [])
                meta = {"subset": subset, "item": key}
                texts.append(TextRecord(caption, meta=dict(meta)))
                texts.append(TextRecord(negative, len(texts) - 1, op, kind, dict(meta)))
        for filename, texts in by_image.items():
            yield ImageRecord(filename, resolve_path(filename, self.image_root), texts)
