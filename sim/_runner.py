"""Turn a resolved experiment into a run file (SPEC 5-6).

The runner plans the work (sweep points x chunks of this process's share of
trajectories, ``_plan``) and runs the chunks through the engine it shares with
``_mpi`` (``_engine``: the fused chunk kernel of the chosen backend per chunk,
its outputs collected into pieces, ``_runfile``). Pieces are saved as
checkpoints while the run goes (``_checkpoint``): the output path only ever
holds nothing, a resumable manifest, or the complete run file.

Determinism: chunks start on multiples of REDUCE_GROUP trajectories within a
point, integer accumulators are order-free, and timeseries group sums are
added in a fixed tree over group indices, so every dataset is identical bit
for bit whatever the chunk size, thread count, interruptions, shards or ranks.
"""
import os
import sys
import tomllib

from ._checkpoint import Checkpoint
from ._config import ExperimentError, resolve_experiment
from ._engine import Interrupts, Points, Progress, device_name, execute, resolve_backend
from ._mpi import run_mpi
from ._plan import configuration, make_plan
from ._runfile import failure_warnings
from . import _sizing
from ._version import FORMAT, FORMAT_VERSION, other_format

__all__ = ["run_experiment", "resume_run", "merge_shards"]

_configuration = configuration  # bench/peers.py uses the old private name


def _checkpoint_interval(experiment, seconds=None):
    """Seconds of chunks between checkpoints; 0 saves after every chunk.

    ``seconds`` (the --checkpoint-seconds flag) beats the environment variable
    SGDSIM_CHECKPOINT_SECONDS, which beats the experiment's ``[run] checkpoint_seconds``
    (default 60). A checkpoint also comes sooner when the unsaved rows pass
    ``_engine.CHECKPOINT_BYTES``.
    """
    if seconds is not None:
        if not 0 <= seconds < float("inf"):
            raise ExperimentError(None, "run.checkpoint_seconds",
                                  f"must be a finite number >= 0 (got {seconds!r})")
        return float(seconds)
    text = os.environ.get("SGDSIM_CHECKPOINT_SECONDS")
    if text is None:
        return experiment["run"]["checkpoint_seconds"]
    try:
        return max(0.0, float(text))
    except ValueError:
        raise ExperimentError(None, None, f"SGDSIM_CHECKPOINT_SECONDS must be a number "
                                          f"(got {text!r})") from None


def planned(experiment, backend, shard=None):
    """The plan of a run here: an automatic chunk size is shrunk to fit the device memory."""
    plan = make_plan(experiment, backend, shard)
    if not experiment["run"]["chunk"]:
        fitted = _sizing.fit_chunk(plan)
        if fitted != plan.chunk:
            plan = make_plan(experiment, backend, shard, fitted)
    return plan


def run_experiment(experiment, out_path, overwrite=False, quiet=False, shard=None, source=None,
                   mpi=False, checkpoint_seconds=None, force=False):
    """Run a resolved experiment and write its run file at ``out_path``; return the path.

    Until the run is complete the output path holds nothing or a resumable
    checkpoint (see ``_checkpoint``); ``checkpoint_seconds`` overrides the
    interval between checkpoints (see ``_checkpoint_interval``). ``shard=(i, n)``
    runs shard i of n; ``mpi=True`` splits the run over the ranks of
    MPI.COMM_WORLD (``_mpi``, which writes no checkpoints). A run whose file would
    not fit the free disk, or whose chunk would not fit the device's memory, is refused
    before anything is written (``_sizing``) unless ``force``.
    """
    out_path = os.fspath(out_path)
    if mpi:
        return run_mpi(experiment, out_path, overwrite=overwrite, quiet=quiet, source=source)
    if "splitting" in experiment:
        from ._splitting import run_splitting
        return run_splitting(experiment, out_path, overwrite=overwrite, quiet=quiet,
                             source=source, checkpoint_seconds=checkpoint_seconds, shard=shard)
    if os.path.exists(out_path) and not overwrite:
        raise ExperimentError(out_path, None, "exists (use --overwrite to replace it)")
    interval = _checkpoint_interval(experiment, checkpoint_seconds)
    backend = resolve_backend(experiment["run"]["backend"])
    plan = planned(experiment, backend, shard)
    if not force:
        _sizing.check(plan, out_path, source)
    points = Points(plan, source)
    ckpt = Checkpoint(out_path, plan, device_name(backend))
    ckpt.clear_stale()
    _run_chunks(ckpt, points, quiet, interval)
    return out_path


def warn_failures(path):
    """Print on stderr the run file's sweep points with non-finite (or diverged) trajectories."""
    for line in failure_warnings(path):
        print(f"sgdsim: warning: {line}", file=sys.stderr, flush=True)


def _run_chunks(ckpt, points, quiet, interval):
    plan = ckpt.plan
    done = sum(b - a for _, a, b in plan.chunks[:ckpt.done]) * plan.steps
    if ckpt.partial is not None:
        p, a, b = plan.chunks[ckpt.partial[0]]
        done += (b - a) * ckpt.partial[1]
    progress = Progress(plan.n_points * plan.n_local * plan.steps, quiet, done)
    try:
        with Interrupts() as interrupts:
            piece, first = execute(plan, points, ckpt.done, progress, ckpt.save, interval,
                                   interrupts, ckpt.load_partial())
            ckpt.finish(piece, first)
    finally:
        progress.close()
    warn_failures(ckpt.out_path)


def _plan_from_attrs(path):
    """A function rebuilding a run file's plan from its root attributes (for resume)."""

    def make(attrs, chunk):
        text = attrs["experiment"]
        text = text.decode() if isinstance(text, bytes) else str(text)
        experiment = resolve_experiment(tomllib.loads(text), path)
        shard = tuple(int(v) for v in attrs["shard"]) if "shard" in attrs else None
        return make_plan(experiment, str(attrs["backend"]), shard, chunk)

    return make


def resume_run(path, quiet=False, checkpoint_seconds=None):
    """Finish the interrupted run at ``path``; a complete file is left as it is.

    ``checkpoint_seconds`` overrides the interval between checkpoints, as for a run.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "no such file", path)
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            version = f.attrs.get("format_version")
            has_checkpoint = "checkpoint" in f
            text = f.attrs.get("experiment", "")
            complete = bool(f.attrs.get("complete", False))
    except OSError as exc:
        raise ExperimentError(path, None, f"not a readable HDF5 run file ({exc})") from None
    if fmt not in (FORMAT, FORMAT.encode()):
        raise ExperimentError(path, None, f"not an sgdsim run file (format = {fmt!r})")
    if version != FORMAT_VERSION:
        raise ExperimentError(path, "format_version", other_format(version))
    text = text.decode() if isinstance(text, bytes) else str(text)
    if "[splitting]" in text:
        experiment = resolve_experiment(tomllib.loads(text), path)
        if complete:
            if not quiet:
                print(f"sgdsim: {path} is complete; nothing to resume", file=sys.stderr)
            return path
        from ._splitting import resume_splitting
        return resume_splitting(path, experiment, quiet, checkpoint_seconds)
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
    interval = _checkpoint_interval(plan.experiment, checkpoint_seconds)
    resolve_backend(plan.backend)  # a cuda run resumes only where a GPU is usable
    ckpt.device = device_name(plan.backend)
    points = Points(plan, path)
    if not quiet:
        inside = (f", step {ckpt.partial[1]}/{plan.steps} of chunk {ckpt.partial[0] + 1}"
                  if ckpt.partial is not None else "")
        print(f"sgdsim: resuming {path} at chunk {ckpt.done}/{len(plan.chunks)}{inside}",
              file=sys.stderr)
    _run_chunks(ckpt, points, quiet, interval)
    return path


def merge_shards(paths, out_path, overwrite=False):
    """Combine the complete shard files of one experiment into its run file (see _merge)."""
    from ._merge import merge_shards as merge
    return merge(paths, out_path, overwrite=overwrite)
