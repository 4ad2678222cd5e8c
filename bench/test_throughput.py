"""Throughput of sgdsim against a vectorised NumPy loop and JAX, same workloads, same run.

Run with ``python -m pytest bench -o addopts="" --benchmark-only`` (setup.cfg's
default addopts skip benchmarks). Every benchmark reports trajectory-steps per
second in ``extra_info["traj_steps_per_s"]`` (from the fastest round).
Compilation (numba, jax.jit) happens outside the timed region; the device is
synchronised inside it (ChunkKernel.run copies results back; JAX blocks).
"""
import numpy as np
import pytest

import peers

WORKLOADS = ["langevin", "sgd"]
# (label, workload, dtype): the label names the workload in the summary.
CASES = [("langevin", "langevin", "float32"), ("sgd", "sgd", "float32"),
         ("sgd-f64", "sgd", "float64")]
_IDS = [case[0] for case in CASES]
# The optimisers (float64: their buffers are float64 in every run): sgdsim and the peers,
# no roofline.
OPTIMISER_CASES = [("momentum-f64", "momentum", "float64"), ("adam-f64", "adam", "float64")]
ALL_CASES = CASES + OPTIMISER_CASES
_ALL_IDS = [case[0] for case in ALL_CASES]
# The numpy backend of sgdsim is a slow readable reference: benchmark it small.
REFERENCE_SIZE = (1 << 14, 16)


def _pedantic(benchmark, fn):
    return benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)


def _check(workload, steps, result, first=None):
    # The work must have happened: the states moved and stayed finite.
    x = np.asarray(result)
    assert np.isfinite(x).all()
    if workload == "sgd":
        # E theta_{t+1} = 0.75 E theta_t + 0.2 from theta_0 = 0: mean 0.8 (1 - 0.75^t).
        assert abs(float(x.mean()) - 0.8 * (1 - 0.75**steps)) < 0.05
    elif workload == "momentum":
        # The mean is linear: E g = 2.5 E theta - 2, E v' = 0.9 E v + E g, E theta' = E theta
        # - 0.01 E v'.
        mean, velocity = 0.0, 0.0
        for _ in range(steps):
            velocity = 0.9 * velocity + 2.5 * mean - 2.0
            mean -= 0.01 * velocity
        assert abs(float(x.mean()) - mean) < 0.05
    elif workload == "adam":
        # No closed form: from 0, steps of about lr = 0.01 toward the minimum 0.8 of the mean
        # loss (the minima of the samples are 0 and 1), and a spread across trajectories.
        assert 0.0 < float(x.mean()) < 1.0 and float(x.std()) > 0.0
    else:
        assert abs(float(x.mean()) + 1.0) < 0.1    # still in the left well after a short run
    if first is not None:
        first = np.asarray(first)
        assert ((first == -1) | (first >= 1)).all()


def _extra(workload, dtype):
    return {"dtype": dtype} if workload != "langevin" else {}


@pytest.mark.parametrize("label, workload, dtype", ALL_CASES, ids=_ALL_IDS)
def test_sgdsim_cpu(benchmark, record_throughput, size, label, workload, dtype):
    n, steps = size
    run = peers.sgdsim_kernel(workload, n, steps, backend="cpu", dtype=dtype)
    out = _pedantic(benchmark, run)
    _check(workload, steps, out["x_final"], out["fp_steps"] if workload == "langevin" else None)
    record_throughput(label, "sgdsim-cpu", n, steps)
    benchmark.extra_info["compile_seconds"] = run.kernel.compile_seconds


@pytest.mark.parametrize("workload", WORKLOADS)
def test_sgdsim_cuda(benchmark, record_throughput, size, workload):
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("no usable CUDA GPU (numba.cuda.is_available() is False)")
    n, steps = size
    run = peers.sgdsim_kernel(workload, n, steps, backend="cuda")
    out = _pedantic(benchmark, run)   # includes host <-> device copies of the chunk
    _check(workload, steps, out["x_final"], out["fp_steps"] if workload == "langevin" else None)
    record_throughput(workload, "sgdsim-cuda", n, steps)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_sgdsim_numpy_backend_small(benchmark, record_throughput, workload):
    n, steps = REFERENCE_SIZE
    run = peers.sgdsim_kernel(workload, n, steps, backend="numpy")
    _pedantic(benchmark, run)
    record_throughput(workload, f"sgdsim-numpy (n=2^{n.bit_length() - 1},T={steps})", n, steps)


@pytest.mark.parametrize("label, workload, dtype", ALL_CASES, ids=_ALL_IDS)
def test_numpy_peer(benchmark, record_throughput, size, label, workload, dtype):
    n, steps = size
    fn = peers.NUMPY_PEERS[workload]
    result = _pedantic(benchmark, lambda: fn(n, steps, **_extra(workload, dtype)))
    if workload == "langevin":
        _check(workload, steps, result[0], result[1])
    else:
        _check(workload, steps, result)
    record_throughput(label, "numpy-peer", n, steps)


@pytest.mark.parametrize("label, workload, dtype", ALL_CASES, ids=_ALL_IDS)
def test_jax_peer(benchmark, record_throughput, size, label, workload, dtype):
    pytest.importorskip("jax")
    n, steps = size
    fn = peers.JAX_PEERS[workload]
    extra = _extra(workload, dtype)
    fn(n, steps, **extra)  # compile outside the timed region (specialised on n and steps)
    result = _pedantic(benchmark, lambda: fn(n, steps, **extra))
    if workload == "langevin":
        _check(workload, steps, result[0], result[1])
    else:
        _check(workload, steps, result)
    record_throughput(label, "jax-peer", n, steps)


@pytest.mark.parametrize("label, workload, dtype", CASES, ids=_IDS)
def test_roofline(benchmark, record_throughput, size, label, workload, dtype):
    """The workload's update in a bare 64-lane loop of sgdsim's own Philox and transforms
    (one block per four steps, no bookkeeping): the most the CPU kernel can reach."""
    n, steps = size
    loop = peers.roofline(workload, dtype)
    result = _pedantic(benchmark, lambda: loop(n, steps))
    assert np.isfinite(result).all()
    record_throughput(label, "roofline", n, steps)


def test_philox_blocks(benchmark, record_throughput, size):
    """The bare Philox-block loop, a block per trajectory per four steps (in steps/s)."""
    n, steps = size
    loop = peers.roofline("blocks")
    _pedantic(benchmark, lambda: loop(n, steps // 4))
    record_throughput("philox", "philox-blocks", n, steps)
