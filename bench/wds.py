"""Benchmark of the ``wds:`` source: images/s read from webdataset tar shards vs from a folder.

Writes ``--n`` JPEG images (``--size`` px, random noise so they do not compress to nothing) once
as a folder of files with a JSONL manifest (``jsonl:``), once as ``--shards`` img2dataset-style
tar shards (``KEY.jpg`` + ``KEY.txt`` + ``KEY.json``), then times a full pass of each source with
every image decoded to RGB (what the cache writer does before preprocessing). The best of
``--repeats`` passes is kept for each. The last line is a JSON object of the figures.

    python bench/wds.py                 # 2,000 images of 256 px in 4 shards
    python bench/wds.py --n 8000 --size 384 --shards 8
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache_tools.sources import open_source  # noqa: E402
from cache_tools.write.writer import load_image  # noqa: E402


def make_data(root: Path, n: int, size: int, n_shards: int) -> tuple[str, str]:
    """-> (jsonl spec, wds spec) over the same n images and captions."""
    rng = np.random.default_rng(0)
    folder = root / "files"
    folder.mkdir()
    per = -(-n // n_shards)
    manifest, tars = [], []
    for s in range(n_shards):
        tars.append(tarfile.open(root / f"{s:05d}.tar", "w"))
    for k in range(n):
        arr = rng.integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
        img = Image.fromarray(arr).resize((size, size), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        data = buf.getvalue()
        key = f"{k // per:05d}{k % per:04d}"
        caption = f"a picture number {k}"
        (folder / f"{key}.jpg").write_bytes(data)
        manifest.append(json.dumps({"id": key, "image": f"files/{key}.jpg", "captions": [caption]}))
        tar = tars[k // per]
        for ext, payload in (
            ("jpg", data),
            ("txt", caption.encode()),
            ("json", json.dumps({"key": key, "width": size, "height": size}).encode()),
        ):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    for t in tars:
        t.close()
    (root / "m.jsonl").write_text("\n".join(manifest) + "\n")
    return f"jsonl:{root / 'm.jsonl'}", f"wds:{root}/{{00000..{n_shards - 1:05d}}}.tar"


def images_per_s(spec: str, repeats: int) -> tuple[float, int]:
    """Best images/s over ``repeats`` full passes (records read + images decoded to RGB)."""
    best, count = 0.0, 0
    for _ in range(repeats):
        src = open_source(spec)
        t0 = time.perf_counter()
        count = 0
        for rec in src:
            img = load_image(rec)
            count += img.width > 0
        best = max(best, count / (time.perf_counter() - t0))
    return best, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        files_spec, wds_spec = make_data(Path(d), args.n, args.size, args.shards)
        files, n_files = images_per_s(files_spec, args.repeats)
        shards, n_shards = images_per_s(wds_spec, args.repeats)
    assert n_files == n_shards == args.n, (n_files, n_shards)
    print(f"folder of files (jsonl:): {files:,.0f} images/s")
    print(f"tar shards (wds:):        {shards:,.0f} images/s")
    print(f"shards / files:           {shards / files:.2f}x")
    figures = {
        "images": args.n,
        "size_px": args.size,
        "shards": args.shards,
        "files_images_per_s": round(files, 1),
        "wds_images_per_s": round(shards, 1),
        "wds_over_files_ratio": round(shards / files, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
