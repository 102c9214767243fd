"""A cache of COCO's scale on one machine: write, train-time reads, memory, late-interaction index.

Writes a synthetic cache with ViT-B/32 shapes (49 x 512 fp16 patches, 512-d fp32 globals,
512-d fp16 caption tokens, 8-20 tokens per caption with mean 14 as COCO's captions under the
CLIP tokenizer, 5 captions per image, 5 hard negatives per caption) through the real writer
(``cache_tools.write.writer.write_cache``: parts, then assembled; ``--shards`` files, merged
into one logical cache by ``cache_tools.store.shards.merge_shards`` as ``tflocal cache`` does
under several processes; here the shards are written one after another). The encoder is a
stand-in (:class:`SyntheticEncoder`) that returns random arrays of the right shapes, so what is
timed is the writer, not a model. Then it measures, in this order:

1. raw disk write throughput: ``--dd-gb`` of zeros written in 16 MiB blocks, fsync'd, deleted,
   once through the page cache (``dd conv=fsync``, the ratio's denominator) and once with
   ``O_DIRECT`` (``dd oflag=direct``: the device without the page cache, where the file system
   allows it); cache write throughput (MB/s of finished files over the write's wall time, every
   file fsync'd in it as the raw write is; the writer sends its aligned payload chunks past the
   page cache, ``cache_tools.write.direct_io``) and its ratio to each (``--only write`` stops
   here);
2. the training input pipeline (``BatchDataset`` + ``make_loader`` as ``tflocal train`` builds
   them: batch 256 units, 4 hard negatives, 3 in-batch negatives, the default head's ``needs``,
   ``--workers`` DataLoader workers) in pairs/s, over ``--read-batches`` batches after one of
   warm-up, in fresh subprocesses: from disk over the whole cache with the default full shuffle
   (``data.shuffle_chunk: 0``) and with chunk-level shuffling (``shuffle_chunk`` = 5 units per
   image x ``Cache.block_rows``), with the file's pages dropped from the page cache first
   (``posix_fadvise(DONTNEED)``, which needs no root); and from memory
   (``Cache.load_into_memory``) over the first shard, a subset that fits in RAM. Peak memory of
   the disk readers is sampled every 0.2 s over the process and its workers: the sum of RSS
   (counts pages shared by forked workers once per process) and of PSS;
3. the GPU's demand in pairs/s: the default training head (``tflocal``: segments read-out,
   width 512, depth 4) counted by ``torch.utils.flop_counter`` on one real batch, scaled to a
   batch of 256 units, forward + backward = 3 x forward, on one H100 SXM at ``--mfu`` of its
   989 TFLOP/s dense bf16 peak;
4. the late-interaction index (``build_late_index``, float16 storage, default centroids) of a
   random-init segments head (width 128, depth 1: the index stores its 128-d image-side vectors)
   over at least ``--index-images`` images: the cache's shards listed again as often as needed
   (one virtual cache, no copy); build time and index bytes per image; query latency
   (``LateIndex.search``, k 10, median of ``--queries`` cached captions). 1M images are
   simulated as ceil(1M / N) shards of that N-image index searched one after another, their
   top k merged as ``tflocal search`` merges per-shard indexes (``late_shards.merge_topk``:
   faiss ``ResultHeap``, ``IndexShards``' successive ids); the shards' content is the same
   index, so each shard search costs what a shard of different images would (``--sharded-images``).

    .venv/bin/python bench/scale.py --dir /tmp/scale                # 30 GB, then deleted
    .venv/bin/python bench/scale.py --dir /tmp/scale --images 64 --index-images 256 --dd-gb 0.05 --read-batch 16
    .venv/bin/python bench/scale.py --dir /tmp/scale --images 3000 --dd-gb 1.5 --only write

The last line printed is a JSON object of the figures (ratios end in ``_ratio``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache_tools.encoders.base import Encoder, ImageOutput, TextOutput  # noqa: E402
from cache_tools.sources.records import ImageRecord, TextRecord  # noqa: E402

P, D, D_GLOBAL = 49, 512, 512
CAPTIONS_PER_IMAGE, NEGS_PER_CAPTION = 5, 5
BATCH, N_NEG, K_INBATCH = 256, 4, 3
H100_BF16_DENSE = 989e12
MIN_TOKENS, MAX_TOKENS = 8, 20
MEAN_TOKENS = MIN_TOKENS + 12 * 0.5  # binomial(12, 0.5) + 8

COLORS = "red blue green yellow purple orange white black gray brown".split()
SHAPES = "cube ball cone cylinder dog cat car bus chair table".split()
SIZES = "small large tiny big".split()
RELATIONS = [["left", "of"], ["right", "of"], ["above"], ["below"]]
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
FILLER = "on a wooden table in the bright room near the old window today".split()


def tokens_for(rng: random.Random) -> int:
    """Tokens of one caption (start and end included): 8-20, mean 14."""
    return MIN_TOKENS + sum(rng.random() < 0.5 for _ in range(12))


def caption_words(rng: random.Random, n_words: int) -> list[str]:
    """A parseable caption of exactly ``n_words`` (>= 6) words: two objects and a relation."""
    c1, c2 = rng.sample(COLORS, 2)
    s1, s2 = rng.sample(SHAPES, 2)
    rel = rng.choice(RELATIONS)
    head = [c1, s1]
    tail = [c2, s2]
    extras = 0
    words = head + rel + tail
    while len(words) < n_words and extras < 4:
        if extras == 0:
            head = ["a", *head]
        elif extras == 1:
            tail = ["a", *tail]
        elif extras == 2:
            head = [head[0], rng.choice(SIZES), *head[1:]]
        else:
            tail = [tail[0], rng.choice(SIZES), *tail[1:]]
        extras += 1
        words = head + rel + tail
    return (words + FILLER)[:n_words]


def negatives(rng: random.Random, words: list[str]) -> list[tuple[str, str, str]]:
    """NEGS_PER_CAPTION hard negatives of ``words`` (same length): (text, op, kind)."""
    colors = [i for i, w in enumerate(words) if w in COLORS]
    shapes = [i for i, w in enumerate(words) if w in SHAPES]
    out = []
    w = list(words)  # swap the two colours
    w[colors[0]], w[colors[1]] = w[colors[1]], w[colors[0]]
    out.append((" ".join(w), "swap", "attribute"))
    w = list(words)  # swap the two objects
    w[shapes[0]], w[shapes[1]] = w[shapes[1]], w[shapes[0]]
    out.append((" ".join(w), "swap", "object"))
    w = list(words)  # replace a colour
    w[colors[0]] = rng.choice([c for c in COLORS if c not in words])
    out.append((" ".join(w), "replace", "attribute"))
    w = list(words)  # replace an object
    w[shapes[1]] = rng.choice([s for s in SHAPES if s not in words])
    out.append((" ".join(w), "replace", "object"))
    w = [OPPOSITE.get(x, x) for x in words]  # the opposite relation
    out.append((" ".join(w), "replace", "relation"))
    return out[:NEGS_PER_CAPTION]


def synthetic_record(i: int, image) -> ImageRecord:
    """Record ``i``: CAPTIONS_PER_IMAGE captions, each followed by its NEGS_PER_CAPTION negatives."""
    rng = random.Random(i)
    texts = []
    for _ in range(CAPTIONS_PER_IMAGE):
        words = caption_words(rng, tokens_for(rng) - 2)
        pos = len(texts)
        texts.append(TextRecord(" ".join(words)))
        texts += [TextRecord(t, positive=pos, op=op, kind=kind) for t, op, kind in negatives(rng, words)]
    return ImageRecord(id=f"img{i:09d}", image=image, texts=texts)


class SyntheticRecords(Sequence):
    """Records ``lo..hi-1`` made on demand (a Sequence with a length, as the sharded writer needs)."""

    def __init__(self, hi: int, lo: int = 0):
        from PIL import Image

        self.lo, self.hi = lo, hi
        self.image = Image.new("RGB", (1, 1))

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, k):
        if isinstance(k, slice):
            start, stop, step = k.indices(len(self))
            if step != 1:
                raise ValueError("SyntheticRecords: slices with a step are not supported")
            return SyntheticRecords(self.lo + stop, self.lo + start)
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        return synthetic_record(self.lo + (k % len(self)), self.image)


class SyntheticEncoder(Encoder):
    """The encoder contract with ViT-B/32 shapes and random outputs (no model): images
    [B, 3, 1, 1] -> patches fp16 [B, 49, 512] and globals fp32 [B, 512]; each caption -> one
    token per word plus start and end tokens, fp16 [T, 512], and a global fp32 [512]. Outputs
    cycle through fixed random pools, so producing them costs a copy, not a random draw."""

    name = "synthetic:vit-b32"
    space = "joint"
    global_space = "joint"
    image_dim = text_dim = D
    global_image_dim = global_text_dim = D_GLOBAL
    grid = (7, 7)
    image_size = (224, 224)
    context_length = 77

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.device = torch.device("cpu")
        self._patches = torch.randn(512, P, D, generator=g).half()
        self._globals = torch.randn(4096, D_GLOBAL, generator=g)
        self._tokens = torch.randn(65536, D, generator=g).half()
        self._i = self._t = 0

    def preprocess(self, image) -> torch.Tensor:
        return torch.zeros(3, 1, 1)

    def encode_images(self, pixels: torch.Tensor) -> ImageOutput:
        b = pixels.shape[0]
        rows = (self._i + np.arange(b)) % len(self._patches)
        self._i += b
        return ImageOutput(
            self._take(self._patches, rows), self._take(self._globals, rows % len(self._globals))
        )

    @staticmethod
    def _take(pool: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """Rows ``rows`` of a pool [N, ...] -> [len(rows), ...], gathered by numpy (cheaper than torch's
        CPU gather, so the stand-in costs a copy)."""
        return torch.from_numpy(pool.numpy()[rows])

    def encode_texts(self, texts: list[str]) -> TextOutput:
        strings = [["<start_of_text>", *t.split(), "<end_of_text>"] for t in texts]
        tokens, span = [], self._tokens.shape[0] - MAX_TOKENS - 64
        for s in strings:
            o = self._t % span
            tokens.append(self._tokens[o : o + len(s)])
            self._t += 61
        rows = (self._t + np.arange(len(texts))) % len(self._globals)
        return TextOutput(tokens, strings, self._take(self._globals, rows), [False] * len(texts))


def bytes_per_image() -> float:
    """Expected payload bytes of one image with its captions and negatives."""
    texts = CAPTIONS_PER_IMAGE * (1 + NEGS_PER_CAPTION)
    return P * D * 2 + D_GLOBAL * 4 + texts * (MEAN_TOKENS * D * 2 + D_GLOBAL * 4)


def dd_write(path: Path, n_bytes: int, block: int = 16 << 20, direct: bool = False) -> float | None:
    """Raw disk write throughput in MB/s: ``n_bytes`` of zeros in ``block`` writes, fsync'd;
    deleted. ``direct``: with ``O_DIRECT`` from a page-aligned buffer (None where the file system
    refuses it)."""
    import mmap

    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if direct else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        if not direct:
            raise
        return None
    with mmap.mmap(-1, block) as buf:  # zeros, page-aligned
        t0 = time.perf_counter()
        try:
            written = 0
            while written < n_bytes:
                written += os.write(fd, buf)
            os.fsync(fd)
        except OSError:
            if not direct:
                raise
            return None
        finally:
            os.close(fd)
            path.unlink()
        dt = time.perf_counter() - t0
    return written / dt / 1e6


def drop_pages(paths: Sequence[Path]) -> None:
    """Evict the files' pages from the page cache (no root needed)."""
    for p in paths:
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def write_shards(out: Path, n_images: int, shards: int, batch_size: int) -> tuple[list[Path], float, float]:
    """The cache through the real writer -> (shard paths, seconds, bytes of the finished files)."""
    from cache_tools.store.shards import merge_shards
    from cache_tools.write.writer import shard_path, write_cache

    enc = SyntheticEncoder()
    records = SyntheticRecords(n_images)
    paths = [out if shards == 1 else shard_path(out, i, shards) for i in range(shards)]
    t0 = time.perf_counter()
    for i in range(shards):
        write_cache(records, enc, out, batch_size=batch_size, shard=(i, shards), progress=False)
        print(f"  shard {i + 1}/{shards} written ({time.perf_counter() - t0:.0f} s)", flush=True)
    if shards > 1:
        merge_shards(out, paths)
    for p in {*paths, out}:  # on disk, as the raw write is: not only in the page cache
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
    dt = time.perf_counter() - t0
    return paths, dt, float(sum(p.stat().st_size for p in paths))


class MemorySampler:
    """Peak summed RSS and PSS (bytes) of this process and its children, sampled in a thread."""

    def __init__(self, every: float = 0.2):
        import psutil

        self.proc, self.every = psutil.Process(), every
        self.rss = self.pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = pss = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    m = p.memory_full_info()
                    rss, pss = rss + m.rss, pss + m.pss
                except Exception:  # noqa: BLE001 - a worker that just exited
                    pass
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            self._stop.wait(self.every)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def default_head(attrs):
    from tflocal.models import ModelConfig, build_head

    torch.manual_seed(0)
    return build_head("tflocal", ModelConfig(), attrs)


def auto_shuffle(path: Path) -> str:
    """What ``data.shuffle: auto`` picks for the cache at ``path`` here: 'chunk' or 'full'."""
    from cache_tools.store.reader import open_cache
    from tflocal.training.shuffle import shuffle_chunk_for

    cache = open_cache(path)
    n_units = int(cache.file["images/ids"].shape[0]) * CAPTIONS_PER_IMAGE
    return "chunk" if shuffle_chunk_for("auto", 0, cache, n_units, in_memory=False) else "full"


def read_phase(args: argparse.Namespace) -> dict:
    """One input-pipeline measurement (run in a fresh subprocess): pairs/s and peak memory."""
    from cache_tools.store.reader import open_cache
    from tflocal.pairs.candidates import BatchDataset, build_units, make_loader

    with MemorySampler() as mem:
        cache = open_cache(args.read_cache)
        if args.in_memory:
            cache.load_into_memory()
        units = build_units(cache)
        needs = default_head(cache.attrs).needs
        chunk = CAPTIONS_PER_IMAGE * cache.block_rows if args.chunk_shuffle else 0
        ds = BatchDataset(
            cache,
            units,
            batch_size=args.read_batch,
            n_neg=N_NEG,
            k_inbatch=K_INBATCH,
            needs=needs,
            seed=0,
            shuffle_chunk=chunk,
        )
        ds.plan = ds.plan[: args.read_batches + 1]
        pairs, t0 = 0, None
        for k, batch in enumerate(make_loader(ds, args.workers)):
            if k == 0:
                t0 = time.perf_counter()  # after the first batch: workers started, parser warm
                continue
            pairs += batch.n_pairs
        dt = time.perf_counter() - t0 if t0 is not None else 0.0
    if pairs == 0:
        raise SystemExit(
            f"{len(units)} units give fewer than 2 batches of {args.read_batch}: lower --read-batch"
        )
    return {
        "pairs_per_s": pairs / dt,
        "batches": len(ds.plan) - 1,
        "shuffle_chunk": chunk,
        "peak_rss": mem.rss,
        "peak_pss": mem.pss,
        "payload_bytes": cache.payload_bytes(),
    }


def run_read_phase(args: argparse.Namespace, cache: Path, in_memory: bool, chunk: bool) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--read-cache",
        str(cache),
        "--read-batches",
        str(args.read_batches),
        "--workers",
        str(args.workers),
        "--read-batch",
        str(args.read_batch),
    ]
    cmd += ["--in-memory"] if in_memory else []
    cmd += ["--chunk-shuffle"] if chunk else []
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench/scale.py: the read phase failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def gpu_demand(cache_path: Path, mfu: float) -> dict:
    """Pairs/s one H100 consumes training the default head at batch 256 (see module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cache_tools.store.reader import open_cache
    from tflocal.pairs.candidates import build_units, make_batch

    cache = open_cache(cache_path)
    head = default_head(cache.attrs).eval()
    units = build_units(cache)
    b = min(32, len(units))
    batch = make_batch(cache, units.subset(np.arange(b)), n_neg=N_NEG, k_inbatch=K_INBATCH, needs=head.needs)
    pairs = batch.pairs(head.needs, dedup_images=bool(getattr(head, "accepts_pair_image", False)))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        head(pairs)
    fwd_per_pair = counter.get_total_flops() / batch.n_pairs
    pairs_per_step = BATCH * (1 + N_NEG + K_INBATCH)
    step_flops = 3 * fwd_per_pair * pairs_per_step
    step_s = step_flops / (H100_BF16_DENSE * mfu)
    return {
        "gpu_fwd_gflop_per_pair": round(fwd_per_pair / 1e9, 4),
        "gpu_step_tflop_batch256": round(step_flops / 1e12, 3),
        "gpu_assumed_mfu": mfu,
        "gpu_demand_pairs_per_s": round(pairs_per_step / step_s, 0),
    }


def index_phase(shard_paths: list[Path], work: Path, min_images: int, queries: int, sharded: int) -> dict:
    from cache_tools.store.reader import open_cache
    from cache_tools.store.shards import merge_shards
    from tflocal.models import ModelConfig, build_head
    from tflocal.retrieval import LateIndex, build_late_index
    from tflocal.retrieval.late_shards import merge_topk
    from tflocal.scoring.head import HeadScorer

    first = open_cache(work / "cache.h5")
    repeat = max(1, math.ceil(min_images / first.n_images))
    cache = (
        first
        if repeat == 1
        else open_cache(merge_shards(work / "index_cache.h5", list(shard_paths) * repeat))
    )
    torch.manual_seed(0)
    head = build_head(
        "tflocal", ModelConfig(width=128, depth=1, heads=4, readout="segments"), cache.attrs
    ).eval()
    folder = work / "index"
    t0 = time.perf_counter()
    store = build_late_index(cache, head, folder, storage="float16", name="segments", progress=False)
    build_s = time.perf_counter() - t0
    index_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    late = LateIndex(store, HeadScorer(head, "segments", cache, batch_size=256, progress=False))
    rows = np.flatnonzero(cache.positive_index == -1)
    rows = np.random.default_rng(0).choice(rows, min(queries, len(rows)), replace=False)
    late.search(late.cached_caption(int(rows[0])), k=10)  # warm-up
    one, many = [], []
    n_shards = math.ceil(sharded / cache.n_images)
    for r in rows:
        texts = late.cached_caption(int(r))
        t = time.perf_counter()
        late.search(texts, k=10)
        one.append(time.perf_counter() - t)
    for r in rows[: max(3, len(rows) // 4)]:
        texts = late.cached_caption(int(r))
        t = time.perf_counter()
        hits = []
        for s in range(n_shards):  # each shard: the same index, its rows offset by the shard
            ids, scores, _ = late.search(texts, k=10)
            hits.append((ids + s * cache.n_images, scores))
        merge_topk(hits, 10)
        many.append(time.perf_counter() - t)
    return {
        "index_images": int(cache.n_images),
        "index_repeats_of_cache": repeat,
        "index_build_s": round(build_s, 1),
        "index_bytes_per_image": round(index_bytes / cache.n_images, 0),
        "index_gb": round(index_bytes / 1e9, 3),
        "query_ms_index_images": round(1e3 * float(np.median(one)), 1),
        "sharded_images": n_shards * int(cache.n_images),
        "query_ms_sharded": round(1e3 * float(np.median(many)), 1),
        "query_sharded_shards": n_shards,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/tflocal_scale", help="work folder (removed at the end)")
    ap.add_argument("--gb", type=float, default=30.0, help="cache size in GB (1e9 bytes) of payload")
    ap.add_argument("--images", type=int, default=None, help="images instead of --gb")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256, help="writer batch (images per encoder call)")
    ap.add_argument("--dd-gb", type=float, default=4.0, help="raw disk write test size")
    ap.add_argument("--read-batches", type=int, default=40, help="batches timed per read measurement")
    ap.add_argument("--read-batch", type=int, default=BATCH, help="units per training batch read")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (data.num_workers default)")
    ap.add_argument("--mfu", type=float, default=0.3, help="assumed fraction of the H100's bf16 peak")
    ap.add_argument("--index-images", type=int, default=100_000, help="least images in the index")
    ap.add_argument("--sharded-images", type=int, default=1_000_000, help="corpus simulated by shards")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument(
        "--only",
        choices=["write"],
        default=None,
        help="run only this stage ('write': the raw disk write and the cache write)",
    )
    ap.add_argument("--read-cache", help=argparse.SUPPRESS)
    ap.add_argument("--in-memory", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chunk-shuffle", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.read_cache:  # a read phase, in its own process
        print(json.dumps(read_phase(args)))
        return
    n_images = args.images or int(args.gb * 1e9 / bytes_per_image())
    if n_images < 2 * args.shards or args.shards < 1:
        ap.error(f"give at least 2 images per shard ({n_images} images for {args.shards} shards)")
    work = Path(args.dir)
    if work.exists() and any(work.iterdir()):
        ap.error(f"{work} exists and is not empty: give a new --dir")
    work.mkdir(parents=True, exist_ok=True)
    try:
        figures = run(args, work, n_images)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))


def run(args: argparse.Namespace, work: Path, n_images: int) -> dict:
    free = shutil.disk_usage(work).free
    # the cache, one shard's parts while it is assembled, the raw write test
    need = n_images * bytes_per_image() * (1 + 1 / args.shards) * 1.05 + args.dd_gb * 1e9
    if need > free:
        raise SystemExit(
            f"bench/scale.py: {work} has {free / 1e9:.0f} GB free, the run needs ~{need / 1e9:.0f} GB"
        )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(
        f"{n_images} images x {CAPTIONS_PER_IMAGE} captions x (1 + {NEGS_PER_CAPTION} negatives), "
        f"~{n_images * bytes_per_image() / 1e9:.1f} GB in {args.shards} shards under {work}; RAM {ram / 2**30:.1f} GiB",
        flush=True,
    )
    fig: dict = {"images": n_images, "texts": n_images * CAPTIONS_PER_IMAGE * (1 + NEGS_PER_CAPTION)}
    dd = dd_write(work / "dd.bin", int(args.dd_gb * 1e9))
    print(f"raw disk write             {dd:8.0f} MB/s ({args.dd_gb} GB, 16 MiB blocks, fsync)", flush=True)
    dd_direct = dd_write(work / "dd.bin", int(args.dd_gb * 1e9), direct=True)
    print(
        f"raw disk write, O_DIRECT   {dd_direct:8.0f} MB/s" if dd_direct else "raw disk write, O_DIRECT   refused here",
        flush=True,
    )
    out = work / "cache.h5"
    paths, write_s, size = write_shards(out, n_images, args.shards, args.batch_size)
    write_mbs = size / write_s / 1e6
    print(
        f"cache write                {write_mbs:8.0f} MB/s ({size / 1e9:.2f} GB in {write_s:.0f} s)",
        flush=True,
    )
    fig.update(
        cache_gb=round(size / 1e9, 2),
        ram_gib=round(ram / 2**30, 1),
        cache_over_ram_ratio=round(size / ram, 2),
        shards=args.shards,
        raw_disk_write_mb_s=round(dd, 0),
        cache_write_s=round(write_s, 1),
        cache_write_mb_s=round(write_mbs, 0),
        write_over_raw_disk_ratio=round(write_mbs / dd, 3),
        raw_disk_direct_write_mb_s=round(dd_direct, 0) if dd_direct else None,
        write_over_raw_direct_ratio=round(write_mbs / dd_direct, 3) if dd_direct else None,
    )
    if args.only == "write":
        return fig
    rates = {}
    for name, cache, mem, chunk in (
        ("disk_full_shuffle", out, False, False),
        ("disk_chunk_shuffle", out, False, True),
        ("memory_first_shard", paths[0], True, False),
    ):
        drop_pages(paths)
        r = run_read_phase(args, cache, mem, chunk)
        rates[name] = r
        print(
            f"input pipeline {name:<19} {r['pairs_per_s']:8.0f} pairs/s  peak RSS {r['peak_rss'] / 2**30:.2f} GiB "
            f"(PSS {r['peak_pss'] / 2**30:.2f}), shuffle_chunk {r['shuffle_chunk']}, {r['batches']} batches",
            flush=True,
        )
    mem_rate = rates["memory_first_shard"]["pairs_per_s"]
    for name in ("disk_full_shuffle", "disk_chunk_shuffle"):
        fig[f"{name}_pairs_per_s"] = round(rates[name]["pairs_per_s"], 0)
        fig[f"{name}_over_memory_ratio"] = round(rates[name]["pairs_per_s"] / mem_rate, 3)
        fig[f"{name}_peak_rss_gib"] = round(rates[name]["peak_rss"] / 2**30, 2)
        fig[f"{name}_peak_pss_gib"] = round(rates[name]["peak_pss"] / 2**30, 2)
    fig["disk_chunk_shuffle_chunk_units"] = rates["disk_chunk_shuffle"]["shuffle_chunk"]
    fig["auto_shuffle"] = auto_shuffle(out)
    print(f"data.shuffle auto picks     {fig['auto_shuffle']} shuffle for this cache", flush=True)
    fig["memory_pairs_per_s"] = round(mem_rate, 0)
    fig["memory_subset_gb"] = round(rates["memory_first_shard"]["payload_bytes"] / 1e9, 2)
    fig["memory_peak_rss_gib"] = round(rates["memory_first_shard"]["peak_rss"] / 2**30, 2)
    fig["read_batches"] = args.read_batches
    fig["read_batch_units"] = args.read_batch
    fig["workers"] = args.workers
    fig.update(gpu_demand(out, args.mfu))
    best = max(fig["disk_full_shuffle_pairs_per_s"], fig["disk_chunk_shuffle_pairs_per_s"])
    fig["disk_best_over_gpu_demand_ratio"] = round(best / fig["gpu_demand_pairs_per_s"], 4)
    print(
        f"GPU demand (H100, MFU {args.mfu})   {fig['gpu_demand_pairs_per_s']:8.0f} pairs/s "
        f"({fig['gpu_fwd_gflop_per_pair']} GFLOP forward per pair)",
        flush=True,
    )
    drop_pages(paths)
    fig.update(index_phase(paths, work, args.index_images, args.queries, args.sharded_images))
    print(
        f"late index {fig['index_images']} images: built in {fig['index_build_s']} s, "
        f"{fig['index_bytes_per_image']:.0f} B/image; query {fig['query_ms_index_images']} ms, "
        f"{fig['sharded_images']} as {fig['query_sharded_shards']} shards {fig['query_ms_sharded']} ms",
        flush=True,
    )
    return fig


if __name__ == "__main__":
    main()
