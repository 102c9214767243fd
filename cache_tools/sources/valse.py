"""``valse:DIR``: the VALSE piece files (Heidelberg-NLP/VALSE ``data/``).

DIR (or ``DIR/data``) holds one JSON per piece (``existence.json``, ``plurals.json``,
``counting-hard.json``, ``relations.json``, ``action-replacement.json``, ``actant-swap.json``,
``coreference-standard.json``, ``foil-it.json`` ...), each a dict item id -> ``{dataset,
image_file, caption, foil, mturk: {caption, foil, other}, ...}``. ``pieces=`` selects some
(file stems, comma-separated); default all, in file-name order.

Images come from several datasets. The image root is ``images=`` or ``DIR/images``; an item's
image is looked up in ``<root>/<piece>/``, then in the folders of its ``dataset`` field as the
official files spell it (:data:`DATASET_DIRS`: ``coco2017`` (plurals) and ``coco_2017``
(relations) -> ``coco2017/``, ``coco_2017/``, ``val2017/``; ``visual7w`` -> ``visual7w/images/``,
``visual7w/``; ``"FOIL dataset"`` (foil-it, COCO 2014 images) -> ``FOIL dataset/``, ``foil/``,
``val2014/``; ``SWiG`` -> ``SWiG/``, ``images_512/``; ``VisDial`` -> ``VisDial/``,
``VisualDialog_val2018/``; any other name -> ``<root>/<dataset>/``), then ``<root>/``: the first
folder that holds the file (else the first that exists; the writer then records the missing
image in ``skipped``).

One record per distinct image (id: its path under the root); its texts are, item after item,
the caption (positive) and the foil (its negative). Every text's meta holds ``piece``,
``item``, ``mturk`` and ``valid`` (caption chosen by >= 2 of 3 annotators; ``None`` without
votes): the metric keeps only valid items, the source keeps all. ``stats()["items"]`` counts
the valid items (and those without votes): the size the report compares with the items scored. ``op``/``kind`` by piece:
actant swap -> swap/object, action replacement and relations -> replace/relation, foil-it ->
replace/object, others -> replace with no kind (the piece name says what changed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.base import Source, clean_text, first_dir, load_json, parse_list, select_files
from cache_tools.sources.records import ImageRecord, TextRecord

PIECE_OPS: dict[str, tuple[str, str]] = {
    "actant-swap": ("swap", "object"),
    "action-replacement": ("replace", "relation"),
    "relation": ("replace", "relation"),
    "foil-it": ("replace", "object"),
}
"""Piece file-name prefix -> (op, kind); pieces not listed are ("replace", "")."""

USED = {"image_file", "caption", "foil", "foils"}

DATASET_DIRS: dict[str, tuple[str, ...]] = {
    "coco2017": ("coco2017", "coco_2017", "val2017", "coco/val2017", "coco"),
    "visual7w": ("visual7w/images", "visual7w", "images"),
    "foildataset": ("FOIL dataset", "foil", "FOIL", "val2014", "coco/val2014", "coco2014"),
    "swig": ("SWiG", "swig", "images_512"),
    "visdial": ("VisDial", "visdial", "VisualDialog_val2018"),
}
"""The ``dataset`` field, normalized by :func:`dataset_key` -> image folders under the root, in
lookup order."""


def dataset_key(dataset: str) -> str:
    """``"coco_2017"`` / ``"coco2017"`` -> ``"coco2017"``, ``"FOIL dataset"`` -> ``"foildataset"``."""
    return "".join(c for c in dataset.lower() if c.isalnum())


def piece_op_kind(piece: str) -> tuple[str, str]:
    """``"actant-swap"`` -> ``("swap", "object")``; unknown pieces -> ``("replace", "")``."""
    key = piece.lower().replace("_", "-")
    return next((v for prefix, v in PIECE_OPS.items() if key.startswith(prefix)), ("replace", ""))


def is_valid(mturk: Any) -> bool | None:
    """VALSE's validity: at least 2 of 3 annotators chose the caption (None without votes)."""
    if not isinstance(mturk, dict) or "caption" not in mturk:
        return None
    try:
        return int(mturk["caption"]) >= 2
    except (TypeError, ValueError):
        return None


class ValseSource(Source):
    """VALSE pieces grouped by image."""

    name = "valse"
    OPTIONS = {"pieces": "comma-separated piece file stems to read (default all *.json)"}

    def __init__(self, path: str | Path, images: str | Path | None = None, **options: Any) -> None:
        super().__init__(path, images, **options)
        if not self.path.is_dir():
            raise UserError(
                f"{self.name}: {self.path} is not a directory; give the folder of the piece JSON files"
            )
        data_dir = self.path if any(self.path.glob("*.json")) else self.path / "data"
        files = sorted(data_dir.glob("*.json"))
        if not files:
            raise UserError(
                f"{self.name}: no piece JSON (existence.json, ...) in {self.path} or {self.path / 'data'}"
            )
        self.files = files = select_files(
            self.name, files, parse_list(self.options.get("pieces")), "piece(s)"
        )
        self.image_root = self.images or first_dir([self.path / "images", data_dir / "images"])
        if self.image_root is None:
            raise UserError(f"{self.name}: no image folder {self.path / 'images'}; pass images=DIR")
        self._dirs: dict[tuple[str, str], list[Path]] = {}

    def details(self) -> str:
        return f"pieces: {', '.join(f.stem for f in self.files)}; images: {self.image_root}"

    def _candidates(self, piece: str, dataset: str) -> list[Path]:
        """Existing folders where an image of (piece, dataset) may lie, in lookup order."""
        key = (piece, dataset)
        if key not in self._dirs:
            root = self.image_root
            assert root is not None
            names = [piece, *DATASET_DIRS.get(dataset_key(dataset), ()), *([dataset] if dataset else [])]
            cands = [root / n for n in dict.fromkeys(names)] + [root]
            self._dirs[key] = [c for c in cands if c.is_dir()]
        return self._dirs[key]

    def _image_path(self, piece: str, dataset: str, image: str) -> Path:
        """The first candidate folder holding ``image``; else the first existing folder."""
        cands = self._candidates(piece, dataset)
        for c in cands:
            if (c / image).is_file():
                return c / image
        return cands[0] / image

    def _records(self) -> Iterator[ImageRecord]:
        assert self.image_root is not None
        by_image: dict[str, list[TextRecord]] = {}
        for file in self.files:
            piece = file.stem
            data = load_json(file)
            if not isinstance(data, dict):
                self.skip(file.name, "not a dict of items")
                continue
            op, kind = piece_op_kind(piece)
            for key, item in data.items():
                where = f"{piece}/{key}"
                # VALSE's benchmark is its valid items: those counted (invalid ones are cached, not counted)
                self.item_seen(0 if isinstance(item, dict) and is_valid(item.get("mturk")) is False else 1)
                if not isinstance(item, dict):
                    self.skip(where, "item is not an object")
                    continue
                image, caption = item.get("image_file"), clean_text(item.get("caption"))
                foils = (
                    item.get("foils")
                    if "foil" not in item and isinstance(item.get("foils"), list)
                    else [item.get("foil")]
                )
                foils = [f for f in (clean_text(x) for x in foils) if f is not None]
                if not isinstance(image, str) or not image:
                    self.skip(where, 'missing "image_file"')
                    continue
                if caption is None or not foils:
                    self.skip(where, "empty or missing caption / foil")
                    continue
                full = self._image_path(piece, str(item.get("dataset", "")), image)
                rel = full.relative_to(self.image_root) if full.is_relative_to(self.image_root) else full
                meta = {"piece": piece, "item": key, "valid": is_valid(item.get("mturk"))}
                meta |= {k: v for k, v in item.items() if k not in USED}
                texts = by_image.setdefault(rel.as_posix(), [])
                pos = len(texts)
                texts.append(TextRecord(caption, meta=dict(meta)))
                texts.extend(TextRecord(f, pos, op, kind, dict(meta)) for f in foils)
        for rel, texts in by_image.items():
            yield ImageRecord(rel, str(self.image_root / rel), texts)  # an absolute rel stays as is
