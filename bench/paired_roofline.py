"""sgdsim's CPU kernel against its roofline, paired in one process.

    python bench/paired_roofline.py [langevin|sgd] [--pairs 8]

The kernel and the roofline loop (bench/peers.py) run alternately, ``--pairs`` times each,
2^20 trajectories x 128 steps, compilation done first. Prints the best rate of each, the
ratio of the bests and the median of the pairs' ratios: on a shared machine a pair sees
the same load, so its ratio moves less than rows measured one after another
(bench/throughput_table.py). The langevin workload is float32, sgd float64.
"""
import argparse
import pathlib
import sys
import time

BENCH = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import peers  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="?", default="langevin", choices=("langevin", "sgd"))
    parser.add_argument("--pairs", type=int, default=8)
    args = parser.parse_args()
    n, steps = 1 << 20, 128
    if args.workload == "langevin":
        kernel = peers.sgdsim_kernel("langevin", n, steps, backend="cpu")
        loop = peers.roofline("langevin")
    else:
        kernel = peers.sgdsim_kernel("sgd", n, steps, backend="cpu", dtype="float64")
        loop = peers.roofline("sgd", "float64")

    def rate(fn):
        start = time.perf_counter()
        fn()
        return n * steps / (time.perf_counter() - start)

    kernel(), loop(n, steps)
    pairs = [(rate(kernel), rate(lambda: loop(n, steps))) for _ in range(args.pairs)]
    best_k, best_r = max(k for k, _ in pairs), max(r for _, r in pairs)
    ratios = sorted(k / r for k, r in pairs)
    print(f"{args.workload}: sgdsim {best_k:.3g}, roofline {best_r:.3g} trajectory-steps/s; "
          f"best / best {best_k / best_r:.3f}, median of pairs {ratios[len(ratios) // 2]:.3f}")


if __name__ == "__main__":
    main()
