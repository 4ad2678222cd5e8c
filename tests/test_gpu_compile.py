"""The CUDA kernels compile for real GPUs: PTX from numba-cuda, SASS from ptxas, no GPU needed.

The CUDA simulator interprets Python and compiles nothing, so these tests are
what fails when a kernel variant stops compiling for sm_90. They need the
`cuda` pieces of the test extra (numba-cuda with libNVVM and ptxas); in CI a
missing piece is a failure, not a skip.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import ROOT, cuda_simulator_subprocess, requires_cuda_sim


def _missing():
    from sgdsim.sim._gpu_check import missing_tools
    return missing_tools()


def _require_tools():
    missing = _missing()
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must compile the CUDA kernels: {missing}")
    if missing:
        pytest.skip(missing)


def _compiling(args, cwd, timeout=1200):
    """A fresh interpreter on ``args`` that compiles for real GPUs (the simulator off)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _gpu_check(args, cwd, tmp_path):
    return _compiling(["-m", "sgdsim.sim", "gpu-check", *args], cwd)


# One variant of each kernel path: the 1-D template with every observable, the
# benchmark's lean kernel, d dimensions with an optimiser's buffers, the two-time-scale
# rule, the sharpness and period plug-ins, and a user model. CI's `sgdsim gpu-check --cc
# 80,90` compiles every variant before the tests; the slow test below repeats that here.
REPRESENTATIVE = ("scalar/polynomial/langevin/float32", "bench/langevin_first_passage/float32",
                  "scalar/quadratic_finite_sum/sgd_b1/float64",
                  "vector/linear_regression_d8/adam_b4/float64",
                  "vector/grooves_m2/two_time_scale/float32", "sharpness/uv/gd/float32",
                  "period/uv/gd/float64", "splitting/langevin/float64",
                  "user/*/langevin/float32")


def _compile_variants(tmp_path, patterns):
    out = tmp_path / "gpu"
    args = ["--cc", "90", "--no-device", "--out", str(out), "--json",
            "--model", "tilted_double_well:model"]
    for pattern in patterns:
        args += ["--variants", pattern]
    result = _gpu_check(args, ROOT / "examples", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((out / "report.json").read_text())
    assert json.loads(result.stdout) == rows
    return rows


def test_one_variant_of_each_kernel_path_compiles_for_sm90(tmp_path):
    _require_tools()
    rows = _compile_variants(tmp_path, REPRESENTATIVE)
    names = {row["variant"] for row in rows}
    assert set(REPRESENTATIVE[:-1]) <= names
    assert any(n.startswith("user/tilted_double_well:model/") for n in names)
    _check_rows(rows)


@pytest.mark.slow  # about 4 minutes on 2 cores; CI's gpu-check compiles every variant anyway
def test_every_kernel_variant_compiles_for_sm90(tmp_path):
    """Every variant, the example user model among them, compiles and assembles for sm_90."""
    _require_tools()
    from sgdsim.sim._gpu_check import VARIANTS
    rows = _compile_variants(tmp_path, ["*"])
    names = {row["variant"] for row in rows}
    assert set(VARIANTS) <= names
    assert any(n.startswith("user/tilted_double_well:model/") for n in names)
    _check_rows(rows)


def _check_rows(rows):
    """Each row is complete and the 1-D kernels use no local memory (no stack frame, no
    spills)."""
    keys = {"variant", "cc", "registers", "stack_bytes", "spill_stores", "spill_loads",
            "shared_bytes", "occupancy", "ptx"}
    for row in rows:
        assert keys <= set(row), row
        assert row["cc"] == "90" and "error" not in row
        assert 0 < row["registers"] <= 255
        assert 0 < row["occupancy"] <= 1
        ptx = open(row["ptx"]).read()
        assert ".target sm_90" in ptx and ".entry" in ptx
        # d-dimensional states and the period plug-in's ring of 64 states are arrays
        # indexed at run time, kept in local memory (stack); nothing else may be.
        if not row["variant"].startswith(("vector/", "period/")):
            assert (row["stack_bytes"], row["spill_stores"], row["spill_loads"]) == (0, 0, 0), row
        assert row["spill_stores"] == 0, row
    # Kernels are specialised to the observables a run enables: the benchmark's Langevin
    # kernel with first passage alone keeps 50 % occupancy at 256 threads (<= 64 registers)
    # and its step loop is a fraction of the kernel with every observable compiled in, at
    # most 150 instructions a step (nvdisasm's count of its sm_90 loop, the draw spread over
    # the four steps of its Philox block).
    by_name = {row["variant"]: row for row in rows}
    lean, full = by_name["bench/langevin_first_passage/float32"], \
        by_name["scalar/polynomial/langevin/float32"]
    assert lean["registers"] <= 64 and lean["occupancy"] >= 0.5, lean
    if lean["step_sass"] is not None:
        assert lean["step_sass"] < full["step_sass"] / 3, (lean, full)
        assert lean["step_sass"] <= 150, lean


def test_user_model_that_cannot_compile_names_its_file_and_line(tmp_path):
    """A user model using what CUDA lacks (allocating an array) gets one error line: exit 2."""
    _require_tools()
    (tmp_path / "allocating_well.py").write_text(textwrap.dedent("""\
        import numpy as np


        class AllocatingWell:
            @staticmethod
            def gradient(x):
                parts = np.array([x, x * x * x])
                return parts.sum() - x


        model = AllocatingWell()
        """))
    result = _gpu_check(["--cc", "90", "--no-device", "--out", str(tmp_path / "gpu"),
                         "--model", "allocating_well:model", "--variants", "user/*"],
                        tmp_path, tmp_path)
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ")
    assert "allocating_well.py line 7" in error[0], error[0]
    assert "Traceback" not in result.stderr


def test_gpu_check_refuses_bad_flags(tmp_path):
    for args, words in ((["--cc", "9"], "compute capabilities"),
                        (["--variants", "no/such/*"], "no variant matches"),
                        (["--model", "no_such_module:model"], "cannot import")):
        result = _gpu_check(args + ["--out", str(tmp_path / "gpu")], tmp_path, tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gpu").exists()


def test_occupancy_follows_the_occupancy_calculator():
    """Hand-worked cases of the CUDA occupancy rules for 256-thread blocks (8 warps)."""
    from sgdsim.kernels._ptx import occupancy
    # 64 registers: 2048 a warp, 32 warps fit the 64 K register file: 4 blocks of 8 of 64 warps.
    assert occupancy((9, 0), 64, 12288, 256) == 0.5
    # 66 registers round up to 2304 a warp: 28 warps, 3 whole blocks: 24 of 64 warps.
    assert occupancy((9, 0), 66, 12288, 256) == 0.375
    # 32 registers: registers allow 8 blocks; 64 warps is the limit: full occupancy.
    assert occupancy((8, 0), 32, 0, 256) == 1.0
    # Shared memory binds: 100 KiB + 1 KiB reserved a block leaves room for 1 block on cc 8.0.
    assert occupancy((8, 0), 32, 100 * 1024, 256) == 0.125
    assert occupancy((1, 0), 32, 0, 256) is None


def test_device_comparison_flags_disagreement():
    from sgdsim.sim._gpu_check import compare_outputs
    n = 100
    cpu = {"x_final": np.linspace(-1, 1, n), "log_growth": np.zeros(n),
           "ts_partial": np.ones((1, 2, 6)), "fp_steps": np.arange(n), "div_steps": -np.ones(n),
           "lyap_steps": np.full(n, 5), "occupancy": np.ones((n, 2)),
           "hist": np.full((1, 10), 40), "tracked": np.ones((n, 2))}
    same = {k: v.copy() for k, v in cpu.items()}
    assert compare_outputs(same, cpu, "float64")["agree"]
    rounded = dict(same, x_final=cpu["x_final"] * (1 + 1e-12))
    assert compare_outputs(rounded, cpu, "float64")["agree"]
    shifted = dict(same, x_final=cpu["x_final"] + 1e-3)
    detail = compare_outputs(shifted, cpu, "float64")
    assert not detail["agree"] and "x_final" in detail["worst"]
    moved = dict(same, tracked=cpu["tracked"] * 1.01)
    detail = compare_outputs(moved, cpu, "float64")
    assert not detail["agree"] and "tracked" in detail["worst"]
    one_off = same["fp_steps"].copy()
    one_off[0] += 1                       # one trajectory of 100 on the other side: tolerated
    assert compare_outputs(dict(same, fp_steps=one_off), cpu, "float64")["agree"]
    many = same["fp_steps"] + 1
    assert not compare_outputs(dict(same, fp_steps=many), cpu, "float64")["agree"]


@requires_cuda_sim
@pytest.mark.slow  # about 150 s on 2 cores; tests/test_engine_backends.py and
#                    test_slices.py run the CUDA template under the simulator by default
def test_device_run_of_variants_agrees_under_the_simulator():
    """The on-device half of gpu-check, driven through the CUDA simulator."""
    code = textwrap.dedent("""
        import json
        from sgdsim.sim import _gpu_check
        rows = [_gpu_check.run_on_device(name, trajectories=256)
                for name in ("scalar/polynomial/langevin/float64",
                             "vector/coupled_quadratic_m2/two_time_scale/float32")]
        print(json.dumps(rows))
        """)
    result = cuda_simulator_subprocess(code)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    for row in rows:
        assert "error" not in row, row
        assert row["observables_on"]["agree"] and row["observables_off"]["agree"]
