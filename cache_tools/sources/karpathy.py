"""``karpathy:dataset_coco.json`` (or ``dataset_flickr30k.json``): the Karpathy retrieval splits.

Two layouts are read:

* Karpathy's own ``{"images": [{"filepath"?, "filename", "split", "sentences": [{"raw"}],
  "cocoid"? , "imgid"}]}`` (images at ``ROOT/filepath/filename``; Flickr30k has no filepath
  and its images usually sit in ``ROOT/flickr30k-images/``);
* the per-split lists used by BLIP and ARO (``coco_karpathy_test.json``,
  ``flickr30k_test.json``): ``[{"image": "val2014/...jpg", "caption": [str, ...]}]``
  (no split field: the whole file is one split).

ROOT is ``images=`` or the JSON's directory. Option ``split=test`` (comma-separated, e.g.
``train,restval``) keeps those splits; default all. One record per image, its captions as
positives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.base import Source, clean_text, load_json, parse_list
from cache_tools.sources.records import ImageRecord, TextRecord


@dataclass
class CaptionedImage:
    """One image of a caption file: ``rel`` relative to the image root, raw captions (may be bad)."""

    rel: str
    captions: list[Any]
    split: str | None
    meta: dict[str, Any] = field(default_factory=dict)


def read_caption_file(path: Path) -> list[CaptionedImage]:
    """Parse a Karpathy ``dataset_*.json`` or a BLIP/ARO per-split list into :class:`CaptionedImage`."""
    data = load_json(path)
    out: list[CaptionedImage] = []
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        for im in data["images"]:
            if not isinstance(im, dict):
                continue
            name = str(im.get("filename", ""))
            rel = f"{im['filepath']}/{name}" if im.get("filepath") else name
            caps = [s.get("raw") if isinstance(s, dict) else s for s in im.get("sentences") or []]
            meta = {k: im[k] for k in ("cocoid", "imgid") if k in im}
            out.append(CaptionedImage(rel, caps, im.get("split"), meta))
        return out
    if isinstance(data, list):
        for im in data:
            if not isinstance(im, dict):
                continue
            caps = im.get("caption", [])
            meta = {"image_id": im["image_id"]} if "image_id" in im else {}
            out.append(
                CaptionedImage(
                    str(im.get("image", "")), [caps] if isinstance(caps, str) else list(caps), None, meta
                )
            )
        return out
    raise UserError(
        f'{path}: expected Karpathy {{"images": [...]}} or a list of {{"image", "caption"}} items'
    )


def image_root_for(path: Path, images: Path | None, items: list[CaptionedImage]) -> Path:
    """``images=`` if given; else the JSON's directory, or its ``flickr30k-images/`` when the
    entries carry bare file names and that folder exists."""
    if images is not None:
        return images
    root = path.parent
    if items and "/" not in items[0].rel and (root / "flickr30k-images").is_dir():
        return root / "flickr30k-images"
    return root


class KarpathySource(Source):
    """Karpathy-split COCO / Flickr30k captions, one record per image."""

    name = "karpathy"
    OPTIONS = {"split": "keep only these splits (comma-separated: train, restval, val, test); default all"}

    def __init__(self, path: str | Path, images: str | Path | None = None, **options: Any) -> None:
        super().__init__(path, images, **options)
        if not self.path.is_file():
            raise UserError(
                f"{self.name}: {self.path} is not a file; give dataset_coco.json or dataset_flickr30k.json"
            )
        self.splits = parse_list(self.options.get("split"))

    def details(self) -> str:
        return f"splits: {','.join(self.splits) if self.splits else 'all'}"

    def _records(self) -> Iterator[ImageRecord]:
        items = read_caption_file(self.path)
        root = image_root_for(self.path, self.images, items)
        for k, im in enumerate(items):
            if self.splits is not None and im.split is not None and im.split not in self.splits:
                continue
            if not im.rel:
                self.skip(f"image {k}", "missing file name")
                continue
            texts = []
            for j, c in enumerate(im.captions):
                text = clean_text(c)
                if text is None:
                    self.skip(f"{im.rel} caption {j}", "empty caption")
                else:
                    texts.append(TextRecord(text, meta={"caption_index": j}))
            if not texts:
                self.skip(im.rel, "no usable caption")
                continue
            meta = dict(im.meta) | ({"split": im.split} if im.split is not None else {})
            yield ImageRecord(im.rel, str(root / im.rel), texts, meta=meta)
