"""``sgdsim run --mpi``: one run split over the ranks of MPI.COMM_WORLD.

Rank r of K runs the trajectories ``shard_range(N, (r, K))`` of every sweep
point, exactly like ``--shard r/K``; rank 0 then receives the ranks' pieces
one at a time and writes the one run file (``_runfile.replacing``), so
the result equals the single-process run bit for bit (see ``_runfile``). On
the cuda backend each rank takes GPU ``node-local rank % GPUs on the node``.

Failure: every rank reports success or its error in one ``allgather`` after its
share; if any failed, all ranks stop, rank 0 prints which rank failed and why,
and nothing is written at the output path. (A rank that dies outright, e.g. by
a signal, makes mpiexec end the whole job.) MPI runs write no checkpoints: a
killed MPI job is run again.
"""
import contextlib
import os
import sys
import time

from ._config import ExperimentError
from ._engine import Points, Progress, device_name, execute, resolve_backend
from ._plan import make_plan
from ._runfile import Piece, TreeSum, failure_warnings, replacing, root_attrs, write_run

__all__ = ["run_mpi"]


def _import_mpi():
    try:
        from mpi4py import MPI
        from mpi4py.util import pkl5
    except ImportError as exc:
        raise ExperimentError(None, None, f"--mpi needs mpi4py ({exc}); install it with "
                                          f"`pip install 'sgdsim[mpi]'`") from None
    return MPI, pkl5


def _select_gpu(MPI, comm, backend):
    """Bind this rank to GPU (node-local rank mod GPUs); before any CUDA context exists."""
    if backend not in ("auto", "cuda"):
        return
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    local_rank = node.Get_rank()
    node.Free()
    try:
        from numba import cuda
        count = len(cuda.gpus)
        if count:
            cuda.select_device(local_rank % count)
    except Exception:  # no driver or no GPU: resolve_backend decides what that means
        pass


def _payload(piece):
    return {"segments": piece.segments, "rows": piece.row_data, "hist": piece.hist,
            "trees": {p: tree.nodes for p, tree in piece.trees.items()},
            "paths": piece.path_rows, "kernel_seconds": piece.kernel_seconds,
            "compile_seconds": piece.compile_seconds}


def _piece(plan, payload):
    piece = Piece(plan)
    piece.segments = payload["segments"]
    piece.row_data = payload["rows"]
    piece.hist = payload["hist"]
    for p, nodes in payload["trees"].items():
        tree = piece.trees[p] = TreeSum(plan.groups_per_point)
        tree.nodes = nodes
    piece.path_rows = payload["paths"]
    piece.kernel_seconds = payload["kernel_seconds"]
    piece.compile_seconds = payload["compile_seconds"]
    return piece


def run_mpi(experiment, out_path, overwrite=False, quiet=False, source=None):
    """Run ``experiment`` over all ranks; rank 0 writes ``out_path``. Returns the path."""
    wall_start = time.perf_counter()
    MPI, pkl5 = _import_mpi()
    comm = pkl5.Intracomm(MPI.COMM_WORLD)
    rank, size = comm.Get_rank(), comm.Get_size()
    piece = plan = share = None
    failure = None
    splitting = "splitting" in experiment
    try:
        if rank == 0 and os.path.exists(out_path) and not overwrite:
            raise ExperimentError(out_path, None, "exists (use --overwrite to replace it)")
        _select_gpu(MPI, MPI.COMM_WORLD, experiment["run"]["backend"])
        backend = resolve_backend(experiment["run"]["backend"])
        if splitting:
            from ._splitting import run_share
            share = run_share(experiment, (rank, size), quiet or rank != 0, source)
        else:
            plan = make_plan(experiment, backend, shard=(rank, size))
            points = Points(plan, source)
            progress = Progress(plan.n_points * plan.n_local * plan.steps, quiet or rank != 0)
            try:
                piece, _ = execute(plan, points, 0, progress)
            finally:
                progress.close()
        status = (backend, device_name(backend))
    except (Exception, KeyboardInterrupt) as exc:
        failure = exc
        status = (isinstance(exc, ExperimentError), f"{type(exc).__name__}: {exc}"
                  if not isinstance(exc, ExperimentError) else str(exc))
    reports = comm.allgather((failure is None, status))
    failed = [(r, info) for r, (ok, info) in enumerate(reports) if not ok]
    if failed:
        if rank != 0:
            raise SystemExit(2 if failed[0][1][0] else 1)
        r, (bad_input, message) = failed[0]
        others = f" (and {len(failed) - 1} more rank(s))" if len(failed) > 1 else ""
        text = f"MPI rank {r} of {size} failed{others}: {message}; nothing written"
        if bad_input:
            raise ExperimentError(None, None, text)
        raise RuntimeError(text)
    backends = {info[0] for _, info in reports}
    if len(backends) > 1:
        if rank != 0:
            raise SystemExit(1)
        raise RuntimeError(f"MPI ranks resolved different backends {sorted(backends)}; "
                           f"set run.backend explicitly")
    if rank != 0:
        comm.send(share if splitting else _payload(piece), dest=0, tag=5)
        comm.bcast(None, root=0)
        return out_path
    devices = "; ".join(sorted({info[1] for _, info in reports}))
    if splitting:
        _write_splitting(comm, size, experiment, backend, share, out_path, devices,
                         wall_start)
    else:
        _write_chunks(comm, size, experiment, plan, piece, out_path, devices, wall_start)
    comm.bcast(True, root=0)
    if not quiet:
        print(f"sgdsim: {size} MPI ranks wrote {out_path}", file=sys.stderr)
    for line in failure_warnings(out_path):
        print(f"sgdsim: warning: {line}", file=sys.stderr, flush=True)
    return out_path


@contextlib.contextmanager
def _writing(out_path):
    """Rank 0 writes the run file; if it cannot, the whole job ends (other ranks may still
    be blocked sending their pieces; ``replacing`` has removed the temporary file)."""
    from mpi4py import MPI

    try:
        yield
    except BaseException as exc:
        print(f"error: MPI rank 0 could not write {out_path}: {type(exc).__name__}: {exc}; "
              f"nothing written", file=sys.stderr, flush=True)
        MPI.COMM_WORLD.Abort(1)


def _write_splitting(comm, size, experiment, backend, share, out_path, devices, wall_start):
    """A splitting run: rank r ran the independent runs run_range(runs, (r, size))."""
    from ._splitting import merge_results, write_splitting

    with _writing(out_path):
        shares = [share] + [comm.recv(source=r, tag=5) for r in range(1, size)]
        plan = make_plan(experiment, backend)
        write_splitting(out_path, plan, experiment, merge_results([s[0] for s in shares]),
                        time.perf_counter() - wall_start, sum(s[1] for s in shares),
                        device=devices, mpi_ranks=size)


def _write_chunks(comm, size, experiment, plan, piece, out_path, devices, wall_start):
    """A run of chunks: rank r ran the trajectories shard_range(N, (r, size))."""
    whole = make_plan(experiment, plan.backend, chunk=plan.chunk)
    timings = {"kernel": 0.0, "compile": 0.0}

    def pieces():
        for r in range(size):
            part = piece if r == 0 else _piece(whole, comm.recv(source=r, tag=5))
            part.plan = whole
            timings["kernel"] += part.kernel_seconds
            timings["compile"] += part.compile_seconds
            yield part

    with _writing(out_path), replacing(out_path) as f:
        write_run(f, whole, pieces())
        attrs = root_attrs(whole, devices, True, timings["kernel"], timings["compile"],
                           time.perf_counter() - wall_start)
        attrs["mpi_ranks"] = size
        f.attrs.update(attrs)
