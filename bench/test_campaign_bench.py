"""Throughput of campaign runs (sweep, shards + merge, checkpoints) against a plain run.

Run with ``python -m pytest bench/test_campaign_bench.py -o addopts="" --benchmark-only``.
Each benchmark times whole ``run_experiment`` calls (file writing included, kernel
compilation excluded by a warm-up round) and reports trajectory-steps per second
in ``extra_info["traj_steps_per_s"]``; the last test checks every campaign mode
against a plain run of the same total size timed right before each of its rounds
(issue 5: within 10 %). Fixed costs per run (model set-up, a few fsyncs, the
merge) are per file, not per trajectory-step, so they shrink with the run.
"""
import os
import time

from sgdsim import sim

TRAJECTORIES = int(os.environ.get("SGDSIM_BENCH_TRAJECTORIES", 1 << 17))
STEPS = int(os.environ.get("SGDSIM_BENCH_STEPS", 256))
LRS = [0.02, 0.05, 0.08, 0.1]
_RATES = {}


def _experiment(lrs, trajectories):
    raw = {
        "run": {"seed": 9, "trajectories": trajectories, "steps": STEPS, "backend": "cpu",
                "chunk": 1 << 16},
        "model": {"name": "quadratic_finite_sum", "curvatures": [18.0, 2.0]},
        "dynamics": {"name": "sgd", "lr": lrs[0]},
        "init": {"uniform": {"low": -1.0, "high": 1.0}},
        "observables": {"lyapunov": {}, "timeseries": {"points": 32},
                        "histogram": {"lo": -1.0, "hi": 1.0, "bins": 64, "burn_in": 8}},
    }
    if len(lrs) > 1:
        raw["sweep"] = {"dynamics.lr": lrs}
    return sim.resolve_experiment(raw, "bench")


def _plain_timer(tmp_path):
    """A setup function that runs (and times) the plain run before each round."""
    experiment = _experiment(LRS[:1], 4 * TRAJECTORIES)
    out = tmp_path / "plain_peer.h5"
    times = []

    def setup():
        start = time.perf_counter()
        sim.run_experiment(experiment, out, overwrite=True, quiet=True)
        times.append(time.perf_counter() - start)

    return setup, times


def _measure(benchmark, name, fn, traj_steps, tmp_path=None, required=True):
    # The plain peer runs right before every round of the measured mode, so both see
    # the same machine load (this is often a shared machine).
    setup, plain_times = _plain_timer(tmp_path) if tmp_path is not None else (None, [])
    benchmark.pedantic(fn, setup=setup, rounds=3, iterations=1, warmup_rounds=1)
    rate = traj_steps / benchmark.stats.stats.min
    benchmark.extra_info["traj_steps_per_s"] = rate
    _RATES[name] = rate
    if plain_times:
        plain = 4 * TRAJECTORIES * STEPS / min(plain_times)
        ratio = rate / plain
        benchmark.extra_info["plain_traj_steps_per_s"] = plain
        benchmark.extra_info["ratio_to_plain"] = ratio
        print(f"\n{name}: {rate:.3e} traj-steps/s, {ratio:.3f} x plain ({plain:.3e}, "
              f"same rounds)")
        if required:  # issue 5: sweeps and sharded runs within 10 % of the plain run
            assert ratio >= 0.9, f"{name} run is {ratio:.3f} x the plain run's throughput"


def test_plain_run(benchmark, tmp_path):
    experiment = _experiment(LRS[:1], 4 * TRAJECTORIES)
    out = tmp_path / "plain.h5"
    _measure(benchmark, "plain",
             lambda: sim.run_experiment(experiment, out, overwrite=True, quiet=True),
             4 * TRAJECTORIES * STEPS)


def test_sweep_run(benchmark, tmp_path):
    experiment = _experiment(LRS, TRAJECTORIES)
    out = tmp_path / "sweep.h5"
    _measure(benchmark, "sweep",
             lambda: sim.run_experiment(experiment, out, overwrite=True, quiet=True),
             4 * TRAJECTORIES * STEPS, tmp_path)


def test_sharded_run_and_merge(benchmark, tmp_path):
    from sgdsim.sim._runner import merge_shards

    experiment = _experiment(LRS[:1], 4 * TRAJECTORIES)
    shards = [tmp_path / f"shard{i}.h5" for i in range(3)]

    def run():
        for i, path in enumerate(shards):
            sim.run_experiment(experiment, path, overwrite=True, quiet=True, shard=(i, 3))
        merge_shards(shards, tmp_path / "merged.h5", overwrite=True)

    _measure(benchmark, "sharded", run, 4 * TRAJECTORIES * STEPS, tmp_path)


def test_checkpoints_every_half_second(benchmark, tmp_path, monkeypatch):
    # A checkpoint costs a few tens of ms (part file, manifest, three fsyncs); the default
    # interval is 60 s. Every half second here, a stress setting: a ~1.3 s run writes two,
    # which cost up to ~15 % of it (measured 0.85x-1.00x); reported, not held to the 10 % of sweeps
    # and shards.
    monkeypatch.setenv("SGDSIM_CHECKPOINT_SECONDS", "0.5")
    experiment = _experiment(LRS[:1], 4 * TRAJECTORIES)
    out = tmp_path / "checkpointed.h5"
    _measure(benchmark, "checkpointed",
             lambda: sim.run_experiment(experiment, out, overwrite=True, quiet=True),
             4 * TRAJECTORIES * STEPS, tmp_path, required=False)
