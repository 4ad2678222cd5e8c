"""``sgdsim merge``: combine the shard files of one experiment into its run file (SPEC 6).

Shards belong together when their resolved experiments agree in everything
but ``run.chunk``, ``run.backend`` and ``run.checkpoint_seconds`` (none changes
a result), they ran on
the same actual backend and dtype, they are complete, they agree on the shard
count N, and every shard 0..N-1 is there exactly once. The merged file equals
the unsharded run bit for bit: per-trajectory rows are copied, integer
histograms added, and timeseries sums rebuilt from each shard's subtree sums
(``_runfile.TreeSum``).
"""
import os
import time
import tomllib

import h5py

from ._config import ExperimentError, resolve_experiment
from ._plan import make_plan, shard_range, sweep_points
from ._runfile import ShardFilePiece, replacing, root_attrs, write_run
from ._version import FORMAT, FORMAT_VERSION, other_format

__all__ = ["merge_shards"]


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _comparable(experiment):
    run = {k: v for k, v in experiment["run"].items()
           if k not in ("chunk", "backend", "checkpoint_seconds")}
    return {**experiment, "run": run}


def _first_difference(a, b, prefix=""):
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                return _first_difference(a[key], b[key], f"{prefix}{key}.")
            return f"{prefix}{key}"
    return None


def _read_shard(path):
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ExperimentError(path, None, f"not a readable HDF5 run file ({exc})") from None
    attrs = dict(f.attrs)
    if _text(attrs.get("format", "")) != FORMAT:
        f.close()
        raise ExperimentError(path, None, "not an sgdsim run file")
    if attrs.get("format_version") != FORMAT_VERSION:
        f.close()
        raise ExperimentError(path, "format_version", other_format(attrs.get("format_version")))
    if not bool(attrs.get("complete", False)):
        f.close()
        raise ExperimentError(path, None, "shard is incomplete (finish it with `sgdsim resume`)")
    if "shard" not in attrs:
        f.close()
        raise ExperimentError(path, None, "is not a shard file (no shard attribute); "
                                          "only `--shard I/N` runs can be merged")
    return f, attrs


def merge_shards(paths, out_path, overwrite=False):
    """Check and merge the shard files ``paths`` into ``out_path``; return the path."""
    wall_start = time.perf_counter()
    out_path = os.fspath(out_path)
    if os.path.exists(out_path) and not overwrite:
        raise ExperimentError(out_path, None, "exists (use --overwrite to replace it)")
    files = []
    try:
        shards = {}
        reference = None
        for path in paths:
            f, attrs = _read_shard(path)
            files.append(f)
            index, count = (int(v) for v in attrs["shard"])
            experiment = resolve_experiment(tomllib.loads(_text(attrs["experiment"])), path)
            identity = {"experiment": _comparable(experiment), "count": count,
                        "backend": _text(attrs["backend"]), "dtype": _text(attrs["dtype"])}
            if reference is None:
                reference = (path, identity, experiment)
            else:
                _check_same(reference[0], reference[1], path, identity)
            if index in shards:
                raise ExperimentError(path, None, f"is shard {index}/{count}, and so is "
                                                  f"{shards[index][0]}")
            shards[index] = (path, f, attrs)
        first_path, identity, experiment = reference
        count = identity["count"]
        missing = [i for i in range(count) if i not in shards]
        if missing:
            have = ", ".join(f"{i}/{count} = {shards[i][0]}" for i in sorted(shards))
            raise ExperimentError(out_path, None,
                                  f"shard{'s' if len(missing) > 1 else ''} "
                                  f"{', '.join(f'{i}/{count}' for i in missing)} missing "
                                  f"(given {have})")
        if "splitting" in experiment:
            return _merge_splitting(shards, experiment, identity["backend"], out_path,
                                    overwrite, wall_start)
        per_point = experiment["run"]["trajectories"]
        for index, (path, f, attrs) in sorted(shards.items()):
            expected = shard_range(per_point, (index, count))
            got = tuple(int(v) for v in attrs["shard_range"])
            if got != expected:
                raise ExperimentError(path, None, f"shard {index}/{count} covers trajectories "
                                                  f"{got}, expected {expected}")
        plan = make_plan(experiment, identity["backend"])
        pieces = [ShardFilePiece(f, plan, *shard_range(per_point, (i, count)))
                  for i, (_, f, _) in sorted(shards.items())]
        with replacing(out_path) as out:
            write_run(out, plan, pieces)
            devices = sorted({_text(a.get("device", "")) for _, _, a in shards.values()})
            kernel = sum(float(a.get("kernel_seconds", 0.0)) for _, _, a in shards.values())
            compile_ = sum(float(a.get("compile_seconds", 0.0)) for _, _, a in shards.values())
            wall = sum(float(a.get("wall_seconds", 0.0)) for _, _, a in shards.values())
            attrs = root_attrs(plan, "; ".join(devices), True, kernel, compile_,
                               wall + time.perf_counter() - wall_start,
                               experiment_text=_text(shards[0][2]["experiment"]))
            attrs["merged_shards"] = count
            out.attrs.update(attrs)
            if os.path.exists(out_path) and not overwrite:
                raise ExperimentError(out_path, None, "appeared during the merge; "
                                                      "not overwritten")
    finally:
        for f in files:
            f.close()
    return out_path


def _merge_splitting(shards, experiment, backend, out_path, overwrite, wall_start):
    """The shards of a splitting run: each covers the independent runs run_range(runs, i/N)
    of every point; the merged datasets put them side by side (counts added)."""
    from ._splitting import merge_results, read_results, run_range, write_splitting

    count = len(shards)
    n_points = len(sweep_points(experiment))
    parts = []
    for index, (path, f, attrs) in sorted(shards.items()):
        expected = run_range(experiment["splitting"]["runs"], (index, count))
        got = tuple(int(v) for v in attrs.get("shard_runs", (-1, -1)))
        if got != expected:
            raise ExperimentError(path, None, f"shard {index}/{count} covers runs {got}, "
                                              f"expected {expected}")
        parts.append(read_results(f, n_points))
    seconds = {key: sum(float(a.get(key, 0.0)) for _, _, a in shards.values())
               for key in ("compile_seconds", "wall_seconds")}
    devices = sorted({_text(a.get("device", "")) for _, _, a in shards.values()})

    def check():
        if os.path.exists(out_path) and not overwrite:
            raise ExperimentError(out_path, None, "appeared during the merge; "
                                                  "not overwritten")

    write_splitting(out_path, make_plan(experiment, backend), experiment,
                    merge_results(parts), seconds["wall_seconds"] + time.perf_counter()
                    - wall_start, seconds["compile_seconds"], check=check,
                    device="; ".join(devices), merged_shards=count)
    return out_path


def _check_same(ref_path, ref, path, identity):
    if identity["count"] != ref["count"]:
        raise ExperimentError(path, None, f"is one of {identity['count']} shards, "
                                          f"{ref_path} one of {ref['count']}")
    for key in ("backend", "dtype"):
        if identity[key] != ref[key]:
            raise ExperimentError(path, None, f"ran with {key} {identity[key]}, {ref_path} "
                                              f"with {ref[key]}; shards must share both to "
                                              f"merge bit for bit")
    if identity["experiment"] != ref["experiment"]:
        where = _first_difference(identity["experiment"], ref["experiment"]) or "?"
        raise ExperimentError(path, None, f"belongs to a different experiment than {ref_path} "
                                          f"(they differ in {where})")
