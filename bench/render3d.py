"""Speed of the 3D world's renderer (:func:`tflocal.world3d.render.render`): N sampled scenes
(3-7 objects, :func:`tflocal.world3d.scene.sample_scene`, seeded) rendered on 1 worker, then on
2 fork workers; prints seconds per image (wall clock, and the process's CPU time, which other
load on the machine disturbs less), images per second per core, the 2-worker speed-up, and the
PNG encoding time per image (what writing the images adds).

Prints a short table, then one last line holding a JSON object with every figure.

    python bench/render3d.py [--n 64] [--image-size 224] [--supersample 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tflocal.world3d.render import DEFAULT_SUPERSAMPLE, render  # noqa: E402
from tflocal.world3d.scene import sample_scene  # noqa: E402

SCENES: list[dict] = []
SUPERSAMPLE = DEFAULT_SUPERSAMPLE


def _render_one(k: int) -> int:
    """Render scene ``k`` of :data:`SCENES` (inherited by fork workers); its first byte, so the
    work cannot be skipped."""
    return render(SCENES[k], SUPERSAMPLE).tobytes()[0]


def main() -> None:
    global SUPERSAMPLE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="scenes to render")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument(
        "--supersample", type=int, default=DEFAULT_SUPERSAMPLE, help="rays per pixel side on edges"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.n < 2 or args.image_size < 8 or args.supersample < 1:
        ap.error("give --n >= 2, --image-size >= 8 and --supersample >= 1")
    SUPERSAMPLE = args.supersample
    rng = random.Random(args.seed)
    SCENES[:] = [sample_scene(rng, args.image_size) for _ in range(args.n)]
    n_objects = sum(len(s["objects"]) for s in SCENES)

    render(SCENES[0], SUPERSAMPLE)  # warm: ray grids cached before the fork
    t, cpu = time.perf_counter(), time.process_time()
    images = [render(s, SUPERSAMPLE) for s in SCENES]
    one, cpu = time.perf_counter() - t, time.process_time() - cpu
    t = time.perf_counter()
    for im in images:
        im.save(io.BytesIO(), format="PNG")
    png = time.perf_counter() - t

    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_render_one, range(2), chunksize=1)  # both workers started
        t = time.perf_counter()
        pool.map(_render_one, range(args.n), chunksize=max(1, args.n // 8))
        two = time.perf_counter() - t

    s_per_image = one / args.n
    ratio = one / two
    print(
        f"{args.n} scenes ({n_objects / args.n:.1f} objects each), {args.image_size} px, "
        f"supersample {SUPERSAMPLE} on edges"
    )
    print(
        f"  1 worker    {s_per_image * 1000:8.1f} ms/image   {1 / s_per_image:7.1f} images/s"
        f"   ({cpu / args.n * 1000:.1f} ms CPU time/image)"
    )
    print(
        f"  2 workers   {two / args.n * 1000:8.1f} ms/image   {args.n / two:7.1f} images/s   ratio {ratio:.2f}"
    )
    print(f"  PNG encode  {png / args.n * 1000:8.1f} ms/image")
    figures = {
        "images_per_s_per_core": round(1 / s_per_image, 2),
        "s_per_image": round(s_per_image, 5),
        "cpu_s_per_image": round(cpu / args.n, 5),
        "images_per_s_2_workers": round(args.n / two, 2),
        "parallel_ratio_2_vs_1": round(ratio, 3),
        "png_encode_s_per_image": round(png / args.n, 5),
        "objects_per_scene": round(n_objects / args.n, 2),
        "n": args.n,
        "image_size": args.image_size,
        "supersample": SUPERSAMPLE,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
