"""The engine shared by every way of running: backend, device, compiled points, chunk loop.

``_runner`` (single process, checkpointed) and ``_mpi`` (one run over MPI ranks)
both resolve the backend, compile each sweep point's kernel (``Points``) and run
their share of chunks through ``execute``, which launches the fused chunk kernel
and collects its outputs into pieces (``_runfile``); ``_gpu_check`` builds its
kernels through ``Points`` too, exactly as a run does.
"""
import contextlib
import math
import signal
import sys
import time

import numpy as np

from sgdsim import kernels
from sgdsim.kernels._observe import I_FP_STOP

from ._config import ExperimentError
from ._plan import check_capabilities, check_initial_values, configuration, model_for
from .observables import enabled
from ._runfile import Piece
from ._steps import steps_run

__all__ = ["resolve_backend", "device_name", "Progress", "Points", "Interrupts", "execute",
           "state_arrays", "restore_state", "CHECKPOINT_BYTES", "SLICE_SECONDS"]

# A run saves a checkpoint sooner than its interval when the unsaved rows pass this size.
CHECKPOINT_BYTES = 256 << 20
# A kernel launch runs about this many seconds of steps (a signal waits at most that long);
# a chunk's first launch runs at most FIRST_SLICE_STEPS steps, to measure the rate.
SLICE_SECONDS = 2.0
FIRST_SLICE_STEPS = 64


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
    """tqdm bar on an interactive stderr; otherwise a plain line at the first slice, then at
    most every PLAIN_SECONDS, and at the end."""

    PLAIN_SECONDS = 10.0

    def __init__(self, total, quiet, done=0):
        self.quiet = quiet
        self.total = max(total, 1)
        self.done = done
        self.start_done = done
        self.ran = 0
        self.start = time.perf_counter()
        self.bar = None
        self.printed = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            # The kernels' rate is the postfix; tqdm's own rate is left out (shown once).
            self.bar = tqdm(total=total, initial=done, unit="traj-step", unit_scale=True,
                            file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}<{remaining}{postfix}]")

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
            now = time.perf_counter()
            if (self.printed is not None and now - self.printed < self.PLAIN_SECONDS
                    and self.done < self.total):
                return
            self.printed = now
            elapsed = now - self.start
            planned_rate = (self.done - self.start_done) / elapsed if elapsed > 0 else math.nan
            rate = self.ran / elapsed if elapsed > 0 else math.nan
            left = (self.total - self.done) / planned_rate if planned_rate > 0 else math.nan
            print(f"sgdsim: {label}: {self.done / self.total:6.1%} done, "
                  f"{rate:.3g} traj-steps/s, {left:.0f} s left", file=sys.stderr, flush=True)

    def exclude(self, seconds):
        """Leave ``seconds`` (a kernel's compilation) out of the rate and the time left."""
        self.start += seconds

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Points:
    """Per sweep point: model, compiled kernel, parameters and its paths array."""

    def __init__(self, plan, source):
        self.plan = plan
        self.models = []
        for index, (_, point) in enumerate(plan.points):
            model = model_for(point["model"], point["dynamics"])
            check_capabilities(model, point, source)
            check_initial_values(point, plan.seed, source, index, plan.per_point, plan.dtype)
            self.models.append(model)
        self.cache = {}
        self.compiled = set()

    def get(self, index):
        if index not in self.cache:
            plan, point = self.plan, self.plan.points[index][1]
            kernel = kernels.get_kernel(plan.backend, self.models[index], point["dynamics"],
                                        plan.dtype, plan.observables,
                                        tracked=enabled(plan.observables))
            conf_i, conf_f = configuration(plan.observables, plan.per_point, point)
            paths = np.full((plan.path_count, plan.path_steps.size, plan.dim), np.nan,
                            dtype=plan.dtype)
            params = kernels.dynamics_params(point["dynamics"])
            self.cache = {index: (kernel, params, conf_i, conf_f, paths)}
        return self.cache[index]


class Interrupts:
    """SIGTERM and SIGINT, noted and acted on between kernel launches.

    Inside the block a signal only sets ``requested`` while the run is computing;
    ``execute`` looks at it after every slice of steps (a launch lasts about
    ``SLICE_SECONDS``), saves a checkpoint of the finished chunks and of the chunk in
    progress, and raises KeyboardInterrupt. While a kernel compiles (``immediate``)
    the signal raises KeyboardInterrupt at once. A batch system's SIGTERM is thus
    honoured within seconds wherever the run is, and never between a launch and the
    bookkeeping of its results. Outside the main thread (no signal handlers there)
    nothing changes.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = None
        self.previous = {}
        self.deferring = True

    @contextlib.contextmanager
    def immediate(self):
        """Within the block a signal interrupts at once (nothing to save is in flight)."""
        if self.requested is not None:
            raise KeyboardInterrupt
        self.deferring = False
        try:
            yield
        finally:
            self.deferring = True

    def __enter__(self):
        for signum in self.SIGNALS:
            try:
                self.previous[signum] = signal.signal(signum, self._note)
            except ValueError:  # not the main thread
                pass
        return self

    def _note(self, signum, frame):
        first = self.requested is None
        self.requested = signum
        if not first or not self.deferring:   # a second signal stops at once
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False


class _Slicer:
    """Steps per launch, so that one launch takes about SLICE_SECONDS (per kernel).

    The first launch of a chunk is short; later ones scale with the measured rate.
    Results do not depend on where the slices end (kernels._launch.ChunkState).
    """

    def __init__(self):
        self.rate = {}        # id(kernel) -> trajectory-steps per second

    def steps(self, kernel, n):
        rate = self.rate.get(id(kernel.kernel))
        if rate is None:
            return max(1, min(FIRST_SLICE_STEPS, (1 << 22) // max(n, 1)))
        return max(1, int(SLICE_SECONDS * rate / max(n, 1)))

    def measured(self, kernel, n, steps, seconds):
        if seconds > 0:
            self.rate[id(kernel.kernel)] = n * steps / seconds


def execute(plan, points, first, progress, save=None, interval=None, interrupts=None,
            partial=None):
    """Run chunks first..end; hand finished pieces to ``save``; return the last piece.

    Each chunk runs in slices of steps. ``save(piece, c0, c1, partial)`` makes chunks
    [c0, c1) durable with the chunk in progress, ``partial = (c1, state)`` or None;
    it is called every ``interval`` seconds (inside a long chunk too) and when one of
    ``interrupts`` (an ``Interrupts``) is requested, after which KeyboardInterrupt is
    raised. ``partial = (first, arrays)`` resumes chunk ``first`` from a checkpoint.
    A Ctrl-C without ``interrupts`` saves what is done between chunks, as before.
    """
    piece, piece_first = Piece(plan), first
    last_save = time.perf_counter()
    n_points = plan.n_points
    slicer = _Slicer()
    c = first
    state = None

    saved = [False]     # a checkpoint was saved on request, just before the interrupt

    def checkpoint(now_state, last=False):
        nonlocal piece, piece_first, last_save
        saved[0] = last
        full, full_first = piece, piece_first
        # Start the next piece first: an interrupt inside save() must not save twice.
        piece, piece_first = Piece(plan), c
        save(full, full_first, c, (c, now_state) if now_state is not None else None)
        last_save = time.perf_counter()

    try:
        for c in range(first, len(plan.chunks)):
            p, a, b = plan.chunks[c]
            kernel, d, conf_i, conf_f, paths = points.get(p)
            g_first = p * plan.per_point + a
            x0 = kernels.initial_state(plan.points[p][1]["init"], g_first, b - a, plan.seed,
                                       plan.dtype, plan.dim)
            state = kernel.start(x0, g_first, a, plan.steps, plan.seed,
                                 points.models[p].params, d, conf_i, conf_f, plan.boundaries,
                                 plan.ts_steps, paths)
            if partial is not None and partial[0] == c:
                restore_state(state, partial[1])
                partial = None
            stop = bool(conf_i[I_FP_STOP])
            if not kernel.compiled:
                with interrupts.immediate() if interrupts is not None else _nothing():
                    kernel.compile(state)
                progress.exclude(kernel.compile_seconds)
            while not state.done:
                t0, before = state.t, state.seconds
                kernel.advance(state, t0 + slicer.steps(kernel, b - a))
                slicer.measured(kernel, b - a, state.t - t0, state.seconds - before)
                out = state.out
                progress.update((b - a) * (state.t - t0),
                                f"point {p + 1}/{n_points} trajectories {b}/{plan.hi}",
                                ran=steps_run(state.t, out["fp_steps"], out["div_steps"], stop)
                                - steps_run(t0, out["fp_steps"], out["div_steps"], stop))
                if state.done or save is None:
                    continue
                if interrupts is not None and interrupts.requested is not None:
                    checkpoint(state, last=True)
                    raise KeyboardInterrupt
                if time.perf_counter() - last_save >= interval and interval > 0:
                    checkpoint(state)
            if id(kernel.kernel) not in points.compiled:
                points.compiled.add(id(kernel.kernel))
                piece.compile_seconds += kernel.compile_seconds
            piece.kernel_seconds += state.seconds
            piece.add_chunk(p, a, b, kernel.outputs(state), paths)
            state = None
            now = time.perf_counter()
            if save is not None and c + 1 < len(plan.chunks):
                if interrupts is not None and interrupts.requested is not None:
                    c += 1
                    checkpoint(None, last=True)
                    raise KeyboardInterrupt
                if now - last_save >= interval or piece.nbytes() >= CHECKPOINT_BYTES:
                    c += 1
                    checkpoint(None)
    except KeyboardInterrupt:
        if save is not None and not saved[0]:
            # Interrupted at once (compiling, a second signal, or no Interrupts): save
            # the finished chunks and a consistent chunk in progress.
            running = state if state is not None and 0 < state.t < state.steps else None
            end = piece_first + len(piece.segments)
            if running is not None and end != c:
                running = None
            if piece.segments or running is not None:
                save(piece, piece_first, end, (end, running) if running is not None else None)
                saved[0] = True
        if save is not None and (saved[0] or piece_first > 0):
            print("sgdsim: interrupted; checkpoint saved, `sgdsim resume` continues it",
                  file=sys.stderr, flush=True)
        raise
    return piece, piece_first


@contextlib.contextmanager
def _nothing():
    yield


def state_arrays(state):
    """What a checkpoint stores of a chunk in progress (see ``restore_state``)."""
    arrays = {f"out/{k}": v for k, v in state.out.items() if k != "hist"}
    arrays["out/hist"] = state.out["hist"].sum(axis=0, keepdims=True)
    arrays["paths"] = state.paths
    return arrays, {"t": state.t, "seconds": state.seconds}


def restore_state(state, stored):
    """Put a stored chunk state (``state_arrays``, read back) into a freshly started one."""
    arrays, attrs = stored
    for key, value in arrays.items():
        if key == "paths":
            state.paths[...] = value
        elif key == "out/hist":
            state.out["hist"][...] = 0
            state.out["hist"][0] = value[0]     # the thread copies are summed anyway
        else:
            state.out[key[4:]][...] = value
    state.t = int(attrs["t"])
    state.seconds = float(attrs["seconds"])
