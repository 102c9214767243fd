"""``coco:captions_train2017.json``: the official COCO captions annotation file.

``{"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "id", "caption"}]}``.
Images are read from ``images=``, else from the folder named after the JSON
(``captions_val2017.json`` -> ``val2017/``) beside the JSON or beside its ``annotations/``
folder (the official layout ``coco/annotations/`` + ``coco/val2017/``). One record per image
in the file's ``images`` order, its captions in annotation order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.base import Source, clean_text, first_dir, load_json
from cache_tools.sources.records import ImageRecord, TextRecord


def default_image_dir_name(json_path: Path) -> str:
    """``captions_train2017.json`` -> ``train2017``."""
    stem = json_path.stem
    return stem.split("_", 1)[1] if "_" in stem else stem


class CocoCaptionsSource(Source):
    """COCO captions: one record per image with its (usually five) captions."""

    name = "coco"
    OPTIONS: dict[str, str] = {}

    def __init__(self, path: str | Path, images: str | Path | None = None, **options: Any) -> None:
        super().__init__(path, images, **options)
        if not self.path.is_file():
            raise UserError(
                f"{self.name}: {self.path} is not a file; give captions_train2017.json or captions_val2017.json"
            )
        folder = default_image_dir_name(self.path)
        candidates = [self.path.parent / folder, self.path.parent.parent / folder]
        self.image_root = self.images or first_dir(candidates)
        if self.image_root is None:
            raise UserError(
                f"{self.name}: no image folder {candidates[0]} or {candidates[1]}; pass images=DIR"
            )

    def details(self) -> str:
        return f"images: {self.image_root}"

    def _records(self) -> Iterator[ImageRecord]:
        data = load_json(self.path)
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise UserError(
                f'{self.name}: {self.path} lacks "images" / "annotations"; is it a COCO captions file?'
            )
        captions: dict[Any, list[tuple[Any, str]]] = {}
        for k, ann in enumerate(data["annotations"]):
            text = clean_text(ann.get("caption")) if isinstance(ann, dict) else None
            if text is None:
                self.skip(
                    f"annotation {ann.get('id', k) if isinstance(ann, dict) else k}",
                    "empty or missing caption",
                )
                continue
            captions.setdefault(ann.get("image_id"), []).append((ann.get("id"), text))
        for im in data["images"]:
            name = im.get("file_name") if isinstance(im, dict) else None
            if not isinstance(name, str) or not name:
                self.skip(f"image {im.get('id') if isinstance(im, dict) else im}", 'missing "file_name"')
                continue
            caps = captions.get(im.get("id"), [])
            if not caps:
                self.skip(name, "no caption")
                continue
            texts = [TextRecord(text, meta={"annotation_id": aid}) for aid, text in caps]
            yield ImageRecord(name, str(self.image_root / name), texts, meta={"coco_id": im.get("id")})
