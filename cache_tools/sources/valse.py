"""``valse:DIR``: the VALSE piece files (Heidelberg-NLP/VALSE ``data/``).

DIR (or ``DIR/data``) holds one JSON per piece (``existence.json``, ``plurals.json``,
``counting-hard.json``, ``relations.json``, ``action-replacement.json``, ``actant-swap.json``,
``coreference-standard.json``, ``foil-it.json`` ...), each a dict item id -> ``{dataset,
image_file, caption, foil, mturk: {caption, foil, other}, ...}``. ``pieces=`` selects some
(file stems, comma-separated); default all, in file-name order.

Images come from several datasets. The image root is ``images=`` or ``DIR/images``; an item's
image is looked up in ``<root>/<piece>/``, then ``<root>/<dataset>/`` (the item's ``dataset``
field, e.g. ``visual7w``, ``SWiG``), then ``<root>/`` — the first of these folders that exists.

One record per distinct image (id: its path under the root); its texts are, item after item,
the caption (positive) and the foil (its negative). Every text's meta holds ``piece``,
``item``, ``mturk`` and ``valid`` (caption chosen by >= 2 of 3 annotators; ``None`` without
votes): the metric keeps only valid items, the source keeps all. ``op``/``kind`` by piece:
actant swap -> swap/object, action replacement and relations -> replace/relation, foil-it ->
replace/object, others -> replace with no kind (the piece name says what changed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.records import ImageRecord, TextRecord
from cache_tools.sources.base import Source, clean_text, first_dir, load_json, parse_list

PIECE_OPS: dict[str, tuple[str, str]] = {
    "actant-swap": ("swap", "object"),
    "action-replacement": ("replace", "relation"),
    "relation": ("replace", "relation"),
    "foil-it": ("replace", "object"),
}
"""Piece file-name prefix -> (op, kind); pieces not listed are ("replace", "")."""

USED = {"image_file", "caption", "foil", "foils"}


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
        wanted = parse_list(self.options.get("pieces"))
        if wanted is not None:
            stems = [f.stem for f in files]
            missing = [p for p in wanted if p not in stems]
            if missing:
                raise UserError(
                    f"{self.name}: piece(s) {', '.join(missing)} not found; choices: {', '.join(stems)}"
                )
            files = [f for f in files if f.stem in wanted]
        self.files = files
        self.image_root = self.images or first_dir([self.path / "images", data_dir / "images"])
        if self.image_root is None:
            raise UserError(f"{self.name}: no image folder {self.path / 'images'}; pass images=DIR")
        self._dirs: dict[tuple[str, str], Path] = {}

    def details(self) -> str:
        return f"pieces: {', '.join(f.stem for f in self.files)}; images: {self.image_root}"

    def _image_dir(self, piece: str, dataset: str) -> Path:
        key = (piece, dataset)
        if key not in self._dirs:
            root = self.image_root
            assert root is not None
            cands = [root / piece] + ([root / dataset] if dataset else [])
            self._dirs[key] = first_dir(cands) or root
        return self._dirs[key]

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
                full = self._image_dir(piece, str(item.get("dataset", ""))) / image
                rel = full.relative_to(self.image_root) if full.is_relative_to(self.image_root) else full
                meta = {"piece": piece, "item": key, "valid": is_valid(item.get("mturk"))}
                meta |= {k: v for k, v in item.items() if k not in USED}
                texts = by_image.setdefault(rel.as_posix(), [])
                pos = len(texts)
                texts.append(TextRecord(caption, meta=dict(meta)))
                texts.extend(TextRecord(f, pos, op, kind, dict(meta)) for f in foils)
        for rel, texts in by_image.items():
            yield ImageRecord(rel, str(self.image_root / rel), texts)  # an absolute rel stays as is
