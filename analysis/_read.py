"""Open and validate sgdsim run files (SPEC section 5, docs/SPEC.md).

Only h5py, numpy and the standard library are used here: the analysis package must run on a
machine without numba, `kernels` or `sim`.
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field

import h5py
import numpy as np

FORMAT_NAME = "sgdsim-run"
FORMAT_VERSION = 2
# Versions this analysis reads: 2 changed only the random-number counter layout.
READABLE_VERSIONS = (1, 2)


class RunFileError(Exception):
    """A file that cannot be analysed: missing, not HDF5, not a complete sgdsim v1 run file.

    ``str(err)`` is ``"FILE: message"``; the command line prints ``error: `` before it and exits 2.
    """

    def __init__(self, path, message: str):
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


def _decode(value):
    """Attribute value as a plain Python object (bytes -> str, numpy scalars -> Python)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_decode(v) for v in value.tolist()]
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class RunFile:
    """A validated run file: root attributes, resolved experiment, sweep points, dataset names.

    Datasets are read on demand with :meth:`read` (the file is reopened each time, so a
    ``RunFile`` holds no open handle). Steps are the engine's integer steps t = 1..T; time is
    steps * dt for dynamics that have a ``dt``.
    """

    path: str
    attrs: dict
    experiment: dict
    sweep: dict
    points: int
    trajectories: int
    steps: int
    datasets: frozenset = field(default_factory=frozenset)

    def has(self, name: str) -> bool:
        """Whether the dataset ``name`` (e.g. ``"first_passage/steps"``) is in the file."""
        return name.strip("/") in self.datasets

    def read(self, name: str) -> np.ndarray:
        """The whole dataset ``name`` as a numpy array."""
        name = name.strip("/")
        if name not in self.datasets:
            raise RunFileError(self.path, f"missing dataset /{name}")
        try:
            with h5py.File(self.path, "r") as f:
                return np.asarray(f[name][()])
        except OSError as exc:  # pragma: no cover - file changed under us
            raise RunFileError(self.path, f"cannot read /{name}: {exc}") from None

    def group_attrs(self, group: str) -> dict:
        """Attributes of a group or dataset, decoded to plain Python values ({} if absent)."""
        group = group.strip("/")
        with h5py.File(self.path, "r") as f:
            if group not in f:
                return {}
            return {k: _decode(v) for k, v in f[group].attrs.items()}

    def observables(self) -> tuple:
        """Names of the observable groups present (``histogram``, ``first_passage``, ...)."""
        return tuple(sorted({name.split("/")[0] for name in self.datasets if "/" in name}))

    def params(self, point: int) -> dict:
        """The experiment of sweep point ``point``: a deep copy with every swept key replaced.

        A swept value keeps the type of the value it replaces (an integer key stays an int).
        """
        if not 0 <= point < self.points:
            raise IndexError(f"point {point} out of range 0..{self.points - 1}")
        experiment = copy.deepcopy(self.experiment)
        experiment.pop("sweep", None)
        for key, values in self.sweep.items():
            _set_dotted(experiment, key, float(values[point]))
        return experiment

    def swept_values(self, point: int) -> dict:
        """``{dotted.key: value}`` of the swept keys at ``point`` ({} without a sweep)."""
        return {key: float(values[point]) for key, values in self.sweep.items()}


def _set_dotted(table: dict, dotted_key: str, value: float) -> None:
    parts = dotted_key.split(".")
    node = table
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    old = node.get(parts[-1])
    if isinstance(old, bool):
        node[parts[-1]] = bool(value)
    elif isinstance(old, int) and float(value).is_integer():
        node[parts[-1]] = int(value)
    else:
        node[parts[-1]] = value


def open_run(path) -> RunFile:
    """Open and validate a run file; raise :class:`RunFileError` with a one-line reason.

    Checks: the file exists and is HDF5; root attrs ``format == "sgdsim-run"``,
    ``format_version`` 1 or 2, ``complete`` true; ``experiment`` parses as TOML; the sweep
    datasets and ``/final/theta`` agree on the number of points.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise RunFileError(path, "no such file")
    if os.path.isdir(path):
        raise RunFileError(path, "is a directory, not a run file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError:
        is_hdf5 = False
    if not is_hdf5:
        raise RunFileError(path, "not an HDF5 file (expected an sgdsim run file)")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _decode(v) for k, v in f.attrs.items()}
            names = []
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            sweep = {}
            if "sweep" in f and isinstance(f["sweep"], h5py.Group):
                for key in f["sweep"]:
                    sweep[key] = np.asarray(f["sweep"][key][()], dtype=np.float64).reshape(-1)
            final_shape = f["final/theta"].shape if "final/theta" in f else None
    except OSError as exc:
        raise RunFileError(path, f"cannot be read as HDF5 ({exc})") from None

    if attrs.get("format") != FORMAT_NAME:
        raise RunFileError(path, f"not an sgdsim run file (root attr format = {attrs.get('format')!r})")
    version = attrs.get("format_version")
    if version not in READABLE_VERSIONS:
        raise RunFileError(path, f"unsupported format_version {version!r} (this analysis reads "
                                 f"{', '.join(map(str, READABLE_VERSIONS))})")
    if not bool(attrs.get("complete", False)):
        raise RunFileError(path, "run is incomplete (attr complete is false); finish it with `sgdsim resume`")
    text = attrs.get("experiment")
    if not isinstance(text, str):
        raise RunFileError(path, "root attr experiment is missing")
    try:
        experiment = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RunFileError(path, f"root attr experiment is not valid TOML ({exc})") from None
    for table in ("model", "dynamics"):
        if not isinstance(experiment.get(table), dict) or "name" not in experiment[table]:
            raise RunFileError(path, f"experiment has no [{table}] name")

    lengths = {len(v) for v in sweep.values()}
    if len(lengths) > 1:
        raise RunFileError(path, f"sweep datasets have different lengths {sorted(lengths)}")
    if lengths:
        points = lengths.pop()
    elif final_shape is not None:
        points = int(final_shape[0])
    else:
        points = 1
    if final_shape is not None and int(final_shape[0]) != points:
        raise RunFileError(path, f"/final/theta has {final_shape[0]} points but the sweep has {points}")
    run_table = experiment.get("run", {})
    trajectories = int(attrs.get("trajectories", run_table.get("trajectories", final_shape[1] if final_shape else 0)))
    steps = int(attrs.get("steps", run_table.get("steps", 0)))
    return RunFile(path=path, attrs=attrs, experiment=experiment, sweep=sweep, points=points,
                   trajectories=trajectories, steps=steps, datasets=frozenset(names))
