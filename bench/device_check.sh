#!/usr/bin/env bash
# Runs the GPU benchmarks in one go: caching throughput (random-weight ViT-B/32, fp32 and bf16),
# bf16 training throughput of the heads, and re-ranking / late-interaction latency with the heads
# on the GPU. Each step runs under a timeout (STEP_TIMEOUT, RERANK_TIMEOUT seconds); its log goes
# to $OUT/<step>.log and a failing step does not stop the others. Prints each step's log tail and
# exit status, then $OUT/summary.json: each step's last JSON line.
#
# Usage:   bash bench/device_check.sh                (OUT defaults to /tmp/device_check)
# On CPU:  DEVICE=cpu N_CACHE=16 STEPS=2 IMAGES=2000 QUERIES=3 bash bench/device_check.sh
# Needs torch, transformers, h5py, accelerate, faiss-cpu, open_clip_torch, webdataset and
# lemminflect; wheels placed in .whl/ are installed into /tmp/site first. The first stage uses
# faiss-cpu, so only the heads run on the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DEVICE=${DEVICE:-cuda}
STEP_TIMEOUT=${STEP_TIMEOUT:-100}
"$PY" - <<'PYEOF' | tee "$OUT/env.log"
import json, torch
print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
PYEOF

step() {  # step NAME SECONDS ARGS...: run one bench under a timeout, keep its log, say how it ended
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" "$PY" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "== $name: exit $rc"
}
step cache_fp32 "$STEP_TIMEOUT" bench/cache.py --device "$DEVICE" --n "${N_CACHE:-2048}" --batch-size 256 --skip-reads
step cache_bf16 "$STEP_TIMEOUT" bench/cache.py --device "$DEVICE" --n "${N_CACHE:-2048}" --batch-size 256 --skip-reads --precision bf16
step train "$STEP_TIMEOUT" bench/train.py --devices "$DEVICE" --presets vitb32 --steps "${STEPS:-40}" --threads 0
step rerank "${RERANK_TIMEOUT:-240}" bench/rerank.py --device "$DEVICE" --images "${IMAGES:-20000}" --queries "${QUERIES:-20}" \
  --slow-queries 4 --cache /tmp/device_rerank.h5 --index-dir /tmp/device_rerank_index --threads 8

"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.json"
import json, pathlib, sys
out = {}
for log in sorted(pathlib.Path(sys.argv[1]).glob("*.log")):
    lines = [l for l in log.read_text().splitlines() if l.startswith("{")]
    try:
        out[log.stem] = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        out[log.stem] = None
print(json.dumps(out))
PYEOF
