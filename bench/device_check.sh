#!/usr/bin/env bash
# The GPU checks as one prepared script, for a session that is lent a device machine (the
# `device` tool's `run`): caching throughput (random-weight ViT-B/32, fp32 and bf16), bf16
# training throughput of the heads, and re-ranking / late-interaction latency with the heads on
# the GPU. Each step's log and its last JSON line go to OUT; a failing step does not stop the
# others. The machine has torch, transformers, h5py and accelerate; carry the rest as wheels:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl faiss-cpu open_clip_torch ftfy wcwidth webdataset braceexpand lemminflect
#
# then `run(command="bash bench/device_check.sh", carry=[".whl"], timeout_s=540)`. faiss-gpu's PyPI
# wheel (faiss-gpu-cu12, 48 MB; none for CUDA 13) needs CUDA 12's cuBLAS wheel besides, more than a
# call may carry (64 MiB), so the first stage stays on the CPU (faiss-cpu).
# Smoke test on a CPU: DEVICE=cpu N_CACHE=16 STEPS=2 IMAGES=2000 QUERIES=3 bash bench/device_check.sh
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
