#!/usr/bin/env bash
# GPU check of training at scale (issue 16), on a machine with an NVIDIA GPU and a CUDA build of torch:
#   1. installs mlpot beside that torch (its other dependencies as wheels from $WHEELS where the machine has no
#      network: `bash scripts/check_gpu.sh --fetch-wheels` gets them on a machine that has one);
#   2. runs the CUDA tests (tests/test_cuda.py) and the force-path parity tests (tests/test_force_paths.py);
#   3. times training steps of the on-the-fly (autograd) path on CUDA, descriptor=acsf and bessel_acsf on the
#      three-element alloy set (scripts/benchmark_training_scale.py steps): atoms/s and peak GPU memory, with
#      torch's index_add_ and with torch-scatter where that is installed.
# Usage: bash scripts/check_gpu.sh            (N=500 frames, BATCH=16 frames per step; OUT=outputs/gpu_check)
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS="${WHEELS:-.gpu_wheels}"
if [ "${1:-}" = "--fetch-wheels" ]; then
  PYVER="${PYVER:-3.12}"
  mkdir -p "$WHEELS"
  pip wheel -q --no-deps -w "$WHEELS" ase hydra-core omegaconf "antlr4-python3-runtime==4.9.*" || exit 1
  pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" vesin || exit 1
  ls -la "$WHEELS"
  exit 0
fi
PY="${PYTHON:-python3}"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1
if [ -d "$WHEELS" ]; then
  $PY -m pip install -q --no-index --find-links "$WHEELS" ase hydra-core omegaconf vesin || exit 1
fi
$PY -m pip install -q --no-deps --no-build-isolation -e . || exit 1
OUT="${OUT:-outputs/gpu_check}"
mkdir -p "$OUT"
echo "== CUDA and force-path tests"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_force_paths.py 2>&1 | tail -4 | tee "$OUT/tests.txt"
echo "== on-the-fly training steps on CUDA"
$PY scripts/benchmark_training_scale.py steps --device cuda --sizes "${N:-500}" --batch-size "${BATCH:-16}" \
  --out "$OUT" > "$OUT/steps.txt" 2>&1
tail -8 "$OUT/steps.txt"
