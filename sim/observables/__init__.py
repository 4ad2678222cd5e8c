"""Observable plug-ins: one module each in this package, found by name.

A plug-in observable keeps a few numbers per trajectory (its *slots*, float64)
and updates them after every step. Its module defines ``OBSERVABLE =
Tracked(...)``, which declares everything about it in one place:

- ``name``, ``doc`` and ``keys`` (``sim._keys.Key``): the table
  ``[observables] name = { ... }`` of an experiment file, validated like every
  built-in table; ``validate(table, run)`` adds cross-key rules and returns
  ``(key, message)`` for bad input or None;
- ``outputs``: one ``(output, dtype, doc)`` per slot; slot k is written to the
  run-file dataset ``/<name>/<output>`` [P, N], and the table's keys become the
  group's attributes;
- ``init``: the slots before step 0; ``config(table, point)``: the ``n_conf``
  floats its update reads (``point`` is the sweep point's resolved experiment, its
  [run] and [dynamics] tables among them); ``scratch(dim)``, optional: rows of working state after the output slots
  (zero before step 0, carried between steps, slices and checkpoints, not written out);
- ``make_update(model)``: the per-step update, one plain function compiled for
  every backend (``kernels.jitable``),
  ``update(acc, row, th, l, t, p, c, col)``: it reads and writes its slots
  ``acc[row + k, l]`` of lane ``l`` from the state ``th[:, l]`` (kernels._models'
  layout), the model parameters ``p`` and its configuration ``c[col + k]``. It is
  called for step t = 0 (theta_0) and after every step t >= 1 a trajectory runs,
  in the order of kernels._observe: not for the step at which it diverges, and for
  the step of a first passage that stops it;
- ``make_reference(model)``: the same definition in array form for the numpy
  reference backend, ``reference(acc, th, t, p, c, col, running)`` on all
  trajectories at once (``acc`` [slots, n], ``th`` [d, n] float64, ``running``
  [n] bool), written independently of the compiled update so that the
  cpu-vs-numpy tests check one against the other;
- ``series = True``: with the timeseries observable on, the ensemble mean and
  variance of its first output at the recorded steps (the value the slot holds there:
  updated before a step is recorded) go to ``/timeseries/<name>_mean`` and
  ``/timeseries/<name>_var`` [P, T];
- ``merge = "rows"``: the slots are per trajectory, so chunks, shards and MPI
  ranks are joined by trajectory index, as ``/final/theta`` is.

The kernels compile only the plug-ins a run enables (one kernel per enabled
set, cached like every kernel). The built-in observables (histogram,
first_passage, divergence, occupancy, timeseries, paths, lyapunov) are part of
the kernel templates; docs/EXTENDING.md says which is which.
"""
import hashlib
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field

__all__ = ["Tracked", "PLUGINS", "enabled", "config_vector"]


@dataclass(frozen=True)
class Tracked:
    """A plug-in observable with per-trajectory slots (see the package docstring)."""

    name: str
    doc: str
    outputs: tuple
    init: tuple
    make_update: object
    make_reference: object
    keys: dict = field(default_factory=dict)
    config: object = None
    n_conf: int = 0
    validate: object = None
    needs: tuple = ()          # model functions it calls, e.g. ("loss",)
    scratch: object = None     # scratch(dim): slot rows after the outputs, not written out
    series: bool = False       # its first output's ensemble mean and variance in the timeseries
    merge: str = "rows"
    digest: str = ""           # of the module's source: part of the kernel cache key

    def configuration(self, table, point):
        values = tuple(float(v) for v in (self.config(table, point) if self.config else ()))
        if len(values) != self.n_conf:
            raise ValueError(f"observable {self.name}: config gave {len(values)} values, "
                             f"n_conf = {self.n_conf}")
        return values


def _discover():
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        obs = module.OBSERVABLE
        if len(obs.init) != len(obs.outputs):
            raise ValueError(f"observable {obs.name}: {len(obs.init)} initial values for "
                             f"{len(obs.outputs)} outputs")
        digest = hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:16]
        found[obs.name] = Tracked(**{**obs.__dict__, "digest": digest})
    return found


PLUGINS = _discover()


def enabled(observables):
    """The plug-ins a resolved ``[observables]`` table turns on, in name order."""
    return tuple(PLUGINS[name] for name in sorted(observables) if name in PLUGINS)


def config_vector(observables, point):
    """Their configuration floats at a sweep point's resolved experiment ``point``,
    concatenated in the same order (kernels read them after the built-in ones,
    kernels._observe.N_CONF_F)."""
    values = []
    for obs in enabled(observables):
        values += obs.configuration(observables[obs.name], point)
    return values
