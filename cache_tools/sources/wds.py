"""``wds:PATTERN``: image-caption pairs from webdataset tar shards, as img2dataset writes them.

PATTERN is one or more shard URLs joined by ``::``, each with brace ranges expanded
(``/data/cc3m/{00000..00331}.tar``), a local path or a ``pipe:COMMAND`` whose standard output is
the tar (``pipe:aws s3 cp s3://bucket/{00000..00099}.tar -``), as clip-retrieval and open_clip
take them; shards are opened with ``webdataset.gopen`` (``pip install webdataset``). A tar holds
per sample ``KEY.jpg`` / ``KEY.png`` / ``KEY.webp`` (the image), ``KEY.txt`` (the caption) and
``KEY.json`` (metadata: url, key, width, height, ...). Option ``wds_image_key`` names the image
extension(s), alternatives separated by ``;`` (default ``jpg;png;webp;jpeg``); ``wds_caption_key``
the caption's (default ``txt``); ``wds_meta_key`` the metadata's (default ``json``; ``""`` for none).

Streaming: one tar member at a time is read, nothing is listed in advance, and only the shard
list (not the samples) is held in memory; ``len()`` and ``describe()`` need a full pass, so the
cache build never asks for them. One record per sample: id ``<shard name>/<KEY>``, image a PIL
image decoded lazily from the bytes, texts ``[caption]``, meta the shard, key and the JSON
metadata (``exif`` dropped). A sample without image or caption, with undecodable image bytes or
an empty caption goes to ``skipped`` (item ``<shard>/<KEY>``); a missing or unreadable shard, or a
tar that breaks off, is recorded as ``shard <url>`` with the reason and the next shard is read.

Each shard is a unit of work: ``shard_records(i, skipped)`` streams shard ``i`` alone, which the
cache build uses to give each ``accelerate launch`` process its own shards and to resume a run at
shard granularity (:mod:`cache_tools.write.webdataset`).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cache_tools.errors import UserError
from cache_tools.sources.base import Source, parse_list
from cache_tools.sources.records import ImageRecord, TextRecord

KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
"""A tar member name -> (sample key, extension), as webdataset's ``base_plus_ext``."""


def require_webdataset() -> Any:
    """Import ``webdataset`` or raise a UserError saying how to install it."""
    try:
        import webdataset
    except ImportError as err:
        raise UserError("wds: sources need the webdataset package: pip install webdataset") from err
    return webdataset


def expand_pattern(pattern: str) -> list[str]:
    """``"a/{0..2}.tar::b.tar"`` -> ``["a/0.tar", "a/1.tar", "a/2.tar", "b.tar"]`` (braces expanded per part)."""
    from braceexpand import braceexpand

    return [u for part in pattern.split("::") if part.strip() for u in braceexpand(part.strip())]


def is_local(url: str) -> bool:
    return not url.startswith("pipe:") and "://" not in url


def shard_name(url: str) -> str:
    """The shard's file name without ``.tar`` (a pipe's last word): the prefix of its record ids."""
    last = url.split()[-1] if url.startswith("pipe:") else url
    if last == "-" and url.startswith("pipe:"):
        last = url.split()[-2] if len(url.split()) > 1 else url
    name = last.rstrip("/").rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".tar") else name


class WdsSource(Source):
    """Webdataset tar shards; see the module docstring."""

    name = "wds"
    OPTIONS = {
        "wds_image_key": "image extension(s), ';'-separated alternatives (default jpg;png;webp;jpeg)",
        "wds_caption_key": "caption extension (default txt)",
        "wds_meta_key": "metadata extension (default json; empty for none)",
    }
    per_shard = True
    """The cache build writes one part per shard (``cache_tools.write.webdataset``)."""

    def __init__(self, path: str | Path, images: str | Path | None = None, **options: Any) -> None:
        require_webdataset()
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            choices = ", ".join(f"{k} ({v})" for k, v in self.OPTIONS.items())
            raise UserError(f"wds: unknown option(s) {', '.join(unknown)}; options of wds: {choices}")
        if images:
            raise UserError("wds: images= does not apply; the images are inside the tar shards")
        self.pattern = str(path)
        self.path = Path(self.pattern)
        self.images = None
        self.options = {k: v for k, v in options.items() if v is not None}
        self.skipped: list[tuple[str, str]] = []
        self._stats: dict[str, int] | None = None
        self._n_items = 0
        self.shards = expand_pattern(self.pattern)
        if not self.shards:
            raise UserError(
                f"wds: pattern {self.pattern!r} names no shard; e.g. wds:/data/cc3m/{{00000..00331}}.tar"
            )
        local = [u for u in self.shards if is_local(u)]
        if local and not any(Path(u).expanduser().is_file() for u in local):
            raise UserError(
                f"wds: none of the {len(local)} shards of {self.pattern!r} exists (first: {local[0]}); "
                "check the path and the brace range"
            )
        self.image_keys = parse_list(
            str(self.options.get("wds_image_key", "jpg;png;webp;jpeg")).replace(";", ",")
        )
        self.caption_key = str(self.options.get("wds_caption_key", "txt")).lstrip(".")
        self.meta_key = str(self.options.get("wds_meta_key", "json")).lstrip(".")
        if not self.image_keys or not self.caption_key:
            raise UserError("wds: wds_image_key and wds_caption_key must not be empty")
        self.image_keys = [k.lstrip(".").lower() for k in self.image_keys]

    def details(self) -> str:
        return f"{len(self.shards):,} shards; image {';'.join(self.image_keys)}, caption {self.caption_key}"

    def __repr__(self) -> str:
        return f"WdsSource({self.pattern!r}, options={self.options})"

    def shard_names(self) -> list[str]:
        """Each shard's name (file name without ``.tar``), in shard order."""
        return [shard_name(u) for u in self.shards]

    # -- reading ----------------------------------------------------------------------------

    def _members(self, url: str) -> Iterator[tuple[str, str, bytes]]:
        """(key, extension, bytes) of each regular member of one tar, in tar order."""
        import tarfile

        wds = require_webdataset()
        with wds.gopen(str(Path(url).expanduser()) if is_local(url) else url) as stream:
            tar = tarfile.open(fileobj=stream, mode="r|*")
            for info in tar:
                if not info.isreg():
                    continue
                m = KEY_EXT.match(info.name)
                if not m or m.group(1).rsplit("/", 1)[-1].startswith("__"):
                    continue
                f = tar.extractfile(info)
                data = f.read() if f is not None else b""
                if len(data) != info.size:
                    raise OSError(f"member {info.name} cut short ({len(data)} of {info.size} bytes)")
                tar.members = []  # streaming: do not keep the member list
                yield m.group(1), m.group(2).lower(), data

    def _samples(self, url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
        """Consecutive members with one key grouped: ``(key, {extension: bytes})``."""
        key, sample = None, {}
        for k, ext, data in self._members(url):
            if k != key:
                if key is not None:
                    yield key, sample
                key, sample = k, {}
            sample[ext] = data
        if key is not None:
            yield key, sample

    def _record(self, name: str, key: str, sample: dict[str, bytes], skipped: list) -> ImageRecord | None:
        from PIL import Image

        rid = f"{name}/{key}"
        ext = next((e for e in self.image_keys if e in sample), None)
        if ext is None:
            skipped.append((rid, f"no image member ({';'.join(self.image_keys)}); set wds_image_key"))
            return None
        raw = sample.get(self.caption_key)
        caption = raw.decode("utf-8", "replace").strip() if raw is not None else None
        if not caption:
            what = "empty caption" if raw is not None else f"no .{self.caption_key} caption member"
            skipped.append((rid, f"{what}; set wds_caption_key if captions use another extension"))
            return None
        try:
            image = Image.open(io.BytesIO(sample[ext]))
        except Exception as err:  # noqa: BLE001 - PIL raises several types for bad bytes
            skipped.append((rid, f"undecodable .{ext} image ({type(err).__name__}); the sample is corrupt"))
            return None
        meta: dict[str, Any] = {"shard": name, "key": key}
        if self.meta_key and self.meta_key in sample:
            try:
                info = json.loads(sample[self.meta_key])
                if isinstance(info, dict):
                    meta |= {k: v for k, v in info.items() if k not in ("exif", "caption", "key")}
            except (json.JSONDecodeError, UnicodeDecodeError):
                meta["meta_error"] = f"malformed .{self.meta_key}"
        return ImageRecord(rid, image, [TextRecord(caption)], meta=meta)

    def shard_records(self, index: int, skipped: list[tuple[str, str]]) -> Iterator[ImageRecord]:
        """The records of shard ``index`` alone, in tar order; what cannot be used goes to ``skipped``."""
        url = self.shards[index]
        name = shard_name(url)
        if is_local(url) and not Path(url).expanduser().is_file():
            skipped.append((f"shard {url}", "file not found; download it or fix the pattern"))
            return
        seen: set[str] = set()
        n = 0
        try:
            for key, sample in self._samples(url):
                if key in seen:
                    skipped.append((f"{name}/{key}", "duplicate key in the shard (the first one is kept)"))
                    continue
                seen.add(key)
                rec = self._record(name, key, sample, skipped)
                if rec is not None:
                    n += 1
                    yield rec
        except Exception as err:  # noqa: BLE001 - a broken shard is recorded, the next one is read
            skipped.append(
                (
                    f"shard {url}",
                    f"unreadable after {n} samples ({type(err).__name__}: {err}); re-download it",
                )
            )

    def _records(self) -> Iterator[ImageRecord]:
        for i in range(len(self.shards)):
            yield from self.shard_records(i, self.skipped)

    def __iter__(self) -> Iterator[ImageRecord]:
        """All shards in order (duplicate ids are checked within a shard only, to keep memory flat)."""
        self.skipped = []
        self._n_items = 0
        stats = {"images": 0, "captions": 0, "negatives": 0, "groups": 0, "items": 0}
        for rec in self._records():
            stats["images"] += 1
            stats["captions"] += 1
            yield rec
        self._stats = stats
