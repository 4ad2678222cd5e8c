"""Pieces of a run and the HDF5 run file they add up to (SPEC 5).

A *piece* is what some process computed for some trajectories: per-trajectory
rows for a list of segments (point, a, b), each point's integer histogram,
the nodes of each point's timeseries sum tree, and the path rows it owns. A
checkpoint part, a shard file and an MPI rank's result are all pieces, and
``write_run`` turns any set of pieces that covers a plan into the run file.

Determinism of the timeseries sums: the kernels return one float64 partial
sum per aligned group of REDUCE_GROUP trajectories. Groups are added in a fixed
binary tree over the point's group indices (``TreeSum``): node (level k,
index j) covers groups [j 2^k, (j+1) 2^k) and its value is left + right. Each
node's value depends only on the groups below it, never on which process or
chunk produced them or in which order they arrived, so chunked, resumed,
sharded, MPI and plain runs give the same bits. A share of trajectories that
is not a whole subtree keeps its few (about 2 log2 G) maximal nodes, which is
what a shard file stores for ``merge``.
"""
import contextlib
import datetime
import os

import h5py
import numpy as np

from sgdsim.kernels import REDUCE_GROUP
from sgdsim.kernels._dynamics import BUFFERS, optimiser
from sgdsim.kernels._observe import (TS_COUNT, TS_LOSS, TS_SLOW, TS_STATE, TS_TRACKING, slot_rows,
                                     ts_columns)

from ._config import dumps_experiment
from ._version import FORMAT, FORMAT_VERSION, __version__
from .observables import enabled

__all__ = ["TreeSum", "Piece", "ShardFilePiece", "write_piece", "read_piece", "write_run",
           "root_attrs", "replacing", "failure_warnings"]


class TreeSum:
    """Sum of per-group float64 partials in a fixed binary tree over group indices."""

    def __init__(self, n_leaves):
        self.n_leaves = n_leaves
        self.top = max(0, (n_leaves - 1).bit_length())  # 2**top >= n_leaves
        self.nodes = {}

    def _width(self, level):
        return -(-self.n_leaves >> level) if level else self.n_leaves

    def add(self, level, index, value):
        """Add one node; combine it upward with every sibling already present."""
        with np.errstate(over="ignore", invalid="ignore"):  # diverged runs sum to inf/nan
            self._add(level, index, value)

    def _add(self, level, index, value):
        while level < self.top:
            if index % 2 == 0 and index + 1 >= self._width(level):
                level, index = level + 1, index >> 1  # no right sibling: the parent is itself
                continue
            other = self.nodes.pop((level, index ^ 1), None)
            if other is None:
                break
            value = value + other if index % 2 == 0 else other + value  # left + right
            level, index = level + 1, index >> 1
        self.nodes[(level, index)] = value

    def add_run(self, first, values, level=0):
        """Add consecutive nodes ``first, first+1, ...`` of one level (vectorised pairs)."""
        values = np.asarray(values)
        while len(values):
            if level >= self.top:
                for k, value in enumerate(values):
                    self.add(level, first + k, value)
                return
            if first % 2:
                self.add(level, first, values[0].copy())
                first, values = first + 1, values[1:]
                continue
            end = first + len(values)
            if end % 2 and end < self._width(level):
                self.add(level, end - 1, values[-1].copy())  # its right sibling is elsewhere
                values = values[:-1]
                continue
            pairs = len(values) // 2
            with np.errstate(over="ignore", invalid="ignore"):
                parents = values[0:2 * pairs:2] + values[1:2 * pairs:2]
            if len(values) % 2:  # the level's last node has no right sibling
                parents = np.concatenate([parents, values[-1:]])
            first, values, level = first // 2, parents, level + 1

    def root(self):
        """The total when every group has been added, else None."""
        if len(self.nodes) == 1 and (self.top, 0) in self.nodes:
            return self.nodes[(self.top, 0)]
        return None

    def ordered(self):
        """(nodes [Q, 2] of (level, index), sums [Q, ...]) in trajectory order."""
        keys = sorted(self.nodes, key=lambda key: key[1] << key[0])
        return keys, [self.nodes[key] for key in keys]


def row_fields(plan):
    """(name, dataset, dtype, trailing shape) of each per-trajectory output of ``plan``."""
    observables = plan.observables
    fields = [("x_final", "final/theta", plan.dtype, (plan.dim,))]
    if "first_passage" in observables:
        fields.append(("fp_steps", "first_passage/steps", np.int64, ()))
    if "divergence" in observables:
        fields.append(("div_steps", "divergence/steps", np.int64, ()))
    else:
        # Always recorded: the first step at which a trajectory became non-finite.
        fields.append(("div_steps", "nonfinite/steps", np.int64, ()))
    if "lyapunov" in observables:
        fields.append(("log_growth", "lyapunov/log_growth", np.float64, ()))
        fields.append(("lyap_steps", "lyapunov/steps", np.int64, ()))
    if "occupancy" in observables:
        fields.append(("occupancy", "occupancy/counts", np.int64, (plan.boundaries.size + 1,)))
    for obs in enabled(observables):
        for output, dtype, _ in obs.outputs:
            fields.append((f"{obs.name}.{output}", f"{obs.name}/{output}", np.dtype(dtype), ()))
    for name, _ in recorded_buffers(plan):
        fields.append((f"aux.{name}", f"final/{name}", np.dtype(np.float64), (plan.dim,)))
    return fields


def recorded_buffers(plan):
    """(name, block) of each optimiser buffer the run writes to /final/NAME (record_buffers):
    aux rows block d .. (block + 1) d - 1 of the kernel (kernels._dynamics.BUFFERS)."""
    dynamics = plan.points[0][1]["dynamics"]
    if not dynamics.get("record_buffers"):
        return ()
    return BUFFERS.get(optimiser(dynamics), ())


def failure_warnings(path):
    """One line per sweep point of the run file ``path`` whose trajectories became non-finite
    (or diverged, with the divergence observable on), naming how many and from which step."""
    lines = []
    with contextlib.ExitStack() as stack:
        f = path if isinstance(path, h5py.File) else stack.enter_context(h5py.File(path, "r"))
        name = "divergence/steps" if "divergence/steps" in f else "nonfinite/steps"
        if name not in f:
            return lines
        steps = f[name][()]
    what = "diverged or became non-finite" if name.startswith("divergence") else \
        "became non-finite"
    for point, row in enumerate(steps):
        failed = row >= 0
        if failed.any():
            lines.append(f"point {point}: {int(failed.sum())} of {row.size} trajectories {what} "
                         f"(first at step {int(row[failed].min())}; /{name})")
    return lines


def tracked_rows(plan, out):
    """Add each plug-in output's rows to a chunk's kernel outputs (by row_fields name):
    column k of the kernel's ``tracked`` slots is the k-th output, in plug-in order; and
    the recorded optimiser buffers, from the kernel's ``aux``."""
    column = 0
    for obs in enabled(plan.observables):
        for output, dtype, _ in obs.outputs:
            out[f"{obs.name}.{output}"] = out["tracked"][:, column].astype(dtype)
            column += 1
        column += slot_rows(obs, plan.dim) - len(obs.outputs)       # its scratch rows
    d = plan.dim
    for name, block in recorded_buffers(plan):
        out[f"aux.{name}"] = out["aux"][:, block * d:(block + 1) * d]
    return out


class Piece:
    """Results of some chunks, held in memory (see the module docstring)."""

    def __init__(self, plan):
        self.plan = plan
        self.segments = []
        self.row_data = {name: [] for name, _, _, _ in row_fields(plan)}
        self.hist = {}
        self.trees = {}
        self.path_rows = []  # (point, first row, values [rows, K])
        self.kernel_seconds = 0.0
        self.compile_seconds = 0.0

    @property
    def trajectories(self):
        return sum(b - a for _, a, b in self.segments)

    def nbytes(self):
        return sum(a.nbytes for rows in self.row_data.values() for a in rows)

    def rows(self, k):
        """Per-trajectory arrays of segment k."""
        return {name: rows[k] for name, rows in self.row_data.items()}

    def add_chunk(self, point, a, b, out, paths):
        """Take one kernel launch's outputs for point-local trajectories [a, b)."""
        plan = self.plan
        self.segments.append((point, a, b))
        tracked_rows(plan, out)
        for name in self.row_data:
            value = out[name]
            self.row_data[name].append(value.reshape(b - a, -1) if name == "x_final" else value)
        if "histogram" in plan.observables:
            # [groups, d, bins + 2] (the scalar kernels leave out the d axis).
            counts = out["hist"].reshape(plan.hist_groups, plan.dim, plan.bins + 2)
            if point in self.hist:
                self.hist[point] += counts
            else:
                self.hist[point] = counts.copy()
        if "timeseries" in plan.observables:
            tree = self.trees.setdefault(point, TreeSum(plan.groups_per_point))
            tree.add_run(a // REDUCE_GROUP, out["ts_partial"])
        if a < plan.path_count:
            stop = min(b, plan.path_count)
            self.path_rows.append((point, a, paths[a:stop].reshape(
                stop - a, plan.path_steps.size, plan.dim).copy()))


def write_piece(group, piece):
    """Store a piece in an (empty) HDF5 group; ``read_piece`` gives it back."""
    plan = piece.plan
    group.attrs["kernel_seconds"] = piece.kernel_seconds
    group.attrs["compile_seconds"] = piece.compile_seconds
    group.create_dataset("segments", data=np.array(piece.segments, dtype=np.int64)
                         .reshape(-1, 3))
    for name, _, dtype, tail in row_fields(plan):
        rows = piece.row_data[name]
        data = np.concatenate(rows) if rows else np.zeros((0,) + tail, dtype=dtype)
        group.create_dataset(f"rows/{name}", data=data)
    hist_points = sorted(piece.hist)
    group.create_dataset("hist/points", data=np.array(hist_points, dtype=np.int64))
    group.create_dataset("hist/counts", data=np.array(
        [piece.hist[p] for p in hist_points], dtype=np.int64).reshape(
        len(hist_points), plan.hist_groups, plan.dim, plan.bins + 2))
    tree_points, keys, sums = [], [], []
    for point in sorted(piece.trees):
        point_keys, point_sums = piece.trees[point].ordered()
        tree_points += [point] * len(point_keys)
        keys += point_keys
        sums += point_sums
    group.create_dataset("tree/points", data=np.array(tree_points, dtype=np.int64))
    group.create_dataset("tree/nodes", data=np.array(keys, dtype=np.int64).reshape(-1, 2))
    group.create_dataset("tree/sums", data=np.stack(sums) if sums
                         else np.zeros((0, plan.ts_steps.size, 1)))
    group.create_dataset("paths/rows", data=np.array(
        [(p, first, len(values)) for p, first, values in piece.path_rows],
        dtype=np.int64).reshape(-1, 3))
    group.create_dataset("paths/theta", data=np.concatenate(
        [values for _, _, values in piece.path_rows]) if piece.path_rows
        else np.zeros((0, plan.path_steps.size, plan.dim), dtype=plan.dtype))


class StoredPiece(Piece):
    """A piece stored by ``write_piece``; rows are read from the file when asked for."""

    def rows(self, k):
        a, b = self.offsets[k], self.offsets[k + 1]
        return {name: self.group[f"rows/{name}"][a:b] for name in self.row_data}


def read_piece(group, plan):
    """The piece stored by ``write_piece`` in ``group`` (which must stay open while used)."""
    piece = StoredPiece(plan)
    piece.group = group
    piece.kernel_seconds = float(group.attrs["kernel_seconds"])
    piece.compile_seconds = float(group.attrs["compile_seconds"])
    piece.segments = [tuple(int(v) for v in row) for row in group["segments"][()]]
    piece.offsets = np.cumsum([0] + [b - a for _, a, b in piece.segments])
    for point, counts in zip(group["hist/points"][()], group["hist/counts"][()]):
        piece.hist[int(point)] = counts
    for point, (level, index), value in zip(group["tree/points"][()], group["tree/nodes"][()],
                                            group["tree/sums"][()]):
        tree = piece.trees.setdefault(int(point), TreeSum(plan.groups_per_point))
        tree.nodes[(int(level), int(index))] = value
    theta = group["paths/theta"][()]
    offset = 0
    for point, first, count in group["paths/rows"][()]:
        piece.path_rows.append((int(point), int(first), theta[offset:offset + count]))
        offset += count
    return piece


class ShardFilePiece:
    """A complete shard run file seen as a piece (rows are read one point at a time)."""

    def __init__(self, f, plan, lo, hi):
        self.file = f
        self.plan = plan
        self.segments = [(p, lo, hi) for p in range(plan.n_points)]
        self.kernel_seconds = float(f.attrs.get("kernel_seconds", 0.0))
        self.compile_seconds = float(f.attrs.get("compile_seconds", 0.0))
        self.hist = {}
        if "histogram/batch_counts" in f:
            batch = f["histogram/batch_counts"][()]
            outside = f["histogram/outside"][()]
            for p in range(plan.n_points):
                counts = np.zeros((plan.hist_groups, plan.dim, plan.bins + 2), dtype=np.int64)
                counts[:, :, :plan.bins] = batch[p]
                # Only the point's total outside counts are written; group 0 carries them,
                # which is exact because the run file keeps only the sum over groups.
                counts[0, :, plan.bins:] = outside[p]
                self.hist[p] = counts
        self.trees = {}
        if "shard/timeseries_nodes" in f:
            nodes = f["shard/timeseries_nodes"][()]
            sums = f["shard/timeseries_sums"][()]
            for p in range(plan.n_points):
                tree = self.trees[p] = TreeSum(plan.groups_per_point)
                for (level, index), value in zip(nodes, sums[p]):
                    tree.nodes[(int(level), int(index))] = value
        self.path_rows = []
        if plan.path_count and lo < plan.path_count and lo < hi:
            stop = min(hi, plan.path_count)
            theta = f["paths/theta"]
            for p in range(plan.n_points):
                self.path_rows.append((p, lo, theta[p, lo:stop]))

    def rows(self, k):
        point = self.segments[k][0]
        out = {}
        for name, dataset, _, _ in row_fields(self.plan):
            out[name] = self.file[dataset][point]
        return out


def _create_datasets(f, plan):
    observables = plan.observables
    n_points, n = plan.n_points, plan.n_local
    ds = {}
    for name, dataset, dtype, tail in row_fields(plan):
        ds[name] = f.create_dataset(dataset, (n_points, n) + tail, dtype=dtype)
    if "histogram" in observables:
        h = observables["histogram"]
        group = f.require_group("histogram")
        for key in ("lo", "hi", "burn_in", "thin", "bins"):
            group.attrs[key] = h[key]
        group.attrs["groups"] = plan.hist_groups
        f.create_dataset("histogram/edges", data=np.linspace(h["lo"], h["hi"], h["bins"] + 1))
    if "first_passage" in observables:
        for key, value in observables["first_passage"].items():
            f["first_passage"].attrs[key] = value
    if "divergence" in observables:
        f["divergence"].attrs["threshold"] = observables["divergence"]["threshold"]
    if "occupancy" in observables:
        f["occupancy"].attrs["boundaries"] = plan.boundaries
    if "timeseries" in observables:
        f.create_dataset("timeseries/steps", data=plan.ts_steps)
        f["timeseries"].attrs["spacing"] = observables["timeseries"]["spacing"]
    if "paths" in observables:
        f.create_dataset("paths/steps", data=plan.path_steps)
    for obs in enabled(observables):
        group = f[obs.name]
        group.attrs["doc"] = obs.doc
        group.attrs["per_trajectory"] = [output for output, _, _ in obs.outputs]
        for key, value in observables[obs.name].items():
            if value is not None:           # a default decided per point (sharpness' level)
                group.attrs[key] = value
    return ds


def write_run(f, plan, pieces):
    """Write the datasets of ``plan``'s run file into the empty HDF5 file ``f`` from pieces
    that cover it exactly once (the caller adds the root attributes, ``root_attrs``).

    ``pieces`` may be a generator: each piece is used up before the next is
    asked for, so file-backed pieces can be opened and closed one at a time.
    """
    observables = plan.observables
    covered = {p: [] for p in range(plan.n_points)}
    hist = np.zeros((plan.n_points, plan.hist_groups, plan.dim, plan.bins + 2), dtype=np.int64)
    trees = [TreeSum(plan.groups_per_point) for _ in range(plan.n_points)]
    paths = np.full((plan.n_points, plan.path_count, plan.path_steps.size, plan.dim), np.nan,
                    dtype=plan.dtype)
    ds = _create_datasets(f, plan)
    for piece in pieces:
        for k, (p, a, b) in enumerate(piece.segments):
            covered[p].append((a, b))
            if a == b:
                continue
            for name, values in piece.rows(k).items():
                ds[name][p, a - plan.lo:b - plan.lo] = values
        for p, counts in piece.hist.items():
            hist[p] += counts
        for p, tree in piece.trees.items():
            for (level, index), value in tree.nodes.items():
                trees[p].add(level, index, value)
        for p, first, values in piece.path_rows:
            paths[p, first:first + len(values)] = values
    _check_cover(plan, covered)
    if "histogram" in observables:
        bins = plan.bins
        f.create_dataset("histogram/batch_counts", data=hist[..., :bins])
        f.create_dataset("histogram/counts", data=hist[..., :bins].sum(axis=1))
        f.create_dataset("histogram/outside", data=hist[..., bins:].sum(axis=1))
    if "timeseries" in observables:
        _write_timeseries(f, plan, trees)
    if "paths" in observables:
        f.create_dataset("paths/theta", data=paths)
    for key in plan.experiment.get("sweep") or {}:
        values = [v[key] for v, _ in plan.points]
        try:
            data = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            data = np.array([str(v) for v in values], dtype=h5py.string_dtype())
        f.create_dataset(f"sweep/{key}", data=data)


def _check_cover(plan, covered):
    for p, ranges in covered.items():
        edge = plan.lo
        for a, b in sorted(ranges):
            if a != edge:
                raise RuntimeError(f"pieces do not cover point {p} exactly once "
                                   f"(at trajectory {min(a, edge)})")
            edge = b
        if edge != plan.hi:
            raise RuntimeError(f"pieces do not cover point {p}: trajectories {edge}.. missing")


def _write_timeseries(f, plan, trees):
    t = plan.ts_steps.size
    series = [obs.name for obs in enabled(plan.observables) if obs.series]
    columns = ts_columns(plan.dim, len(series))
    sums = np.zeros((plan.n_points, t, columns))
    shard_keys = None
    for p, tree in enumerate(trees):
        total = tree.root()
        if total is not None:
            sums[p] = total
            continue
        # A shard: keep the maximal subtrees for `merge`; its own moments use their sum.
        keys, values = tree.ordered()
        if shard_keys is not None and keys != shard_keys:
            raise RuntimeError("shard timeseries trees differ between points")
        shard_keys = keys
        with np.errstate(over="ignore", invalid="ignore"):
            for value in values:
                sums[p] += value
        if p == 0:
            f.create_dataset("shard/timeseries_nodes",
                             data=np.array(keys, dtype=np.int64).reshape(-1, 2))
            f.create_dataset("shard/timeseries_sums", (plan.n_points, len(keys), t, columns),
                             dtype=np.float64)
        if keys:
            f["shard/timeseries_sums"][p] = np.array(values)
    # Columns of the kernels' partial sums (kernels._observe): count, loss,
    # |x - lambda(y)|^2, |y - y*|^2, then sum x_k, sum x_k^2 for each coordinate k.
    count = sums[:, :, TS_COUNT]
    state = sums[:, :, TS_STATE:TS_STATE + 2 * plan.dim]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = state[..., 0::2] / count[..., None]
        var = np.maximum(state[..., 1::2] / count[..., None] - mean * mean, 0.0)
        loss_mean = sums[:, :, TS_LOSS] / count
        tracking = sums[:, :, TS_TRACKING] / count
        slow = sums[:, :, TS_SLOW] / count
    f.create_dataset("timeseries/mean", data=mean)
    f.create_dataset("timeseries/var", data=var)
    f.create_dataset("timeseries/loss_mean", data=loss_mean)
    f.create_dataset("timeseries/count", data=count.astype(np.int64))
    for j, name in enumerate(series):
        column = TS_STATE + 2 * plan.dim + 2 * j
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            series_mean = sums[:, :, column] / count
            series_var = np.maximum(sums[:, :, column + 1] / count - series_mean ** 2, 0.0)
        f.create_dataset(f"timeseries/{name}_mean", data=series_mean)
        f.create_dataset(f"timeseries/{name}_var", data=series_var)
    if plan.x_dim:
        f.create_dataset("timeseries/tracking_error", data=tracking)
        f.create_dataset("timeseries/slow_error", data=slow)


def root_attrs(plan, device, complete, kernel_seconds=0.0, compile_seconds=0.0,
               wall_seconds=0.0, experiment_text=None):
    """The root attributes of SPEC 5 (plus the shard's identity for a shard file)."""
    attrs = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "experiment": experiment_text or dumps_experiment(plan.experiment),
        "seed": np.uint64(plan.seed),
        "trajectories": plan.per_point,
        "steps": plan.steps,
        "dtype": plan.dtype.name,
        "backend": plan.backend,
        "device": device,
        "rng": "philox4x32-10",
        "kernel_seconds": kernel_seconds,
        "compile_seconds": compile_seconds,
        "wall_seconds": wall_seconds,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "complete": complete,
    }
    attrs["dim"] = plan.dim
    if plan.x_dim:
        attrs["x_dim"] = plan.x_dim
    if plan.shard is not None:
        attrs["shard"] = np.array(plan.shard, dtype=np.int64)
        attrs["shard_range"] = np.array([plan.lo, plan.hi], dtype=np.int64)
    return attrs


@contextlib.contextmanager
def replacing(path):
    """The HDF5 file that is to replace ``path``, open under a temporary name beside it.

    When the block ends without an exception the file is closed, fsync'ed and renamed
    over ``path``, then the folder is fsync'ed (so the rename survives a crash): ``path``
    holds the old file or the complete new one, never a part of it. When the block
    raises, the temporary file is removed and ``path`` is left as it was; one left by
    SIGKILL is named ``.NAME.PID.tmp``, which ``Checkpoint.clear_stale`` removes.
    """
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(folder)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _fsync(path):
    """fsync a file or a folder (a folder makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
