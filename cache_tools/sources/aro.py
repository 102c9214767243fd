"""``aro:PATH`` with ``subset=`` one of ``vg_relation, vg_attribution, coco_order, flickr_order``
(ARO, mertyg/vision-language-models-are-bows). The aliases ``vg_relation:PATH``,
``vg_attribution:PATH``, ``coco_order:PATH`` and ``flickr_order:PATH`` do the same.

* VG-Relation / VG-Attribution: ``PATH`` is the ARO folder holding
  ``visual_genome_relation.json`` / ``visual_genome_attribution.json`` (or that file itself);
  images in ``images/`` beside it or ``images=``. One record per item (items reuse images with
  different boxes): id ``<image_path>#<item index>``, box ``(bbox_x, bbox_y, bbox_x + bbox_w,
  bbox_y + bbox_h)``, texts ``[true_caption, false_caption (negative of 0)]``. The false
  caption swaps the two objects of the relation (VG-R: ``op="swap", kind="object"``) or the two
  attributes (VG-A: ``op="swap", kind="attribute"``). Text meta keeps ``relation_name`` /
  ``attributes`` and the item's other fields; VG-R's symmetric relations are kept (the metric
  drops them).
* COCO-Order / Flickr30k-Order: ``PATH`` is a folder holding ARO's ``coco_karpathy_test.json``
  / ``flickr30k_test.json`` (or Karpathy's ``dataset_coco.json`` / ``dataset_flickr30k.json``,
  whose test split is used), or that file; images under ``images=`` or the JSON's folder. One
  record per image; for each caption, the ``pre_caption``-ed caption (positive) then its four
  ARO perturbations (``op="order"``, meta ``perturbation`` and ``procedure``).
  ``perturbations=aro`` reproduces ARO's negatives exactly (spaCy ``en_core_web_sm`` tags, NLTK
  tokens, one global seed, captions in file order; :mod:`cache_tools.sources.aro_official`;
  ``seed=`` default 1 as ARO's); it needs ``pip install spacy nltk``, ``python -m spacy download
  en_core_web_sm`` and NLTK's punkt data. ``perturbations=tflocal`` uses tflocal's offline
  heuristic tagger (:mod:`cache_tools.sources.word_order`; ``seed=`` default 0): its negatives are
  not ARO's and its numbers are not comparable with published ones (procedure ``tflocal``, and
  the evaluation labels every such row). Default ``auto``: ``aro`` when installed, else ``tflocal``
  with a notice. Items: one per caption.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.aro_official import INSTALL, OfficialShuffler, load_official_tools
from cache_tools.sources.base import Source, clean_text, first_dir, load_json, resolve_path
from cache_tools.sources.karpathy import image_root_for, read_caption_file
from cache_tools.sources.records import ImageRecord, TextRecord
from cache_tools.sources.word_order import perturb, pre_caption

FILES = {
    "vg_relation": ("visual_genome_relation.json",),
    "vg_attribution": ("visual_genome_attribution.json",),
    "coco_order": ("coco_karpathy_test.json", "dataset_coco.json"),
    "flickr_order": ("flickr30k_test.json", "dataset_flickr30k.json"),
}
VG_KIND = {"vg_relation": "object", "vg_attribution": "attribute"}
VG_USED = {"image_path", "true_caption", "false_caption", "bbox_x", "bbox_y", "bbox_w", "bbox_h"}


class AroSource(Source):
    """ARO's four sets; see the module docstring."""

    name = "aro"
    OPTIONS = {
        "subset": f"which ARO set: {', '.join(FILES)}",
        "seed": "seed of the order perturbations (default 1 for perturbations=aro, as ARO's; 0 for tflocal)",
        "perturbations": "order sets: aro (ARO's exact procedure, needs spaCy), tflocal (heuristic), auto (default)",
        "max_words": "order sets: captions cut to this many words, as ARO does (default 30)",
    }

    def __init__(self, path: str | Path, images: str | Path | None = None, **options: Any) -> None:
        super().__init__(path, images, **options)
        self.subset = str(self.options.get("subset", ""))
        if self.subset not in FILES:
            raise UserError(
                f"{self.name}: subset={self.subset or '(missing)'}; choose one of {', '.join(FILES)}"
            )
        try:
            seed = self.options.get("seed")
            self.seed: int | None = None if seed is None else int(seed)
            self.max_words = int(self.options.get("max_words", 30))
        except ValueError as err:
            raise UserError(f"{self.name}: seed and max_words must be integers ({err})") from err
        if self.path.is_file():
            self.json = self.path
        else:
            found = [self.path / f for f in FILES[self.subset] if (self.path / f).is_file()]
            if not found:
                raise UserError(f"{self.name}: no {' or '.join(FILES[self.subset])} in {self.path}")
            self.json = found[0]
        self.procedure = str(self.options.get("perturbations", "auto")).lower()
        if self.procedure not in ("auto", "aro", "tflocal"):
            raise UserError(f"{self.name}: perturbations={self.procedure}; choose aro, tflocal or auto")
        self._tools: Any = None
        if self.subset not in VG_KIND and self.procedure != "tflocal":
            tools = load_official_tools()
            if isinstance(tools, str):
                if self.procedure == "aro":
                    raise UserError(
                        f"{self.name}: perturbations=aro needs ARO's tools: {tools}; run: {INSTALL}"
                    )
                print(
                    f"tflocal: {self.subset}: {tools}, so its negatives come from tflocal's heuristic perturbations, "
                    f"not comparable to published numbers; for ARO's exact ones run: {INSTALL}",
                    file=sys.stderr,
                )
                self.procedure = "tflocal"
            else:
                self._tools, self.procedure = tools, "aro"
        self.image_root: Path | None = None
        if self.subset in VG_KIND:
            self.image_root = self.images or first_dir([self.json.parent / "images"])
            if self.image_root is None:
                raise UserError(
                    f"{self.name}: no image folder {self.json.parent / 'images'}; pass images=DIR"
                )

    def details(self) -> str:
        extra = "" if self.subset in VG_KIND else f"; perturbations: {self.procedure}"
        return f"subset: {self.subset}; file: {self.json.name}{extra}"

    def _records(self) -> Iterator[ImageRecord]:
        yield from (self._vg() if self.subset in VG_KIND else self._order())

    def _vg(self) -> Iterator[ImageRecord]:
        data = load_json(self.json)
        if not isinstance(data, list):
            raise UserError(f"{self.name}: {self.json} should be a list of items")
        assert self.image_root is not None
        kind = VG_KIND[self.subset]
        for k, item in enumerate(data):
            self.item_seen()
            if not isinstance(item, dict):
                self.skip(f"item {k}", "not an object")
                continue
            true, false = clean_text(item.get("true_caption")), clean_text(item.get("false_caption"))
            image = item.get("image_path")
            if true is None or false is None:
                self.skip(f"item {k}", "empty or missing true_caption / false_caption")
                continue
            if not isinstance(image, str) or not image:
                self.skip(f"item {k}", 'missing "image_path"')
                continue
            try:
                x, y, w, h = (float(item[f"bbox_{c}"]) for c in "xywh")
            except (KeyError, TypeError, ValueError):
                self.skip(f"item {k}", "missing or non-numeric bbox_x/bbox_y/bbox_w/bbox_h")
                continue
            meta = {"subset": self.subset, "item": k} | {f: v for f, v in item.items() if f not in VG_USED}
            texts = [TextRecord(true, meta=dict(meta)), TextRecord(false, 0, "swap", kind, dict(meta))]
            yield ImageRecord(
                f"{image}#{k}",
                resolve_path(image, self.image_root),
                texts,
                box=(x, y, x + w, y + h),
                meta={"item": k},
            )

    def _order(self) -> Iterator[ImageRecord]:
        items = read_caption_file(self.json)
        root = image_root_for(self.json, self.images, items)
        shuffler = None
        if self.procedure == "aro":  # one generator pair for the whole file, as ARO's seed_all
            shuffler = OfficialShuffler(*self._tools, seed=1 if self.seed is None else self.seed)
        for im in items:
            if im.split is not None and im.split != "test":
                continue
            official = (
                [shuffler.perturb(c if isinstance(c, str) else "") for c in im.captions] if shuffler else []
            )
            self.item_seen(len(im.captions))
            if not im.rel:
                self.skip(
                    f"image {im.meta}", f"missing image file name ({len(im.captions)} captions not scored)"
                )
                continue
            texts: list[TextRecord] = []
            for j, raw in enumerate(im.captions):
                text = clean_text(raw)
                caption = pre_caption(text, self.max_words) if text else ""
                if not caption:
                    self.skip(f"{im.rel} caption {j}", "empty caption")
                    continue
                pos = len(texts)
                texts.append(TextRecord(caption, meta={"caption_index": j, "perturbation": "original"}))
                if shuffler is not None:
                    negs = {k: pre_caption(v, self.max_words) for k, v in official[j].items()}
                else:
                    negs = perturb(text, f"{im.rel}#{j}", self.seed or 0, self.max_words)  # type: ignore[arg-type]
                for name, neg in negs.items():
                    meta = {"caption_index": j, "perturbation": name, "procedure": self.procedure}
                    texts.append(TextRecord(neg, pos, "order", "", meta))
            if not texts:
                self.skip(im.rel, "no usable caption")
                continue
            yield ImageRecord(im.rel, str(root / im.rel), texts, meta=dict(im.meta))


def aro_alias(subset: str) -> Any:
    """A factory for ``<subset>:PATH`` that opens ``aro:PATH`` with ``subset=<subset>``."""

    def make(path: str | Path, images: str | Path | None = None, **options: Any) -> AroSource:
        if options.get("subset", subset) != subset:
            raise UserError(f"{subset}: subset= is fixed by the format name; use aro:PATH subset=... instead")
        return AroSource(path, images, **(options | {"subset": subset}))

    make.__doc__ = f"``{subset}:PATH`` = ``aro:PATH`` with ``subset={subset}``."
    return make
