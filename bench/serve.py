"""`tflocal serve` under load: latency per search and requests/s with concurrent clients.

Starts ``tflocal serve`` (a subprocess: the very command the quickstart prints) on the
quickstart's test cache restricted to test_ood, with the global head and TFLocal, then sends
``POST /search`` requests (a ShapesWorld caption, both scorers, ``k``):

* one client, one request at a time (``--sequential`` requests): latency p50 / p90;
* ``--clients`` clients in threads, each sending its next request when the last one answers,
  ``--requests`` in all: requests/s and latency p50 / p90 under that load.

Every answer must be a 200 with both result lists. Queries are random ShapesWorld captions
("a large red circle left of a blue square", ...), a fixed seed. Ends with one JSON line.

    python bench/serve.py --run runs/quickstart --clients 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["square", "circle", "triangle", "star", "hexagon", "diamond"]
RELATIONS = ["left of", "right of", "above", "below"]


def queries(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = rng.choice(["", "large ", "small "])
        a, b = rng.sample(COLORS, 2)
        out.append(f"a {size}{a} {rng.choice(SHAPES)} {rng.choice(RELATIONS)} a {b} {rng.choice(SHAPES)}")
    return out


def start_server(run: Path, port: int, threads: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "tflocal.app.cli",
        "serve",
        "--cache",
        str(run / "caches" / "test.h5"),
        "--split",
        "test_ood",
        "--scorer",
        f"global head={run / 'runs' / 'global' / 'best.pt'}",
        "--scorer",
        f"TFLocal={run / 'runs' / 'tflocal' / 'best.pt'}",
        "--port",
        str(port),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(cmd, env=env)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 300) -> float:
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"tflocal serve exited with code {proc.returncode}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server not ready after {timeout} s")


def one(client, base: str, query: str, k: int) -> float:
    t0 = time.perf_counter()
    r = client.post(base + "/search", json={"query": query, "k": k}, timeout=120)
    dt = time.perf_counter() - t0
    body = r.json()
    if r.status_code != 200 or len(body["results"]) != 2 or not all(body["results"].values()):
        raise SystemExit(f"bad answer {r.status_code}: {r.text[:300]}")
    return dt * 1e3


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/quickstart", help="the quickstart's --out folder")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=160, help="requests in the concurrent phase")
    ap.add_argument("--sequential", type=int, default=40, help="requests in the one-client phase")
    ap.add_argument("-k", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of the server")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()

    run = Path(args.run)
    if not (run / "caches" / "test.h5").is_file():
        raise SystemExit(f"{run}/caches/test.h5 not found: run `tflocal quickstart --out {run}` first")
    base = f"http://127.0.0.1:{args.port}"
    proc = start_server(run, args.port, args.threads)
    try:
        ready = wait_ready(base, proc)
        health = httpx.get(base + "/health").json()
        qs = queries(args.sequential + args.requests + 8)
        with httpx.Client() as c:
            for q in qs[:8]:  # warm-up
                one(c, base, q, args.k)
            seq = [one(c, base, q, args.k) for q in qs[8 : 8 + args.sequential]]
        todo = qs[8 + args.sequential :]

        def client(i: int) -> list[float]:
            with httpx.Client() as c:
                return [one(c, base, q, args.k) for q in todo[i :: args.clients]]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            par = [x for xs in pool.map(client, range(args.clients)) for x in xs]
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    fig = {
        "images": health["images"],
        "scorers": health["scorers"],
        "k": args.k,
        "server_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "startup_s": round(ready, 1),
        "sequential_p50_ms": round(statistics.median(seq), 1),
        "sequential_p90_ms": round(float(np.percentile(seq, 90)), 1),
        "clients": args.clients,
        "concurrent_requests": len(par),
        "concurrent_req_per_s": round(len(par) / wall, 2),
        "concurrent_p50_ms": round(statistics.median(par), 1),
        "concurrent_p90_ms": round(float(np.percentile(par, 90)), 1),
    }
    print(
        f"\n{fig['images']} test_ood images, scorers {', '.join(fig['scorers'])}, k={args.k}, "
        f"server with {args.threads} threads on {fig['cpu_count']} CPUs (load {fig['load_avg_1m']})"
    )
    print(
        f"one client:   p50 {fig['sequential_p50_ms']} ms, p90 {fig['sequential_p90_ms']} ms ({len(seq)} requests)"
    )
    print(
        f"{args.clients} clients: {fig['concurrent_req_per_s']} req/s, p50 {fig['concurrent_p50_ms']} ms, "
        f"p90 {fig['concurrent_p90_ms']} ms ({len(par)} requests)"
    )
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
