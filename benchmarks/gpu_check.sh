#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: builds the CUDA extension in place, runs the GPU
# tests (tests/test_cuda.py, and the CPU tests of the pure ops they compare against) and the GPU
# benchmark, and leaves the logs and the benchmark's JSON in OUT_DIR.
#
#   benchmarks/gpu_check.sh [OUT_DIR]        (default bench-results/)
#
# Environment: PYTHON (default python3, with torch, numpy, pytest and ninja installed), CUDA_HOME
# (default /usr/local/cuda), TORCH_CUDA_ARCH_LIST (default 9.0: Hopper), MAX_JOBS (default: all cores),
# LIMIT (seconds for the tests and for the benchmark, each; default 600: a kernel that never returns
# ends the run instead of holding the machine).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-results}"
py="${PYTHON:-python3}"
mkdir -p "$out"
export HANAMI_CUDA=1
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export PATH="$CUDA_HOME/bin:$PATH"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # benchmarks/gpu.py imports the in-place build

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$CUDA_HOME/bin/nvcc" --version | tail -n 2
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$out/device.txt"

start=$(date +%s)
if ! "$py" setup.py --quiet build_ext --inplace > "$out/build.log" 2>&1; then
    tail -n 60 "$out/build.log"
    echo "CUDA build failed (full log: $out/build.log)"
    exit 1
fi
echo "CUDA build: $(( $(date +%s) - start )) s"

limit="${LIMIT:-600}"
timeout "$limit" "$py" -m pytest -v --tb=short -rs -p no:cacheprovider tests/test_cuda.py tests/test_infer.py 2>&1 |
    tee "$out/tests.txt"
tests=$?
timeout "$limit" "$py" benchmarks/gpu.py --json "$out/gpu.json" 2>&1 | tee "$out/bench.txt"
bench=$?
echo "tests exit $tests, benchmark exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
