"""Does the bf16 text tower change a finished quickstart's figures? Copies the run's test cache,
re-encodes only its captions with ``towers:effnet-lite0+minilm@text-bf16`` (the image tower is
the same fp32 one, so patches are bitwise equal), scores the run's trained heads on both caches
and prints each subset's pair accuracy side by side.

    python bench/text_bf16_accuracy.py --run runs/quickstart     # ~11k captions: minutes on CPU

(The copy keeps the run's encoder name so that the checkpoints accept it; it is a measurement,
not a cache to keep.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache_tools.encoders import load_encoder  # noqa: E402
from cache_tools.store.reader import open_cache  # noqa: E402
from cache_tools.write.encode import encode_texts  # noqa: E402
from tflocal.evaluate import evaluate  # noqa: E402
from tflocal.scoring.load import load_scorer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a quickstart --out folder (towers encoder)")
    args = ap.parse_args()
    run = Path(args.run)
    src = run / "caches" / "test.h5"
    with tempfile.TemporaryDirectory() as d:
        dst = Path(d) / "test_text_bf16.h5"
        shutil.copy(src, dst)
        enc = load_encoder("towers:effnet-lite0+minilm@text-bf16")
        with h5py.File(dst, "r+") as f:
            strings = [s.decode() if isinstance(s, bytes) else str(s) for s in f["texts/strings"][:]]
            e = encode_texts(enc, strings, 64)
            toks = np.concatenate(e.tokens)
            if toks.shape != f["texts/tokens"].shape:
                raise SystemExit(f"token counts differ: {toks.shape} vs {f['texts/tokens'].shape}")
            diff = float(np.abs(f["texts/tokens"][:].astype(np.float32) - toks).max())
            f["texts/tokens"][...] = toks
            f["texts/global"][...] = e.global_
        res: dict[tuple[str, str], dict[str, float]] = {}
        for name, path in (("fp32", src), ("bf16", dst)):
            cache = open_cache(path)
            for head in ("global", "tflocal"):
                scorer = load_scorer(
                    str(run / "runs" / head / "best.pt"), cache, device="cpu", progress=False
                )
                for r in evaluate("shapesworld", cache, scorer):
                    res.setdefault((r.subset, head), {})[name] = 100 * r.value
            cache.close()
    worst = worst_main = 0.0
    print(f"cached tokens max |bf16 - fp32| = {diff:.4f}")
    for (subset, head), v in res.items():
        delta = v["bf16"] - v["fp32"]
        worst = max(worst, abs(delta))
        if subset.count("/") <= 1 and "depth" not in subset:
            worst_main = max(worst_main, abs(delta))
            print(f"  {subset:24s} {head:8s} fp32 {v['fp32']:5.1f}  bf16 {v['bf16']:5.1f}  {delta:+.1f}")
    print(
        json.dumps(
            {
                "token_max_abs_diff": round(diff, 4),
                "max_abs_diff_points_split_and_operator": round(worst_main, 2),
                "max_abs_diff_points_all_subsets": round(worst, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
