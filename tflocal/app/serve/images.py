"""Raw images behind a cache's image ids, reopened through the data source that built the cache.

A cache stores embeddings, not pixels. Its root attributes name the source (``source``:
``FORMAT:PATH``) and the creating config (image root, format options, split), which is how the
evaluation heatmaps find the photos again; :class:`ImageStore` does the same once, lazily, and
keeps an id -> record map. A cache whose source is gone still serves search: images then answer
:class:`ImageUnavailable` with the reason.
"""

from __future__ import annotations

import ast
import io
import json
import threading
from pathlib import Path
from typing import Any


class ImageUnavailable(LookupError):
    """The raw image of an id cannot be served (the message says why)."""


def source_options(attrs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(image root or None, source options) recorded in a cache's ``config`` attribute.

    Caches from ``tflocal cache`` record the CacheConfig (``images``, ``options``); the
    quickstart records ``split``."""
    cfg = attrs.get("config") or {}
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except ValueError:
            try:
                cfg = ast.literal_eval(cfg)
            except (ValueError, SyntaxError):
                cfg = {}
    if not isinstance(cfg, dict):
        return None, {}
    options = dict(cfg.get("options") or {})
    if cfg.get("split") and "split" not in options:
        options["split"] = cfg["split"]
    return cfg.get("images") or None, options


class ImageStore:
    """Raw images of a cache's ids, read through ``source`` (default: the cache's own).

    Args:
        cache: an open cache (its ``image_ids`` and attributes are used).
        source: ``FORMAT:PATH`` overriding the recorded source (data moved elsewhere).
        images: image root overriding the recorded one.
    """

    def __init__(self, cache: Any, source: str | None = None, images: str | None = None):
        root, self.options = source_options(cache.attrs)
        self.source = source or str(cache.attrs.get("source") or "")
        self.images = images or root
        if source:  # another source's options may not apply
            self.options = {k: v for k, v in self.options.items() if k == "split"}
        self.wanted = {str(i) for i in cache.image_ids}
        self._records: dict[str, Any] | None = None
        self._error = ""
        self._lock = threading.Lock()

    def _index(self) -> dict[str, Any]:
        """id -> record, read once from the source (thread-safe)."""
        with self._lock:
            if self._records is not None:
                return self._records
            records: dict[str, Any] = {}
            if not self.source:
                self._error = "the cache records no data source; pass --source FORMAT:PATH"
            else:
                try:
                    from cache_tools.sources import open_source

                    try:
                        src = open_source(self.source, images=self.images, **self.options)
                    except Exception:  # noqa: BLE001 - recorded options may not fit; try without
                        src = open_source(self.source, images=self.images)
                    for rec in src:
                        if rec.id in self.wanted and rec.image is not None:
                            records[rec.id] = rec
                            if len(records) == len(self.wanted):
                                break
                    if not records:
                        self._error = f"source {self.source} holds none of the cache's image ids"
                except Exception as err:  # noqa: BLE001 - search still works without pixels
                    self._error = f"source {self.source} cannot be read ({type(err).__name__}: {err})"
            self._records = records
            return records

    def available(self) -> bool:
        """Whether at least one raw image can be served."""
        return bool(self._index())

    def open(self, image_id: str) -> Any:
        """The RGB PIL image of ``image_id`` (cropped to its box, as cached)."""
        records = self._index()
        rec = records.get(str(image_id))
        if rec is None:
            why = self._error or f"image {image_id!r} was not found in source {self.source}"
            raise ImageUnavailable(why)
        try:
            from cache_tools.encoders.images import load_image
        except ImportError:  # older trees
            from cache_tools.write.writer import load_image

        try:
            return load_image(rec)
        except Exception as err:  # noqa: BLE001 - a file gone since the cache was built
            raise ImageUnavailable(
                f"image {image_id!r} cannot be read ({type(err).__name__}: {err})"
            ) from err

    def file_or_bytes(self, image_id: str) -> tuple[Path | None, bytes, str]:
        """(path of an unmodified image file, or None; else encoded bytes; media type)."""
        rec = self._index().get(str(image_id))
        img = getattr(rec, "image", None)
        if isinstance(img, (str, Path)) and rec.box is None and Path(img).is_file():
            suffix = Path(img).suffix.lower()
            media = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
            if suffix in media:
                return Path(img), b"", media[suffix]
        pil = self.open(image_id)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=90)
        return None, buf.getvalue(), "image/jpeg"
