"""Run each benchmark workload once per implementation and print a markdown table.

    python bench/throughput_table.py [--trajectories N] [--steps T]

Every measurement (best of ``--repeat`` timed runs) runs in its own subprocess (one after the other, in this one
invocation), so its peak resident memory (``resource.getrusage``, ru_maxrss) is
its own. A second table shows how each implementation's peak grows with the
number of trajectories and not with the number of steps (memory O(trajectories)). Compilation and the first jax.jit
call are done before the timed run. A last table gives sgdsim's kernel compile
time cold (fresh ``SGDSIM_CACHE_DIR``) and warm (same folder, new process).
"""
import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent


def _rss_mib():
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(impl, workload, n, steps, repeat, dtype="float32"):
    sys.path[:0] = [str(ROOT), str(BENCH)]
    import numpy as np  # noqa: F401

    import peers

    if impl.startswith("sgdsim"):
        from sgdsim import kernels  # noqa: F401  (imports numba and the kernels before the baseline)
    elif impl == "jax-peer":
        import jax  # noqa: F401
    extra = {"dtype": dtype} if workload != "langevin" else {}
    if impl.startswith("sgdsim"):
        run = peers.sgdsim_kernel(workload, n, steps, backend=impl.split("-", 1)[1], dtype=dtype)
        fn = run
    elif impl == "roofline":
        loop = peers.roofline(workload, dtype)    # compiled here

        def fn():
            return loop(n, steps)
    elif impl == "philox-blocks":
        loop = peers.roofline("blocks")

        def fn():
            return loop(n, steps // 4)           # one block per four steps
    elif impl == "numpy-peer":
        def fn():
            return peers.NUMPY_PEERS[workload](n, steps, **extra)
    else:
        def fn():
            return peers.JAX_PEERS[workload](n, steps, **extra)
        fn()  # jit compile (specialised on n and steps) outside the timing
    seconds = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        seconds = min(seconds, time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "rate": n * steps / seconds,
                      "peak_mib": _rss_mib()}))


def _compile_worker(workload):
    sys.path[:0] = [str(ROOT), str(BENCH)]
    import peers

    start = time.perf_counter()
    run = peers.sgdsim_kernel(workload, 256, 1, backend="cpu")
    print(json.dumps({"compile_seconds": run.kernel.compile_seconds,
                      "setup_seconds": time.perf_counter() - start}))


def _spawn(args, env=None):
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _implementations():
    # Probed in a subprocess: this process stays small, because on Linux a child's
    # ru_maxrss starts from its parent's resident size at fork.
    probe = ("import importlib.util as u, json; from numba import cuda; "
             "print(json.dumps([cuda.is_available(), u.find_spec('jax') is not None]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    has_cuda, has_jax = json.loads(out.stdout.strip().splitlines()[-1])
    impls = ["sgdsim-cpu"]
    if has_cuda:
        impls.append("sgdsim-cuda")
    impls.append("numpy-peer")
    if has_jax:
        impls.append("jax-peer")
    return impls + ["roofline", "philox-blocks"]


def _machine():
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = line.split()
                width = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags
                         else "SSE/other")
                model = f"{model} ({width})"
    except OSError:
        pass
    from importlib import metadata

    versions = {}
    for name in ("numpy", "numba", "jax", "jaxlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return model, os.cpu_count(), versions


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=1 << 20)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per measurement; the fastest is reported")
    args = parser.parse_args()
    n, steps, repeat = args.trajectories, args.steps, str(args.repeat)
    model, cores, versions = _machine()
    print(f"Machine: {model}, {cores} cores; Python {platform.python_version()}, "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("Load average at start (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    print(f"Workloads: {n} trajectories x {steps} steps; best of {repeat} timed runs, "
          "compilation excluded. `roofline`: the workload's update in a bare 64-lane numba loop "
          "from sgdsim's own Philox and transforms, one block per four steps, no bookkeeping; "
          "`philox-blocks`: that loop's Philox blocks alone (a block per four steps). "
          "x roofline: the fraction of the roofline reached.\n")

    impls = _implementations()
    print("| workload | dtype | implementation | traj-steps/s | x NumPy | x JAX | x roofline "
          "| peak RSS (MiB) |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    optimisers = [impl for impl in impls if impl not in ("roofline", "philox-blocks")]
    for workload, dtype, which in (("langevin", "float32", impls), ("sgd", "float32", impls),
                                   ("sgd", "float64", impls),
                                   ("momentum", "float64", optimisers),
                                   ("adam", "float64", optimisers)):
        results = {impl: _spawn(["--worker", impl, workload, str(n), str(steps), repeat, dtype])
                   for impl in which}
        numpy_rate = results["numpy-peer"]["rate"]
        jax_rate = results.get("jax-peer", {}).get("rate")
        roof_rate = results.get("roofline", {}).get("rate")
        for impl, r in results.items():
            x_jax = f"{r['rate'] / jax_rate:.2f}" if jax_rate else "-"
            x_roof = f"{r['rate'] / roof_rate:.2f}" if roof_rate else "-"
            print(f"| {workload} | {dtype} | {impl} | {r['rate']:.3g} | "
                  f"{r['rate'] / numpy_rate:.2f} | {x_jax} | {x_roof} | {r['peak_mib']:.0f} |")

    short = 16
    print(f"\nPeak RSS (MiB), langevin, against trajectories and steps; the slope is "
          f"(peak(N) - peak(N/4)) / (3N/4)\n")
    print(f"| implementation | N/4, {short} steps | N, {short} steps | N, {4 * short} steps "
          "| bytes / trajectory |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for impl in impls[:-2]:
        peaks = [_spawn(["--worker", impl, "langevin", str(nn), str(tt), "1"])["peak_mib"]
                 for nn, tt in ((n // 4, short), (n, short), (n, 4 * short))]
        slope = (peaks[1] - peaks[0]) * 2**20 / (n - n // 4)
        print(f"| {impl} | {peaks[0]:.0f} | {peaks[1]:.0f} | {peaks[2]:.0f} | {slope:.0f} |")

    print("\nsgdsim-cpu kernel compile time (numba, on-disk cache)\n")
    print("| workload | cold (fresh SGDSIM_CACHE_DIR) s | warm (cache hit, new process) s |")
    print("| --- | ---: | ---: |")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, SGDSIM_CACHE_DIR=cache)
        for workload in ("langevin", "sgd"):
            cold = _spawn(["--compile-worker", workload], env)
            warm = _spawn(["--compile-worker", workload], env)
            print(f"| {workload} | {cold['compile_seconds']:.2f} | {warm['compile_seconds']:.2f} |")
    print("\nLoad average at end (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]),
                *sys.argv[7:8])
    elif len(sys.argv) > 1 and sys.argv[1] == "--compile-worker":
        _compile_worker(sys.argv[2])
    else:
        main()
