#!/usr/bin/env bash
# One prepared script for a machine with a GPU (meant to finish in under 8 minutes).
#
#   bash bench/gpu_check.sh [OUT_DIR]        (default bench-gpu-out/)
#
# 1. installs sgdsim with `.[cuda,test]` (or, where the package index cannot be
#    reached, uses the numba-cuda, CuPy and JAX already installed, with the
#    repository on PYTHONPATH; figures.json says which);
# 2. `sgdsim gpu-check` for the GPU's own compute capability: every variant compiled,
#    assembled, and run on the device against the CPU backend;
# 3. the CUDA tests on the GPU instead of the simulator (SGDSIM_CUDA_TESTS=device);
# 4. the throughput benchmark: sgdsim cuda against CuPy and JAX on the same GPU;
# and writes OUT_DIR/figures.json with all of it. Every step has its own time limit,
# and a failing step is recorded, not fatal, so the figures of the others come back.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

install="pip install .[cuda,test]"
if ! timeout 150 $PY -m pip install -q -e ".[cuda,test]" >"$OUT/install.log" 2>&1; then
    install="preinstalled packages, repository on PYTHONPATH (pip install failed: see install.log)"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

cc=$($PY -c "from numba import cuda; c = cuda.get_current_device().compute_capability; print(f'{c[0]}{c[1]}')" 2>"$OUT/device.log")
cc=${cc:-90}

timeout 240 $PY -m sim gpu-check --cc "$cc" --device --out "$OUT/gpu-check" \
    >"$OUT/gpu-check.log" 2>&1
gpu_check_rc=$?

SGDSIM_CUDA_TESTS=device timeout 150 $PY -m pytest -q -p no:cacheprovider \
    tests/test_engine_backends.py tests/test_vector_dynamics.py tests/test_rng.py \
    tests/test_gpu_compile.py -k "cuda or device" >"$OUT/cuda-tests.log" 2>&1
cuda_tests_rc=$?

timeout 120 $PY bench/gpu_throughput.py --json "$OUT/throughput.json" >"$OUT/throughput.log" 2>&1
throughput_rc=$?

OUT="$OUT" INSTALL="$install" GPU_CHECK_RC=$gpu_check_rc CUDA_TESTS_RC=$cuda_tests_rc \
THROUGHPUT_RC=$throughput_rc $PY - <<'EOF'
import json, os, pathlib
out = pathlib.Path(os.environ["OUT"])

def load(name):
    path = out / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

def tail(name, lines=15):
    try:
        return (out / name).read_text().splitlines()[-lines:]
    except OSError:
        return []

figures = {
    "install": os.environ["INSTALL"],
    "gpu_check": {"exit": int(os.environ["GPU_CHECK_RC"]),
                  "report": load("gpu-check/report.json"), "log_tail": tail("gpu-check.log")},
    "cuda_tests": {"exit": int(os.environ["CUDA_TESTS_RC"]), "log_tail": tail("cuda-tests.log")},
    "throughput": {"exit": int(os.environ["THROUGHPUT_RC"]), "report": load("throughput.json"),
                   "log_tail": tail("throughput.log")},
}
(out / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
print(f"wrote {out / 'figures.json'}")
EOF
