"""The unit every data source yields and the cache writer consumes.

A source (``cache_tools.sources``) turns a benchmark or a manifest into a stream of
:class:`ImageRecord`: one image with the texts that belong to it (its captions, and the hard
negatives of those captions). The writer encodes records in order; a record's position in the
stream is what makes caching resumable, so a source must yield the same records in the same
order every time it is opened on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Box = tuple[float, float, float, float]
"""A crop box in pixels, PIL order: (left, upper, right, lower)."""


@dataclass
class TextRecord:
    """One caption or hard negative.

    Attributes:
        text: the caption as written.
        positive: -1 for a true caption of the record's image; for a negative, the index
            (within the same record's ``texts``) of the positive caption it negates.
        op: the operator that made a negative ("swap", "replace", "add", or a benchmark's own
            label such as "order"); "" for a positive.
        kind: what the operator touched ("object", "attribute", "relation"), "" if unknown.
        meta: anything else a benchmark needs later (subset, relation name, depth, ...);
            must be JSON-serializable.
    """

    text: str
    positive: int = -1
    op: str = ""
    kind: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageRecord:
    """One image and its texts.

    Attributes:
        id: unique within the source (e.g. the file name relative to the data root, plus a
            suffix when the same file is used twice with different boxes).
        image: a path to the image file, an already decoded ``PIL.Image.Image``, or ``None``
            for texts that belong to no image (their ``texts/image_index`` is -1).
        texts: the captions and negatives of this image.
        box: optional crop applied before preprocessing (ARO crops to a bounding box).
        group: the benchmark item this image belongs to ("" if none), e.g. a Winoground id;
            images of one item share it.
        meta: anything else a benchmark needs (split, role, scene graph, ...); JSON-serializable.
    """

    id: str
    image: str | Path | Any | None
    texts: list[TextRecord] = field(default_factory=list)
    box: Box | None = None
    group: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
