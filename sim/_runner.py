"""Turn a resolved experiment into a run file (SPEC 5-6).

The runner plans the work (sweep points x chunks of this process's share of
trajectories, ``_plan``), launches the fused chunk kernel of the chosen backend
for each chunk, and collects what the kernels return into pieces
(``_runfile``). Pieces are saved as checkpoints while the run goes
(``_checkpoint``): the output path only ever holds nothing, a resumable
manifest, or the complete run file.

Determinism: chunks start on multiples of REDUCE_GROUP trajectories within a
point, integer accumulators are order-free, and timeseries group sums are
added in a fixed tree over group indices, so every dataset is identical bit
for bit whatever the chunk size, thread count, interruptions, shards or ranks.
"""
import math
import os
import signal
import sys
import time
import tomllib

import numpy as np

import kernels
from kernels._observe import I_FP_STOP

from ._checkpoint import Checkpoint
from ._config import ExperimentError, resolve_experiment
from ._plan import (
    check_capabilities, configuration, experiment_toml, make_plan, model_for, shard_range,
    sweep_points, timeseries_steps,
)
from ._runfile import FORMAT, FORMAT_VERSION, Piece
from ._steps import steps_run

__all__ = ["run_experiment", "resume_run", "merge_shards", "resolve_backend", "sweep_points",
           "timeseries_steps", "shard_range", "experiment_toml", "FORMAT", "FORMAT_VERSION"]

# Save a checkpoint after this many seconds of chunks (SGDSIM_CHECKPOINT_SECONDS overrides;
# 0 saves after every chunk), or sooner when the unsaved rows pass CHECKPOINT_BYTES.
CHECKPOINT_SECONDS = 60.0
CHECKPOINT_BYTES = 256 << 20

_configuration = configuration  # bench/peers.py uses the old private name


def resolve_backend(name):
    """The backend that ``name`` means here: ``auto`` is cuda when usable, else cpu."""
    if name == "auto":
        return "cuda" if kernels.cuda_usable() else "cpu"
    if name == "cuda" and not kernels.cuda_usable():
        raise ExperimentError(None, "run.backend", "cuda: no usable GPU (numba-cuda found none)")
    return name


def checkpoint_seconds():
    """Seconds between checkpoints (``SGDSIM_CHECKPOINT_SECONDS``, default 60)."""
    text = os.environ.get("SGDSIM_CHECKPOINT_SECONDS")
    if text is None:
        return CHECKPOINT_SECONDS
    try:
        return max(0.0, float(text))
    except ValueError:
        raise ExperimentError(None, None, f"SGDSIM_CHECKPOINT_SECONDS must be a number "
                                          f"(got {text!r})") from None


class _Progress:
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


class _Points:
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
        self.compile_seconds = 0.0

    def get(self, index):
        if index not in self.cache:
            plan, point = self.plan, self.plan.points[index][1]
            kernel = kernels.get_kernel(plan.backend, self.models[index], point["dynamics"],
                                        plan.dtype, tangent="lyapunov" in plan.observables)
            conf_i, conf_f = configuration(plan.observables, plan.per_point)
            paths = np.full((plan.path_count, plan.path_steps.size, plan.dim), np.nan,
                            dtype=plan.dtype)
            params = kernels.dynamics_params(point["dynamics"])
            self.cache = {index: (kernel, params, conf_i, conf_f, paths)}
        return self.cache[index]


def _execute(plan, points, first, progress, save=None, interval=None):
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


class _SigtermAsInterrupt:
    """Within the block, SIGTERM (a batch system's time limit) acts like Ctrl-C."""

    def __enter__(self):
        self.previous = None
        try:
            self.previous = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread
            pass
        return self

    @staticmethod
    def _handler(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def run_experiment(experiment, out_path, overwrite=False, quiet=False, shard=None, source=None,
                   mpi=False):
    """Run a resolved experiment and write its run file at ``out_path``; return the path.

    Until the run is complete the output path holds nothing or a resumable
    checkpoint (see ``_checkpoint``). ``shard=(i, n)`` runs shard i of n;
    ``mpi=True`` splits the run over the ranks of MPI.COMM_WORLD (``_mpi``).
    """
    out_path = os.fspath(out_path)
    if mpi:
        from ._mpi import run_mpi
        return run_mpi(experiment, out_path, overwrite=overwrite, quiet=quiet, source=source)
    if os.path.exists(out_path) and not overwrite:
        raise ExperimentError(out_path, None, "exists (use --overwrite to replace it)")
    backend = resolve_backend(experiment["run"]["backend"])
    plan = make_plan(experiment, backend, shard)
    points = _Points(plan, source)
    ckpt = Checkpoint(out_path, plan, _device_name(backend))
    ckpt.clear_stale()
    _run_chunks(ckpt, points, quiet)
    return out_path


def _run_chunks(ckpt, points, quiet):
    plan = ckpt.plan
    done = sum(b - a for _, a, b in plan.chunks[:ckpt.done]) * plan.steps
    progress = _Progress(plan.n_points * plan.n_local * plan.steps, quiet, done)
    try:
        with _SigtermAsInterrupt():
            piece, first = _execute(plan, points, ckpt.done, progress, ckpt.save,
                                    checkpoint_seconds())
            ckpt.finish(piece, first)
    finally:
        progress.close()


def _plan_from_attrs(path):
    """A function rebuilding a run file's plan from its root attributes (for resume)."""

    def make(attrs, chunk):
        text = attrs["experiment"]
        text = text.decode() if isinstance(text, bytes) else str(text)
        experiment = resolve_experiment(tomllib.loads(text), path)
        shard = tuple(int(v) for v in attrs["shard"]) if "shard" in attrs else None
        return make_plan(experiment, str(attrs["backend"]), shard, chunk)

    return make


def resume_run(path, quiet=False):
    """Finish the interrupted run at ``path``; a complete file is left as it is."""
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "no such file", path)
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            has_checkpoint = "checkpoint" in f
    except OSError as exc:
        raise ExperimentError(path, None, f"not a readable HDF5 run file ({exc})") from None
    if fmt not in (FORMAT, FORMAT.encode()):
        raise ExperimentError(path, None, f"not an sgdsim run file (format = {fmt!r})")
    try:
        ckpt = Checkpoint.load(path, _plan_from_attrs(path))
    except KeyError as exc:
        raise ExperimentError(path, None, f"incomplete and without a usable checkpoint "
                                          f"({exc}); run it again") from None
    except FileNotFoundError as exc:
        raise ExperimentError(path, None, f"checkpoint part {exc.filename} is missing; "
                                          f"run it again with --overwrite") from None
    if ckpt is None:
        Checkpoint(path, None, "").remove_leftovers()
        if not quiet:
            print(f"sgdsim: {path} is complete; nothing to resume", file=sys.stderr)
        return path
    if not has_checkpoint:
        raise ExperimentError(path, None, "incomplete and without a checkpoint")
    plan = ckpt.plan
    resolve_backend(plan.backend)  # a cuda run resumes only where a GPU is usable
    ckpt.device = _device_name(plan.backend)
    points = _Points(plan, path)
    if not quiet:
        print(f"sgdsim: resuming {path} at chunk {ckpt.done}/{len(plan.chunks)}",
              file=sys.stderr)
    _run_chunks(ckpt, points, quiet)
    return path


def merge_shards(paths, out_path, overwrite=False):
    """Combine the complete shard files of one experiment into its run file (see _merge)."""
    from ._merge import merge_shards as merge
    return merge(paths, out_path, overwrite=overwrite)


def _device_name(backend):
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
