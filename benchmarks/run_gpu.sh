#!/usr/bin/env bash
# The GPU checks of lowcam's Triton kernels and metrics, in one run of at most 9 minutes on an H100/H200.
#
# Run from the repository root on the GPU machine (no internet, no install step needed):
#     PYTHONPATH=. bash benchmarks/run_gpu.sh
# Everything is written under $OUT (default benchmarks/results), at most 9 files:
#     gpu_tests.txt                  environment, then `pytest -m "cuda or triton"` on the ops tests, compiled
#                                    kernels (no TRITON_INTERPRET), the components' and the metrics' CUDA tests
#     cuda_ops.{json,md}             bench_ops: loop / torch / triton over the full size grid
#     cuda_ops_compile.{json,md}     bench_ops: torch.compile of the torch backend at B=64, 56×56, C=200
#     cuda_step.{json,md}            bench_step: one ORNet stage-2 step, fp32 and bf16, batch 16 and 64
#     metrics_cuda.{json,md}         bench_metrics: MaxBoxAccV2 and "ornet" over 5,000 maps on the GPU
# Each step has its own time limit, and a failing step does not stop the later ones.
set -uo pipefail

OUT="${OUT:-benchmarks/results}"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="${PYTHONPATH:-.}"
unset TRITON_INTERPRET
mkdir -p "$OUT"
status=0

{
    "$PYTHON" - <<'EOF'
import torch, triton
print(f"torch {torch.__version__}, triton {triton.__version__}, device {torch.cuda.get_device_name()}")
EOF
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    echo
    timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider -m "cuda or triton" \
        tests/test_ops_entropy.py tests/test_ops_area.py tests/test_ops_erasing.py tests/test_ops_opcheck.py
    echo
    # the torch backend of every component on CUDA (the tests parametrized over the device) and "auto"
    timeout 40 "$PYTHON" -m pytest -q -p no:cacheprovider -k cuda \
        tests/test_entropy.py tests/test_area.py tests/test_erasing.py tests/test_backend.py
    echo
    # the metrics: per-threshold counts on the GPU equal those on the CPU, every protocol
    timeout 30 "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests/test_metrics_accuracy.py
} >"$OUT/gpu_tests.txt" 2>&1 || status=1
tail -n 5 "$OUT/gpu_tests.txt"

timeout 120 "$PYTHON" benchmarks/bench_ops.py --device cuda --impls loop torch triton \
    --batches 16 64 256 --sizes 56 224 --classes 200 1000 --repeats 20 --min-time 0.2 \
    --out "$OUT/cuda_ops" || status=1

timeout 60 "$PYTHON" benchmarks/bench_ops.py --device cuda --impls torch compile triton \
    --batches 64 --sizes 56 --classes 200 --repeats 20 --min-time 0.2 \
    --out "$OUT/cuda_ops_compile" || status=1

timeout 80 "$PYTHON" benchmarks/bench_step.py --device cuda --batches 16 64 --repeats 10 \
    --out "$OUT/cuda_step" || status=1

# one timed run per case (plus a warm-up); the OpenCV loop runs on a few maps if cv2 is installed there
timeout 90 "$PYTHON" benchmarks/bench_metrics.py --device cuda --n 5000 --quick \
    --protocols maxboxacc_v2,ornet --out "$OUT" || status=1

exit "$status"
