"""Benchmark fixtures: sizes, import paths, and a same-run comparison table.

Sizes come from the environment so a quick smoke run is possible:
``SGDSIM_BENCH_TRAJECTORIES`` (default 2**20) and ``SGDSIM_BENCH_STEPS``
(default 128; each measurement then takes about 1-3 s on a 2-core CPU).
At the end of the session a table of trajectory-steps per second with the
ratio of every implementation to the NumPy peer of the same workload, measured
in this run, is printed.
"""
import os
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent
for path in (str(ROOT), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

TRAJECTORIES = int(os.environ.get("SGDSIM_BENCH_TRAJECTORIES", 1 << 20))
STEPS = int(os.environ.get("SGDSIM_BENCH_STEPS", 128))

# (workload, implementation) -> traj-steps/s (best round), filled by the benchmarks.
_RESULTS = {}


@pytest.fixture(scope="session")
def size():
    """(trajectories, steps) of the main workloads."""
    return TRAJECTORIES, STEPS


@pytest.fixture
def record_throughput(benchmark):
    """Store traj-steps/s of the finished benchmark (min over rounds) under (workload, impl)."""

    def record(workload, implementation, trajectories, steps):
        best = benchmark.stats.stats.min
        mean = benchmark.stats.stats.mean
        rate = trajectories * steps / best
        benchmark.extra_info.update(
            workload=workload, implementation=implementation, trajectories=trajectories,
            steps=steps, traj_steps_per_s=rate, traj_steps_per_s_mean=trajectories * steps / mean)
        _RESULTS[(workload, implementation)] = rate
        return rate

    return record


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("sgdsim throughput (traj-steps/s, best of rounds, same run)")
    write(f"{'workload':10} {'implementation':22} {'traj-steps/s':>14} {'x NumPy':>8} {'x JAX':>7}")
    for (workload, impl), rate in sorted(_RESULTS.items()):
        base = _RESULTS.get((workload, "numpy-peer"))
        jax = _RESULTS.get((workload, "jax-peer"))
        ratio = f"{rate / base:8.2f}" if base else f"{'-':>8}"
        ratio_jax = f"{rate / jax:7.2f}" if jax else f"{'-':>7}"
        write(f"{workload:10} {impl:22} {rate:14.4g} {ratio} {ratio_jax}")
    cpu = _RESULTS.get(("langevin", "sgdsim-cpu"))
    base = _RESULTS.get(("langevin", "numpy-peer"))
    jax = _RESULTS.get(("langevin", "jax-peer"))
    if cpu and base:
        verdict = "meets" if cpu >= 3 * base else "DOES NOT MEET"
        write(f"issue 2 requirement (langevin, sgdsim cpu >= 3x NumPy): {verdict} "
              f"({cpu / base:.2f}x)")
    if cpu and jax:
        verdict = "meets" if cpu >= jax else "DOES NOT MEET"
        write(f"issue 2 requirement (langevin, sgdsim cpu >= 1x JAX): {verdict} ({cpu / jax:.2f}x)")
