"""A run file as an ``xarray.Dataset``: one variable per dataset, dimensions named.

Variable names are the dataset paths with ``/`` replaced by ``_`` (``final_theta``,
``first_passage_steps``, ``histogram_counts``, ...). The sweep values become
coordinates of the ``point`` dimension (named by their dotted keys), and the root
attributes the Dataset's ``attrs``. Works on a path or on an open ``h5py.File`` (an
in-memory run, see ``sim.run``).
"""
from __future__ import annotations

import h5py
import numpy as np

__all__ = ["to_dataset", "write_dataset", "DIMENSIONS"]

# Dimension names of the datasets whose layout SPEC 5 and 7 fix.
DIMENSIONS = {
    "final/theta": ("point", "trajectory", "coordinate"),
    "final/momentum": ("point", "trajectory", "coordinate"),
    "final/adam_m": ("point", "trajectory", "coordinate"),
    "final/adam_v": ("point", "trajectory", "coordinate"),
    "histogram/counts": ("point", "coordinate", "bin"),
    "histogram/batch_counts": ("point", "batch", "coordinate", "bin"),
    "histogram/outside": ("point", "coordinate", "side"),
    "histogram/edges": ("edge",),
    "occupancy/counts": ("point", "trajectory", "region"),
    "timeseries/steps": ("step",),
    "timeseries/mean": ("point", "step", "coordinate"),
    "timeseries/var": ("point", "step", "coordinate"),
    "paths/steps": ("path_step",),
    "paths/theta": ("point", "path", "path_step", "coordinate"),
    "shard/timeseries_nodes": ("node", "level_index"),
    "shard/timeseries_sums": ("point", "node", "step", "column"),
}
_PER_STEP = ("point", "step")          # timeseries/{count,loss_mean,...} [P, T]


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        return [_plain(v) for v in value.tolist()]
    return value


def _dims(name, shape, points, trajectories):
    if name in DIMENSIONS and len(DIMENSIONS[name]) == len(shape):
        return DIMENSIONS[name]
    if name.startswith("timeseries/") and len(shape) == 2:
        return _PER_STEP
    if len(shape) == 2 and shape == (points, trajectories):
        return ("point", "trajectory")         # per-trajectory outputs, plug-ins included
    flat = name.replace("/", "_")
    return tuple(f"{flat}_dim{k}" for k in range(len(shape)))


def to_dataset(source):
    """The ``xarray.Dataset`` of a run file (a path or an open h5py.File)."""
    import xarray as xr

    if not isinstance(source, h5py.File):
        with h5py.File(source, "r") as f:
            return to_dataset(f)
    attrs = {k: _plain(v) for k, v in source.attrs.items()}
    points = int(source["final/theta"].shape[0]) if "final/theta" in source else 1
    trajectories = int(source["final/theta"].shape[1]) if "final/theta" in source else 0
    variables, coords = {}, {}

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        data = obj[()]
        if name.startswith("sweep/"):
            coords[name[len("sweep/"):]] = ("point", data)
            return
        if data.dtype.kind in "SO":
            data = np.array([_plain(v) for v in np.atleast_1d(data)])
        group = ({k: _plain(v) for k, v in obj.parent.attrs.items()}
                 if obj.parent.name != "/" else {})
        variables[name.replace("/", "_")] = xr.Variable(
            _dims(name, data.shape, points, trajectories), data,
            attrs={**group, "dataset": name})

    source.visititems(visit)
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def write_dataset(dataset, path):
    """Write a Dataset made by ``to_dataset`` back as the run file it came from."""
    with h5py.File(path, "w") as f:
        for key, value in dataset.attrs.items():
            f.attrs[key] = value
        for name, coord in dataset.coords.items():
            f.create_dataset(f"sweep/{name}", data=coord.values)
        for variable in dataset.data_vars.values():
            attrs = dict(variable.attrs)
            name = attrs.pop("dataset")
            data = variable.values
            if data.dtype.kind == "U":
                data = data.astype(object)
                f.create_dataset(name, data=data, dtype=h5py.string_dtype())
            else:
                f.create_dataset(name, data=data)
            parent = f[name].parent
            for key, value in attrs.items():
                if key not in parent.attrs:
                    parent.attrs[key] = value
