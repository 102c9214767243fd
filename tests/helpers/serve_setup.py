"""Shared set-up of the `tflocal serve` tests: a tiny cache with images on disk, a TFLocal
checkpoint, and a real uvicorn server in a thread."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cache_tools.encoders import load_encoder
from cache_tools.sources import open_source
from cache_tools.write.writer import write_cache
from helpers.tiny_models import make_tiny_openclip

COLORS = ["red", "blue", "green", "yellow"]
SHAPES = ["square", "circle", "triangle"]


def caption(i: int) -> str:
    a, b = COLORS[i % 4], COLORS[(i + 1) % 4]
    return f"a {a} {SHAPES[i % 3]} left of a {b} {SHAPES[(i + 1) % 3]}"


def build(d: Path) -> dict:
    """12 images in two manifests (splits 'seen': 8, 'held': 4), their cache, a segments checkpoint."""
    import torch

    from cache_tools.store.reader import open_cache
    from tflocal.models import ModelConfig, build_head
    from tflocal.models.checkpoint import save_checkpoint

    data = d / "data"
    (data / "imgs").mkdir(parents=True)
    lines: dict[str, list[str]] = {"held": [], "seen": []}
    for i in range(12):
        arr = (np.random.default_rng(i).random((40, 40, 3)) * 255).astype("uint8")
        Image.fromarray(arr).save(data / "imgs" / f"{i:02d}.png")
        rec = {"id": f"img{i:02d}", "image": f"imgs/{i:02d}.png", "captions": [caption(i), f"photo {i}"]}
        lines["seen" if i < 8 else "held"].append(json.dumps(rec))
    for split, rows in lines.items():
        (data / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    enc = load_encoder(make_tiny_openclip(d))
    spec = f"jsonl:{data}"
    write_cache(open_source(spec), enc, d / "c.h5", batch_size=6, source=spec, progress=False)
    with open_cache(d / "c.h5") as cache:
        cfg = ModelConfig(
            width=16, depth=1, heads=2, readout="segments", max_text_tokens=int(cache.attrs["context_length"])
        )
        torch.manual_seed(0)
        head = build_head("tflocal", cfg, cache.attrs).eval()
        ckpt = save_checkpoint(d / "local.pt", head, "tflocal", cfg, None, cache.signature, step=1)
    return {"cache": d / "c.h5", "ckpt": ckpt, "data": data, "encoder": enc}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app, timeout: float = 30.0):
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    import httpx
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"server on {base} did not start in {timeout} s")
        time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
