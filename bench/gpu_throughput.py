"""GPU throughput: sgdsim's cuda backend against CuPy and JAX on the same GPU, same run.

The workloads are bench/peers.py's (Langevin in the double well with first
passage tracked, finite-sum SGD at batch 1; float32). The CuPy peers are the
NumPy peers written for CuPy as a user would (one array operation per term,
CuPy's own generator); JAX runs the peers.py functions on its default device
(the GPU when jax has a CUDA plugin). sgdsim is timed around ``ChunkKernel.run``
with one chunk of every trajectory, host/device copies included, compilation
excluded. Every implementation is synchronised inside its timing.

    python bench/gpu_throughput.py [--trajectories 4194304] [--steps 1024] [--repeat 3]
                                   [--json OUT.json]

Prints one JSON object (and writes it with --json): the device, versions, and per
workload and implementation the best time, trajectory-steps/s and the ratios to
the CuPy and JAX peers of the same run. An implementation that cannot run here
is reported with its error instead of figures.
"""
import argparse
import json
import pathlib
import platform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import peers  # noqa: E402


def cupy_langevin(n, steps, seed=0):
    import cupy as cp

    w = peers.LANGEVIN
    f32 = cp.float32
    rng = cp.random.default_rng(seed)
    dt = np.float32(w["dt"])
    amplitude = np.float32(np.sqrt(w["temperature"] * w["noise_var"] * w["dt"]))
    x = cp.full(n, w["theta0"], dtype=f32)
    first = cp.full(n, -1, dtype=cp.int64)
    for t in range(1, steps + 1):
        xi = rng.standard_normal(n, dtype=f32)
        x -= 4 * dt * x * (x * x - 1)
        x += amplitude * xi
        hit = (x >= w["level"]) & (first < 0)
        first[hit] = t
    cp.cuda.Device().synchronize()
    return x, first


def cupy_sgd(n, steps, seed=0):
    import cupy as cp

    w = peers.SGD
    rng = cp.random.default_rng(seed)
    h = cp.asarray(w["curvatures"], dtype=cp.float32)
    c = cp.asarray(w["centers"], dtype=cp.float32)
    lr_h, lr_hc = w["lr"] * h, w["lr"] * h * c
    x = cp.full(n, w["theta0"], dtype=cp.float32)
    for _ in range(steps):
        i = rng.integers(0, h.size, size=n)
        x -= cp.take(lr_h, i) * x
        x += cp.take(lr_hc, i)
    cp.cuda.Device().synchronize()
    return x


def _best(fn, repeat):
    fn()                                      # warm-up: compiles, allocator pools
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(trajectories, steps, repeat):
    """Figures of every implementation on both workloads (errors reported, not raised)."""
    work = trajectories * steps
    implementations = {}
    for workload in ("langevin", "sgd"):
        candidates = {
            "sgdsim-cuda": lambda workload=workload: peers.sgdsim_kernel(
                workload, trajectories, steps, backend="cuda"),
            "cupy-peer": lambda workload=workload: (cupy_langevin if workload == "langevin"
                                                    else cupy_sgd),
            "jax-peer": lambda workload=workload: peers.JAX_PEERS[workload],
        }
        for name, make in candidates.items():
            row = {"workload": workload, "implementation": name}
            try:
                fn = make()
                call = fn if name == "sgdsim-cuda" else (lambda fn=fn: fn(trajectories, steps))
                seconds = _best(call, repeat)
                row.update(seconds=seconds, traj_steps_per_s=work / seconds)
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            implementations[(workload, name)] = row
    for (workload, name), row in implementations.items():
        for peer in ("cupy-peer", "jax-peer"):
            other = implementations[(workload, peer)]
            if "traj_steps_per_s" in row and "traj_steps_per_s" in other:
                row[f"x_{peer.split('-')[0]}"] = row["traj_steps_per_s"] / other["traj_steps_per_s"]
    return list(implementations.values())


def device_and_versions():
    info = {"python": platform.python_version(), "numpy": np.__version__}
    for module in ("numba", "numba_cuda", "cupy", "jax"):
        try:
            info[module] = __import__(module).__version__
        except Exception:
            info[module] = None
    try:
        from numba import cuda
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        info["device"] = f"{name} (cc {device.compute_capability[0]}.{device.compute_capability[1]})"
    except Exception as exc:
        info["device"] = f"none ({type(exc).__name__})"
    try:
        import jax
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception:
        info["jax_devices"] = None
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=1 << 22)
    parser.add_argument("--steps", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="OUT.json")
    args = parser.parse_args(argv)
    report = {"machine": device_and_versions(), "trajectories": args.trajectories,
              "steps": args.steps, "dtype": "float32", "repeat": args.repeat,
              "results": measure(args.trajectories, args.steps, args.repeat)}
    text = json.dumps(report, indent=1)
    if args.json:
        pathlib.Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
