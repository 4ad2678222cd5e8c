"""The `sgdsim` command line (SPEC 1): run, info, models, resume, merge, gpu-check.

Exit codes: 0 success; 2 bad input (usage, experiment file, unreadable run file), reported
as one stderr line ``error: <file>: <key> <what is wrong>`` with no traceback; 1 an internal
failure (``error: internal: ...``; set SGDSIM_DEBUG=1 for the traceback). Bad input never
creates, truncates or overwrites an output file: everything is checked before the runner
is called, and the runner writes through a temporary file.
"""
import argparse
import fnmatch
import json
import math
import os
import re
import sys
import traceback
from pathlib import Path

from sgdsim.sim import _schema
from sgdsim.sim._config import ExperimentError, _show, load_experiment
from sgdsim.sim._version import FORMAT, FORMAT_VERSION, __version__

__all__ = ["main", "UsageError"]

PROG = "sgdsim"


class UsageError(Exception):
    """Bad input that is not in an experiment file: flags, output paths, run files."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error becomes one `error:` line and exit 2 (see `main`)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


# --------------------------------------------------------------------------- entry point

def main(argv=None):
    """Run the `sgdsim` command line with ``argv`` (default sys.argv[1:]); return the exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        return args.handler(args) or 0
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except (ExperimentError, UsageError) as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # `sgdsim info OUT.h5 | head`: the reader left; nothing is wrong.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:
        if os.environ.get("SGDSIM_DEBUG"):
            traceback.print_exc()
        hint = "" if os.environ.get("SGDSIM_DEBUG") else " (SGDSIM_DEBUG=1 shows the traceback)"
        _error(f"internal: {type(exc).__name__}: {exc}{hint}")
        return 1


def _error(message):
    print("error: " + " ".join(str(message).splitlines()), file=sys.stderr)


def _build_parser():
    parser = _Parser(prog=PROG, description="Batched Monte Carlo simulator of SGD and "
                                            "Langevin dynamics.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__} (run files: {FORMAT} v{FORMAT_VERSION})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run an experiment file",
                              description="Run an experiment; flags override its [run] table.")
    run.add_argument("experiment", metavar="EXP.toml", help="experiment file (TOML)")
    run.add_argument("-o", "--output", metavar="OUT.h5", required=True, help="run file to write")
    run.add_argument("--backend", choices=_schema.RUN["backend"].choices,
                     help="override run.backend")
    run.add_argument("--trajectories", type=int, metavar="N", help="override run.trajectories")
    run.add_argument("--steps", type=int, metavar="T", help="override run.steps")
    run.add_argument("--seed", type=int, metavar="S", help="override run.seed")
    run.add_argument("--chunk", type=int, metavar="C", help="override run.chunk")
    run.add_argument("--shard", type=_shard, metavar="I/N",
                     help="run only shard I of N (0 <= I < N); combine with `sgdsim merge`")
    run.add_argument("--mpi", action="store_true",
                     help="split the run over the ranks of `mpiexec -n K` (needs mpi4py); "
                          "rank 0 writes OUT.h5")
    run.add_argument("--checkpoint-seconds", type=_seconds, metavar="S",
                     help=_CHECKPOINT_HELP + "; overrides run.checkpoint_seconds")
    run.add_argument("--overwrite", action="store_true", help="replace an existing OUT.h5")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan (kernels, chunks, bytes, memory) and exit")
    run.add_argument("--force", action="store_true",
                     help="run even if the run file may not fit the disk or a chunk the memory")
    run.set_defaults(handler=_cmd_run)

    info = commands.add_parser("info", help="describe a run file",
                               description="Describe a run file: experiment, sizes, datasets, "
                                           "timings, and whether it is complete.")
    info.add_argument("file", metavar="OUT.h5")
    info.set_defaults(handler=_cmd_info)

    models = commands.add_parser("models", help="list models, dynamics and observables",
                                 description="Print every model, dynamics and observable with "
                                             "its keys, types, defaults and ranges.")
    models.set_defaults(handler=_cmd_models)

    resume = commands.add_parser("resume", help="continue an interrupted run",
                                 description="Continue an interrupted run from its checkpoint; "
                                             "the result is bit-identical to an uninterrupted "
                                             "run. A complete file is left as it is.")
    resume.add_argument("file", metavar="OUT.h5")
    resume.add_argument("--checkpoint-seconds", type=_seconds, metavar="S",
                        help=_CHECKPOINT_HELP + "; overrides the stored run.checkpoint_seconds")
    resume.add_argument("--quiet", action="store_true", help="no progress output")
    resume.set_defaults(handler=_cmd_resume)

    merge = commands.add_parser("merge", help="combine the shards of one experiment",
                                description="Combine the complete shard files (--shard I/N) of "
                                            "one experiment into its run file, bit-identical "
                                            "to a single-process run.")
    merge.add_argument("shards", metavar="SHARD.h5", nargs="+")
    merge.add_argument("-o", "--output", metavar="OUT.h5", required=True)
    merge.add_argument("--overwrite", action="store_true", help="replace an existing OUT.h5")
    merge.set_defaults(handler=_cmd_merge)

    gpu = commands.add_parser(
        "gpu-check", help="compile every CUDA kernel variant for real GPUs (no GPU needed)",
        description="Compile every CUDA kernel variant to PTX for each compute capability, "
                    "assemble it with ptxas and report registers, stack frame, spills, shared "
                    "memory and occupancy; with a GPU present, also run each variant there "
                    "against the CPU backend. Exit 1 if any variant fails.")
    gpu.add_argument("--cc", type=_capabilities, default=None, metavar="80,90",
                     help="compute capabilities to compile for (default 80,90)")
    gpu.add_argument("--out", metavar="DIR", default="gpu-check",
                     help="folder for the PTX files and report.json (default ./gpu-check)")
    gpu.add_argument("--json", action="store_true", help="print the report as JSON")
    gpu.add_argument("--jobs", type=int, metavar="N", help="parallel compile processes "
                                                           "(default: one per core)")
    gpu.add_argument("--variants", metavar="PATTERN", action="append",
                     help="only variants matching this shell pattern (repeatable), "
                          "e.g. 'scalar/*/langevin/*'")
    gpu.add_argument("--model", metavar="MODULE:OBJECT", action="append", default=[],
                     help="also check a user model (repeatable); with --variants 'user/*' "
                          "only the user models")
    gpu.add_argument("--list", action="store_true", help="list the variants and exit")
    device = gpu.add_mutually_exclusive_group()
    device.add_argument("--device", dest="device", action="store_true", default=None,
                        help="run each variant on the GPU against the CPU (default: when a "
                             "GPU is present)")
    device.add_argument("--no-device", dest="device", action="store_false",
                        help="compile only, even where a GPU is present")
    gpu.set_defaults(handler=_cmd_gpu_check)
    return parser


def _capabilities(text):
    capabilities = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d)(\d)\s*", part)
        if not match:
            raise argparse.ArgumentTypeError(f"must be compute capabilities such as 80,90 "
                                             f"(got {text!r})")
        capabilities.append((int(match.group(1)), int(match.group(2))))
    return tuple(dict.fromkeys(capabilities))


_CHECKPOINT_HELP = ("seconds of chunks between checkpoints (0: after every chunk); "
                    "beats SGDSIM_CHECKPOINT_SECONDS")


def _seconds(text):
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (got {text!r})")
    return seconds


def _shard(text):
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"must be I/N, for example 0/4 (got {text!r})")
    index, count = int(match.group(1)), int(match.group(2))
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"must be I/N with 0 <= I < N (got {text!r})")
    return index, count


# --------------------------------------------------------------------------- run

_RUN_FLAGS = ("backend", "trajectories", "steps", "seed", "chunk", "checkpoint_seconds")


def _cmd_run(args):
    _user_modules_importable()
    overrides = {f"run.{flag}": getattr(args, flag) for flag in _RUN_FLAGS
                 if getattr(args, flag) is not None}
    experiment = load_experiment(args.experiment, overrides)
    if args.mpi and args.shard is not None:
        raise UsageError(f"{PROG} run: --mpi and --shard cannot be combined")
    if args.shard is not None:
        index, count = args.shard
        if "splitting" in experiment:      # a splitting run is cut over its independent runs
            key, units = "[splitting] runs", experiment["splitting"]["runs"]
        else:
            key, units = "[run] trajectories", experiment["run"]["trajectories"]
        if count > units:
            raise UsageError(f"{args.experiment}: {key} = {units} cannot be "
                             f"split into --shard {index}/{count} shards")
    if args.dry_run:
        return _dry_run(experiment, args)
    _check_output(args.output, args.overwrite, inputs=[args.experiment])
    from sgdsim.kernels import KernelCompileError
    from sgdsim.sim._runner import run_experiment
    try:
        extra = {"mpi": True} if args.mpi else {}
        if args.checkpoint_seconds is not None:
            # Also passed on its own: the flag beats SGDSIM_CHECKPOINT_SECONDS, the key does not.
            extra["checkpoint_seconds"] = args.checkpoint_seconds
        run_experiment(experiment, args.output, overwrite=args.overwrite, quiet=args.quiet,
                       shard=args.shard, source=args.experiment, force=args.force, **extra)
    except KernelCompileError as exc:
        raise ExperimentError(args.experiment, "model.name",
                              f"{experiment['model']['name']!r} cannot be compiled for the "
                              f"{exc.backend} backend: {exc.reason}") from None
    return 0


def _dry_run(experiment, args):
    """Print what ``run`` would do, check the sizes, write nothing."""
    from sgdsim.sim import _sizing
    from sgdsim.sim._engine import resolve_backend
    from sgdsim.sim._plan import check_capabilities, model_for
    from sgdsim.sim._runner import planned

    backend = resolve_backend(experiment["run"]["backend"])
    if "splitting" in experiment:
        return _dry_run_splitting(experiment, backend, args.shard)
    plan = planned(experiment, backend, args.shard)
    variants = set()
    for _, point in plan.points:
        model = model_for(point["model"], point["dynamics"])
        check_capabilities(model, point, args.experiment)
        dyn = point["dynamics"]
        variants.add((model.specialisation, dyn["name"], dyn.get("noise"),
                      dyn.get("batch_size", 1) == 1))
    for line in _sizing.describe(plan, len(variants)):
        print(line)
    if not args.force:
        _sizing.check(plan, args.output, args.experiment)
    return 0


def _dry_run_splitting(experiment, backend, shard):
    """What a splitting run would do: its AMS runs, replicas and kernels (no chunks)."""
    from sgdsim.sim._plan import model_for, sweep_points
    from sgdsim.sim._splitting import run_range

    spl = experiment["splitting"]
    lo, hi = run_range(spl["runs"], shard)
    points = sweep_points(experiment)
    kernels = {(model_for(p["model"], p["dynamics"]).specialisation, p["dynamics"]["name"])
               for _, p in points}
    which = f" (runs {lo}..{hi - 1} of {spl['runs']}, shard {shard[0]}/{shard[1]})" \
        if shard is not None else ""
    print(f"splitting (AMS): {len(points)} sweep point(s) x {hi - lo} independent run(s)"
          f"{which} x {spl['replicas']} replicas, kill {spl['kill']}, score {spl['score']}, "
          f"start {spl['start']}")
    print(f"backend: {backend}; replica kernels to compile: {len(kernels)}")
    print(f"paths stop at A = {{score <= {spl['a']:g}}}, B = {{score >= {spl['b']:g}}} or "
          f"after run.steps = {experiment['run']['steps']} steps; at most "
          f"{spl['max_iterations']} iterations a run")
    print("run file: /splitting datasets of [points, runs]: a few kB")
    return 0


def _user_modules_importable():
    # `python -m sgdsim.sim` puts the working directory on sys.path; the `sgdsim` console script
    # does not. Do the same here so that both resolve "package.module:object" alike.
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def _is_checkpoint(path):
    """Whether ``path`` is an unfinished run's checkpoint manifest."""
    try:
        import h5py
        with h5py.File(path, "r") as f:
            return "checkpoint" in f and not bool(f.attrs.get("complete", True))
    except OSError:
        return False


def _check_output(path, overwrite, inputs=()):
    """Refuse an output path that exists (without --overwrite) or cannot be written."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{path}: output path is a directory")
    if out.exists() or out.is_symlink():
        if not overwrite:
            if _is_checkpoint(out):
                raise UsageError(f"{path}: an interrupted run's checkpoint; `sgdsim resume "
                                 f"{path}` continues it (or pass --overwrite to start afresh)")
            raise UsageError(f"{path}: output file exists (pass --overwrite to replace it)")
        for source in inputs:
            try:
                same = out.samefile(source)
            except OSError:
                same = False
            if same:
                raise UsageError(f"{path}: output file is the input {source}")
    directory = out.parent
    if not directory.is_dir():
        raise UsageError(f"{path}: output directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: output directory {directory} is not writable")


# --------------------------------------------------------------------------- gpu-check

def _cmd_gpu_check(args):
    from sgdsim.sim import _gpu_check

    variants = dict(_gpu_check.VARIANTS)
    if args.model:
        _user_modules_importable()
    for name in args.model:
        variants.update(_gpu_check.user_variants(name, _user_model_object(name)))
    if args.variants:
        variants = {name: experiment for name, experiment in variants.items()
                    if any(fnmatch.fnmatchcase(name, p) for p in args.variants)}
        if not variants:
            raise UsageError(f"{PROG} gpu-check: no variant matches "
                             f"{' '.join(args.variants)}; see --list")
    if args.list:
        print("\n".join(variants))
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"{PROG} gpu-check: --jobs must be >= 1 (got {args.jobs})")
    missing = _gpu_check.missing_tools()
    if missing:
        raise UsageError(f"{PROG} gpu-check: {missing}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{args.out}: --out must be a folder")
    ccs = args.cc or _gpu_check.DEFAULT_CC

    def progress(row):
        if not args.json:
            print(_gpu_check.format_row(row), flush=True)

    if not args.json:
        print(_gpu_check.HEADER, flush=True)
    rows = _gpu_check.check(variants, ccs, out, jobs=args.jobs, device=args.device,
                            progress=progress)
    report = out / "report.json"
    report.write_text(json.dumps(rows, indent=1) + "\n")
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(_gpu_check.summary(rows, report))
    failed = [row for row in rows if "error" in row]
    user = [row for row in failed if row["variant"].startswith("user/")]
    if user and len(user) == len(failed):
        # The user's model does not compile for CUDA: bad input, where it failed.
        row = user[0]
        model = row["variant"].split("/")[1]
        raise UsageError(f"{model} cannot be compiled for CUDA ({row['variant']}, "
                         f"sm_{row['cc']}): {row['error']}")
    if failed:
        _error(f"gpu-check: {len(failed)} failed: "
               + ", ".join(f"{row['variant']} (sm_{row['cc']})" for row in failed))
        return 1
    return 0


def _user_model_object(name):
    """The object named by ``module:object`` for gpu-check --model, or a UsageError."""
    import importlib

    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute.isidentifier():
        raise UsageError(f"{PROG} gpu-check: --model must be \"module:object\" (got {name!r})")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:
        raise UsageError(f"{PROG} gpu-check: --model {name}: cannot import it "
                         f"({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------- resume, merge

def _cmd_resume(args):
    from sgdsim.sim._runner import resume_run
    try:
        resume_run(args.file, quiet=args.quiet, checkpoint_seconds=args.checkpoint_seconds)
    except FileNotFoundError as exc:
        raise UsageError(f"{exc.filename or args.file}: no such file") from None
    return 0


def _cmd_merge(args):
    seen = set()
    for shard in args.shards:
        if not os.path.isfile(shard):
            raise UsageError(f"{shard}: no such shard file")
        identity = os.path.realpath(shard)
        if identity in seen:
            raise UsageError(f"{shard}: shard given twice")
        seen.add(identity)
    _check_output(args.output, args.overwrite, inputs=args.shards)
    from sgdsim.sim._runner import merge_shards
    try:
        merge_shards(list(args.shards), args.output, overwrite=args.overwrite)
    except FileNotFoundError as exc:
        raise UsageError(f"{exc.filename}: no such file") from None
    return 0


# --------------------------------------------------------------------------- info

_TIMINGS = ("kernel_seconds", "compile_seconds", "wall_seconds")


def _trajectory_steps_run(path, steps):
    """Trajectory-steps the kernels ran (see sim._steps); None when the file records
    neither divergence nor first passage."""
    import h5py

    from sgdsim.sim._steps import steps_run
    with h5py.File(path, "r") as f:
        if "divergence/steps" not in f and "first_passage/steps" not in f:
            return None
        first = f["first_passage/steps"][()] if "first_passage/steps" in f else None
        stop = bool(first is not None and f["first_passage"].attrs.get("stop", False))
        div = f["divergence/steps"][()] if "divergence/steps" in f else None
        return steps_run(steps, first, div, stop)


_SHOWN = {"format", "format_version", "package_version", "experiment", "seed", "trajectories",
          "steps", "dtype", "backend", "device", "rng", "complete", "created", *_TIMINGS}


def _cmd_info(args):
    import h5py

    path = args.file
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory, not a run file")
    try:
        run_file = h5py.File(path, "r")
    except OSError as exc:
        raise UsageError(f"{path}: not a readable HDF5 run file ({exc})") from None
    with run_file:
        attrs = {name: _plain(value) for name, value in run_file.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise UsageError(f"{path}: not an sgdsim run file "
                             f"(root attribute format = {_show(attrs.get('format'))}, "
                             f"expected {_show(FORMAT)})")
        datasets = []
        run_file.visititems(lambda name, item: datasets.append((name, item))
                            if isinstance(item, h5py.Dataset) else None)
        lines = _describe_run(path, attrs, [(name, item.shape, item.dtype, item.nbytes)
                                            for name, item in datasets])
    print("\n".join(lines))
    return 0


def _plain(value):
    """An HDF5 attribute as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _describe_run(path, attrs, datasets):
    def attr(name):
        return attrs.get(name, "?")

    complete = attrs.get("complete")
    lines = [f"{path}: sgdsim run file, format version {attr('format_version')}, "
             f"written by sgdsim {attr('package_version')} on {attr('created')}"]
    if complete is True or complete == 1:
        lines.append("complete: yes")
    else:
        lines.append(f"complete: no (interrupted or still running; "
                     f"`sgdsim resume {path}` continues it)")
    lines.append(f"run: seed {attr('seed')}, {attr('trajectories')} trajectories per point x "
                 f"{attr('steps')} steps, {attr('dtype')}, backend {attr('backend')} "
                 f"on {attr('device')}, rng {attr('rng')}")
    timings = []
    for name in _TIMINGS:
        value = attrs.get(name)
        label = name.replace("_seconds", "")
        timings.append(f"{label} {value:.3f} s" if isinstance(value, (int, float))
                       else f"{label} ?")
    lines.append("timings: " + ", ".join(timings))
    points = next((shape[0] for name, shape, _, _ in datasets if name == "final/theta"), None)
    kernel = attrs.get("kernel_seconds")
    if (points and isinstance(kernel, (int, float)) and kernel > 0
            and isinstance(attrs.get("trajectories"), int) and isinstance(attrs.get("steps"), int)):
        run_steps = _trajectory_steps_run(path, attrs["steps"])
        planned = points * attrs["trajectories"] * attrs["steps"]
        rate = (run_steps if run_steps is not None else planned) / kernel
        what = ("trajectory-steps actually run" if run_steps is not None and run_steps < planned
                else "trajectory-steps")
        lines.append(f"throughput: {rate:.3e} {what}/s in the kernels "
                     f"({points} point{'s' if points != 1 else ''})")
    others = {k: v for k, v in attrs.items() if k not in _SHOWN}
    if others:
        lines.append("other attributes: " + ", ".join(f"{k} = {_show(v)}"
                                                      for k, v in sorted(others.items())))
    total = sum(nbytes for _, _, _, nbytes in datasets)
    lines.append(f"datasets ({len(datasets)}, {_size(total)}):")
    width = max((len(name) for name, _, _, _ in datasets), default=0) + 1
    for name, shape, dtype, nbytes in datasets:
        lines.append(f"  /{name:<{width}} {str(list(shape)):<20} {str(dtype):<8} {_size(nbytes)}")
    lines.append("experiment:")
    experiment = attrs.get("experiment")
    text = experiment if isinstance(experiment, str) else "(missing)"
    lines.extend("  " + line if line else "" for line in text.rstrip().splitlines())
    return lines


def _size(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


# --------------------------------------------------------------------------- models

def _cmd_models(args):
    print(format_schema())
    return 0


def format_schema():
    """The experiment-file schema of `sim._schema` as text (`sgdsim models`)."""
    lines = ["Experiment file tables: " + ", ".join(f"[{t}]" for t in _schema.TABLES), ""]
    lines.append("[run]")
    lines.extend(_format_keys(_schema.RUN))
    lines.append("")
    lines.append("[model] name = ...")
    for name, entry in _schema.MODELS.items():
        lines.extend(_format_entry(name, entry))
    lines.extend(_format_entry('"package.module:object"', _schema.USER_MODEL))
    lines.append("")
    lines.append("[dynamics] name = ...")
    for name, entry in _schema.DYNAMICS.items():
        lines.extend(_format_entry(name, entry))
    lines.append("")
    lines.append("[init] (exactly one of)")
    lines.extend(_format_keys(_schema.INIT.keys, one_of=_schema.INIT.one_of))
    lines.extend(f"    note: {note}" for note in _schema.INIT.notes)
    lines.append("")
    lines.append("[observables] (any subset; each a table, e.g. lyapunov = {})")
    for name, entry in _schema.OBSERVABLES.items():
        lines.extend(_format_entry(name, entry))
    lines.append("")
    lines.append('[sweep] "table.key" = [values...]')
    lines.extend(f"    {note}" for note in _schema.SWEEP_NOTES)
    return "\n".join(lines)


def _format_entry(name, entry):
    lines = [f"  {name}", f"      {entry.doc}"]
    lines.extend(_format_keys(entry.keys, one_of=entry.one_of))
    if entry.one_of:
        lines.append(f"    note: exactly one of {', '.join(entry.one_of)}")
    lines.extend(f"    note: {note}" for note in entry.notes)
    return lines


_TYPE_NAMES = {
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "str": "string",
    "floats": "list of numbers",
    "coord": "index or \"norm\"",
    "table": "table",
    "number_or_table": "number or table",
}


def _format_keys(keys, one_of=(), indent="    "):
    lines = []
    for name, key in keys.items():
        if key.required and name in one_of:
            default = "one of"
        elif key.required:
            default = "required"
        else:
            default = "default " + (key.default_doc or _show_default(key.default))
        kind = _TYPE_NAMES[key.type]
        if key.choices:
            kind = " | ".join(_show(c) for c in key.choices)
        limits = _format_limits(key)
        lines.append(f"{indent}{name:<13} {kind:<28} {default:<22} {key.doc}{limits}")
        if key.keys:
            lines.extend(_format_keys(key.keys, indent=indent + "  " + " " * 2))
    return lines


def _show_default(value):
    if isinstance(value, float) and abs(value) >= 1e6:
        return f"{value:g}"
    return _show(value)


def _format_limits(key):
    parts = []
    if key.minimum is not None:
        parts.append(f">= {key.minimum}")
    if key.above is not None:
        parts.append(f"> {key.above}")
    if key.below is not None:
        below = key.below
        parts.append(f"< 2**{below.bit_length() - 1}" if below >= 2**16 else f"< {below}")
    if key.min_len > 1 or key.max_len:
        parts.append(f"{key.min_len}..{key.max_len or ''} entries")
    elif key.min_len == 1:
        parts.append("non-empty")
    if key.increasing:
        parts.append("strictly increasing")
    return f" ({', '.join(parts)})" if parts else ""
