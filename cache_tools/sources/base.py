"""The common shape of every data source and the small helpers they share.

A source is opened on a path the user downloaded (a directory or a file) and yields
:class:`~cache_tools.sources.records.ImageRecord` objects in a fixed order: the cache writer resumes by
record position, so the same data must give the same stream every time. Entries the source
itself cannot use (a malformed JSON line, an empty caption, a missing field, a repeated record
id) are appended to ``source.skipped`` as ``(item, reason)`` while iterating, and iteration goes
on. The stream reads one record ahead, so when the last record has been handed out every entry
after it has been read too and ``skipped`` is complete, even if the consumer stops there.
Image files are never opened here: the writer opens them and records the unreadable ones.

Benchmark sources call :meth:`Source.item_seen` once per item of the published data (scored or
skipped); ``stats()["items"]`` is that count, which the evaluation report compares with the
number of items it scored and with the benchmark's published size.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from cache_tools.errors import UserError
from cache_tools.sources.records import ImageRecord

KINDS = {
    "obj": "object",
    "object": "object",
    "objects": "object",
    "ent": "object",
    "entity": "object",
    "att": "attribute",
    "attr": "attribute",
    "attribute": "attribute",
    "attributes": "attribute",
    "rel": "relation",
    "relation": "relation",
    "relations": "relation",
}
"""Spellings of the concept kinds in published benchmarks -> the kind names tflocal uses."""


def normalize_kind(value: Any) -> str:
    """``"obj"``/``"ent"``/``"Object"`` -> ``"object"`` etc.; unknown spellings -> ``""``."""
    return KINDS.get(str(value or "").strip().lower(), "")


def clean_text(value: Any) -> str | None:
    """A caption with surrounding whitespace removed, or ``None`` if it is not a non-empty string."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text or None


def resolve_path(value: str | Path, root: Path) -> str:
    """``value`` if absolute, else ``root / value``, as a string (never checked for existence)."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else root / p)


def load_json(path: Path) -> Any:
    """Parse one JSON file; a malformed file is a :class:`UserError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); re-download it") from err
    except OSError as err:
        raise UserError(f"cannot read {path}: {err}") from err


def first_dir(candidates: Iterable[Path]) -> Path | None:
    """The first of ``candidates`` that is an existing directory, or ``None``."""
    for c in candidates:
        if c.is_dir():
            return c
    return None


def parse_list(value: Any) -> list[str] | None:
    """An option given as ``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def select_files(name: str, files: list[Path], wanted: list[str] | None, what: str) -> list[Path]:
    """The ``files`` whose stems are ``wanted`` (all when None); UserError naming each missing one."""
    if wanted is None:
        return files
    stems = [f.stem for f in files]
    missing = [w for w in wanted if w not in stems]
    if missing:
        raise UserError(f"{name}: {what} {', '.join(missing)} not found; choices: {', '.join(stems)}")
    return [f for f in files if f.stem in wanted]


class Source(ABC):
    """A deterministic stream of :class:`ImageRecord` read from local files.

    Subclasses set ``name`` and ``OPTIONS`` (option name -> one-line help) and implement
    :meth:`_records`. ``len(source)`` and :meth:`describe` make one full pass the first time.

    Attributes:
        name: the format name (the ``FORMAT`` of ``"FORMAT:PATH"``).
        path: the file or directory the source reads.
        images: the image root given by ``images=`` (overrides the format's default), or None.
        options: the format-specific options as given.
        skipped: ``(item, reason)`` for entries the last pass could not use.
    """

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, str]] = {}

    def __init__(self, path: str | Path, images: str | Path | None = None, **options: Any) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise UserError(
                f"{self.name}: {self.path} does not exist; give the file or directory you downloaded "
                f"as {self.name}:PATH"
            )
        self.images = Path(images).expanduser() if images else None
        if self.images is not None and not self.images.is_dir():
            raise UserError(
                f"{self.name}: images={self.images} is not a directory; give the folder that holds the images"
            )
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            choices = ", ".join(f"{k} ({v})" for k, v in self.OPTIONS.items()) or "none"
            raise UserError(
                f"{self.name}: unknown option(s) {', '.join(unknown)}; options of {self.name}: {choices}"
            )
        self.options = {k: v for k, v in options.items() if v is not None}
        self.skipped: list[tuple[str, str]] = []
        self._stats: dict[str, int] | None = None
        self._n_items = 0

    @abstractmethod
    def _records(self) -> Iterator[ImageRecord]:
        """Yield the records in their fixed order; call :meth:`skip` for unusable entries."""

    def skip(self, item: str, reason: str) -> None:
        """Record that ``item`` was left out, and why."""
        self.skipped.append((item, reason))

    def item_seen(self, n: int = 1) -> None:
        """Count ``n`` items of the benchmark's data read (whether they become records or are skipped)."""
        self._n_items += n

    def __iter__(self) -> Iterator[ImageRecord]:
        self.skipped = []
        self._n_items = 0
        seen: set[str] = set()
        stats = {"images": 0, "captions": 0, "negatives": 0, "groups": 0, "items": 0}
        groups: set[str] = set()
        pending: ImageRecord | None = None
        for rec in self._records():
            if rec.id in seen:
                self.skip(
                    rec.id,
                    "duplicate record id (the first one is kept, this one is not cached); "
                    "give each entry a unique id",
                )
                continue
            seen.add(rec.id)
            stats["images"] += 1
            for t in rec.texts:
                stats["negatives" if t.positive >= 0 else "captions"] += 1
            if rec.group:
                groups.add(rec.group)
            if pending is not None:
                yield pending
            pending = rec  # held back until the next record (or the end) has been read
        stats["groups"] = len(groups)
        stats["items"] = self._n_items
        self._stats = stats
        if pending is not None:
            yield pending

    def stats(self) -> dict[str, int]:
        """Counts of the full stream: images, captions (positives), negatives, groups, and items
        (benchmark items in the data, scored or skipped; 0 for sources that do not count items)."""
        if self._stats is None:
            for _ in self:
                pass
        assert self._stats is not None
        return dict(self._stats)

    def __len__(self) -> int:
        return self.stats()["images"]

    def details(self) -> str:
        """Format-specific part of :meth:`describe` (image root, subset, split...)."""
        return ""

    def describe(self) -> str:
        """One line for the CLI summary, e.g.
        ``sugarcrepe:/data/sc - 5,136 images, 7,511 captions, 7,511 negatives, 0 skipped``."""
        s = self.stats()
        parts = [f"{s['images']:,} images", f"{s['captions']:,} captions", f"{s['negatives']:,} negatives"]
        if s["groups"]:
            parts.append(f"{s['groups']:,} groups")
        parts.append(f"{len(self.skipped):,} skipped")
        extra = self.details()
        return f"{self.name}:{self.path} - {', '.join(parts)}" + (f" ({extra})" if extra else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, images={self.images}, options={self.options})"
