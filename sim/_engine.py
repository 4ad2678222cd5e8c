"""The engine shared by every way of running: backend, device, compiled points, chunk loop.

``_runner`` (single process, checkpointed) and ``_mpi`` (one run over MPI ranks)
both resolve the backend, compile each sweep point's kernel (``Points``) and run
their share of chunks through ``execute``, which launches the fused chunk kernel
and collects its outputs into pieces (``_runfile``); ``_gpu_check`` builds its
kernels through ``Points`` too, exactly as a run does.
"""
import math
import sys
import time

import numpy as np

import kernels
from kernels._observe import I_FP_STOP

from ._config import ExperimentError
from ._plan import check_capabilities, configuration, model_for
from .observables import enabled
from ._runfile import Piece
from ._steps import steps_run

__all__ = ["resolve_backend", "device_name", "Progress", "Points", "execute", "CHECKPOINT_BYTES"]

# A run saves a checkpoint sooner than its interval when the unsaved rows pass this size.
CHECKPOINT_BYTES = 256 << 20


def resolve_backend(name):
    """The backend that ``name`` means here: ``auto`` is cuda when usable, else cpu."""
    if name == "auto":
        return "cuda" if kernels.cuda_usable() else "cpu"
    if name == "cuda" and not kernels.cuda_usable():
        raise ExperimentError(None, "run.backend", "cuda: no usable GPU (numba-cuda found none)")
    return name


def device_name(backend):
    """The device a run on ``backend`` uses, as recorded in the run file's ``device``."""
    if backend == "cuda":
        from numba import cuda
        try:
            name = cuda.get_current_device().name
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:
            return "cuda"
    import platform
    import numba
    return f"{platform.processor() or platform.machine()} ({numba.get_num_threads()} threads)"


class Progress:
    """tqdm bar on an interactive stderr, a plain line per chunk otherwise."""

    def __init__(self, total, quiet, done=0):
        self.quiet = quiet
        self.total = max(total, 1)
        self.done = done
        self.start_done = done
        self.ran = 0
        self.start = time.perf_counter()
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="traj-step", unit_scale=True,
                            file=sys.stderr, dynamic_ncols=True)

    def update(self, amount, label, ran=None):
        """Count ``amount`` planned trajectory-steps done, of which ``ran`` actually ran.

        Progress and time left follow the plan; the rate shown counts the steps the
        kernels ran (fewer when trajectories stop early).
        """
        self.done += amount
        self.ran += amount if ran is None else ran
        if self.bar is not None:
            self.bar.update(amount)
            elapsed = time.perf_counter() - self.start
            if elapsed > 0:
                self.bar.set_postfix_str(f"{self.ran / elapsed:.3g} traj-steps/s run",
                                         refresh=False)
        elif not self.quiet:
            elapsed = time.perf_counter() - self.start
            planned_rate = (self.done - self.start_done) / elapsed if elapsed > 0 else math.nan
            rate = self.ran / elapsed if elapsed > 0 else math.nan
            left = (self.total - self.done) / planned_rate if planned_rate > 0 else math.nan
            print(f"sgdsim: {label}: {self.done / self.total:6.1%} done, "
                  f"{rate:.3g} traj-steps/s, {left:.0f} s left", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Points:
    """Per sweep point: model, compiled kernel, parameters and its paths array."""

    def __init__(self, plan, source):
        self.plan = plan
        self.models = []
        for _, point in plan.points:
            model = model_for(point["model"], point["dynamics"])
            check_capabilities(model, point, source)
            self.models.append(model)
        self.cache = {}
        self.compiled = set()

    def get(self, index):
        if index not in self.cache:
            plan, point = self.plan, self.plan.points[index][1]
            kernel = kernels.get_kernel(plan.backend, self.models[index], point["dynamics"],
                                        plan.dtype, plan.observables,
                                        tracked=enabled(plan.observables))
            conf_i, conf_f = configuration(plan.observables, plan.per_point)
            paths = np.full((plan.path_count, plan.path_steps.size, plan.dim), np.nan,
                            dtype=plan.dtype)
            params = kernels.dynamics_params(point["dynamics"])
            self.cache = {index: (kernel, params, conf_i, conf_f, paths)}
        return self.cache[index]


def execute(plan, points, first, progress, save=None, interval=None):
    """Run chunks first..end; hand finished pieces to ``save``; return the last piece.

    A SIGTERM or Ctrl-C between chunks saves what is done, then interrupts.
    """
    piece, piece_first = Piece(plan), first
    last_save = time.perf_counter()
    n_points = plan.n_points
    try:
        for c in range(first, len(plan.chunks)):
            p, a, b = plan.chunks[c]
            kernel, d, conf_i, conf_f, paths = points.get(p)
            g_first = p * plan.per_point + a
            x0 = kernels.initial_state(plan.points[p][1]["init"], g_first, b - a, plan.seed,
                                       plan.dtype, plan.dim)
            out, seconds = kernel.run(x0, g_first, a, plan.steps, plan.seed,
                                      points.models[p].params, d, conf_i, conf_f,
                                      plan.boundaries, plan.ts_steps, paths)
            if id(kernel.kernel) not in points.compiled:
                points.compiled.add(id(kernel.kernel))
                piece.compile_seconds += kernel.compile_seconds
            piece.kernel_seconds += seconds
            piece.add_chunk(p, a, b, out, paths)
            progress.update((b - a) * plan.steps,
                            f"point {p + 1}/{n_points} trajectories {b}/{plan.hi}",
                            ran=steps_run(plan.steps, out["fp_steps"], out["div_steps"],
                                          bool(conf_i[I_FP_STOP])))
            now = time.perf_counter()
            if save is not None and c + 1 < len(plan.chunks) and (
                    now - last_save >= interval or piece.nbytes() >= CHECKPOINT_BYTES):
                full, full_first = piece, piece_first
                # Start the next piece first: an interrupt inside save() must not save twice.
                piece, piece_first = Piece(plan), c + 1
                save(full, full_first, c + 1)
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        if save is not None and piece.segments:
            save(piece, piece_first, piece_first + len(piece.segments))
        if save is not None and (piece.segments or piece_first > 0):
            print("sgdsim: interrupted; checkpoint saved, `sgdsim resume` continues it",
                  file=sys.stderr, flush=True)
        raise
    return piece, piece_first
