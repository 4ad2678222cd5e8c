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


# The throughput requirements checked in the summary: (workload, peer, at least).
REQUIREMENTS = [
    ("langevin", "numpy-peer", 8.0), ("langevin", "jax-peer", 2.5), ("langevin", "roofline", 0.6),
    ("sgd-f64", "numpy-peer", 4.0), ("sgd-f64", "jax-peer", 2.0),
]


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("sgdsim throughput (traj-steps/s, best of rounds, same run)")
    write(f"{'workload':10} {'implementation':22} {'traj-steps/s':>14} {'x NumPy':>8} {'x JAX':>7} "
          f"{'x roofline':>10}")
    for (workload, impl), rate in sorted(_RESULTS.items()):
        cells = []
        for peer, width in (("numpy-peer", 8), ("jax-peer", 7), ("roofline", 10)):
            other = _RESULTS.get((workload, peer))
            cells.append(f"{rate / other:{width}.2f}" if other else f"{'-':>{width}}")
        write(f"{workload:10} {impl:22} {rate:14.4g} " + " ".join(cells))
    for workload, peer, least in REQUIREMENTS:
        cpu, other = _RESULTS.get((workload, "sgdsim-cpu")), _RESULTS.get((workload, peer))
        if cpu and other:
            verdict = "meets" if cpu >= least * other else "DOES NOT MEET"
            write(f"requirement ({workload}, sgdsim cpu >= {least}x {peer}): {verdict} "
                  f"({cpu / other:.2f}x)")
