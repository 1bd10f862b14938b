#!/usr/bin/env bash
# The prepared GPU benchmark: a Qwen2.5-VL-3B-sized random-weight model at batch sizes 1, 8, 32 and 64 over the
# same 64 synthetic episodes (turns/s, episodes/s, peak GPU memory). Needs only torch, transformers>=5.17,
# numpy and pillow; pb-build runs from this checkout. Wheels listed in bench/gpu-wheels.txt and placed in
# bench/wheels/ are installed first (offline) into .bench-deps/. Writes $OUT/eval_batched_gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.}
PY=${PYTHON:-python3}
extra=""
if compgen -G "bench/wheels/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target .bench-deps bench/wheels/*.whl
    extra=".bench-deps:"
fi
export PYTHONPATH="$PWD:${extra}${PYTHONPATH:-}"
"$PY" -c "import torch, transformers, numpy, PIL; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'cuda', torch.cuda.is_available())"
exec "$PY" bench/eval_batched.py --gpu --episodes 64 --advance model --batch-sizes 1,8,32,64 \
    --max-new-tokens 50 --json "$OUT/eval_batched_gpu.json" "$@"
