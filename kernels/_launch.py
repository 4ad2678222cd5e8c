"""Host side of the kernels: one dispatch point for every backend.

``get_kernel`` compiles (or fetches from the in-process cache) the fused chunk
kernel for a (backend, model functions, dynamics, dtype) combination;
``ChunkKernel.run`` allocates the outputs of one chunk, launches, and returns
them as numpy arrays. Parameters (model coefficients, learning rates, ...)
are kernel arguments, so a sweep over them reuses one compiled kernel.
"""
import contextlib
import hashlib
import os
import pathlib
import re
import time
import warnings
from dataclasses import dataclass

import numba
import numpy as np

from ._cpu import LANE_DIM, make_cpu_kernel
from ._dynamics import (SGD_FAMILY, aux_size, buffer_rows, dynamics_params, layout, make_rule,
                        make_step, optimiser, random_dtype, random_rows)
from ._observe import (I_HIST_BINS, I_HIST_GROUPS, OBSERVABLES, REDUCE_GROUP, series_rows,
                       tracked_layout, ts_columns)
from ._philox import normal_pair, step_block, uniform01
from ._reference import make_numpy_kernel

__all__ = ["KernelCompileError", "ChunkKernel", "ChunkState", "OUTPUTS", "cache_dir",
           "get_kernel", "initial_state", "seed_key"]

_MASK32 = 0xFFFFFFFF
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class KernelCompileError(Exception):
    """The model or dynamics functions could not be compiled (or first run) on a backend."""

    def __init__(self, backend, reason):
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason


_KERNELS = {}


def seed_key(seed):
    """Philox key (lo, hi) of a 64-bit seed."""
    return np.uint64(seed & _MASK32), np.uint64(seed >> 32)


def initial_state(init, g_first, n, seed, dtype, dim):
    """theta_0 of trajectories g_first..g_first+n-1, shape [n, dim].

    Random draws use step t = 0: coordinate k takes normal k (the Box-Muller
    pairs of Philox blocks 0, 1, ..., four a block) or word k % 4 of block k // 4
    for a uniform.
    """
    shape = (n, dim)
    if "value" in init:
        return np.full(shape, init["value"], dtype=dtype)
    if "vector" in init:
        return np.broadcast_to(np.asarray(init["vector"], dtype=dtype), shape).copy()
    key_lo, key_hi = seed_key(seed)
    g = np.uint64(g_first) + np.arange(n, dtype=np.uint64)
    columns = []
    for k in range(dim):
        words = step_block(key_lo, key_hi, g, np.uint64(0), np.uint64(k // 4))
        if "normal" in init:
            pair = normal_pair(words[k % 4 // 2 * 2], words[k % 4 // 2 * 2 + 1])
            columns.append(init["normal"]["mean"] + init["normal"]["std"] * pair[k % 2])
        else:
            low, high = init["uniform"]["low"], init["uniform"]["high"]
            columns.append(low + (high - low) * uniform01(words[k % 4]))
    return np.stack(columns, axis=1).astype(dtype)


_NOISE_PREFIXES = ("During", "raised from", "Failed in", "File", "Rejected", "With argument",
                   "Overload", "There are", "- Of which", ">>>", "No implementation", "^",
                   "<source elided>", "TypingError")


def _compile_failure(exc, functions=()):
    """One line saying where in the user's code compilation failed, and why.

    ``functions`` are the user's model functions: numba-cuda's typing errors
    carry no source location, so the failing one is found by name in the
    message, and the line within it by the callee that has no implementation.
    """
    text = _ANSI.sub("", str(exc))
    own = os.path.dirname(os.path.abspath(__file__))
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        match = re.match(r'File "([^"]+)", line (\d+)', line)
        if match and own not in os.path.abspath(match.group(1)) and "numba" not in match.group(1):
            before = [l.split(": %")[0] for l in lines[:index]
                      if l and not l.startswith(_NOISE_PREFIXES) and not l.startswith("def ")]
            reason = before[-1] if before else "cannot be typed"
            return f"{os.path.basename(match.group(1))} line {match.group(2)}: {reason}"[:300]
    located = _locate_in_functions(text, functions)
    if located:
        return located[:300]
    first = next((l for l in lines if l), type(exc).__name__)
    return f"{type(exc).__name__}: {first}"[:300]


def _locate_in_functions(text, functions):
    """'file line N: what' for the innermost user function named in a typing error, or ''."""
    import inspect

    by_name = {getattr(f, "__qualname__", ""): f for f in functions}
    named = re.findall(r"Function\(<function ([\w.<>]+) at 0x", text)
    culprit = next((by_name[n] for n in reversed(named) if n in by_name), None)
    if culprit is None:
        return ""
    try:
        path = inspect.getsourcefile(culprit)
        source, start = inspect.getsourcelines(culprit)
    except (OSError, TypeError):
        return ""
    calls = re.findall(r"No implementation of function Function\(<(?:built-in )?function "
                       r"([\w.<>]+)", text)
    # The innermost callee: not one of the user's functions, nor one of ours (closures).
    calls = [c.rstrip(">") for c in calls if c not in by_name and "<locals>" not in c]
    callee = calls[-1].rsplit(".", 1)[-1] if calls else ""
    signatures = [l.strip()[4:] for l in text.splitlines() if l.strip().startswith(">>> ")]
    line = start
    if callee:
        hits = [k for k, l in enumerate(source) if re.search(rf"\b{re.escape(callee)}\s*\(", l)]
        if hits:
            line = start + hits[0]
    what = (f"{signatures[-1]} has no implementation for this backend" if signatures
            else "cannot be typed")
    return f"{os.path.basename(path)} line {line}: {what}"


# The output bundle of a kernel, in order (``paths`` follows them). Every one is also the
# state a chunk carries from one slice of steps to the next.
OUTPUTS = ("x_final", "fp_steps", "div_steps", "log_growth", "lyap_steps", "occupancy", "hist",
           "ts_partial", "tracked", "aux", "tangent", "product")


@dataclass
class ChunkState:
    """One chunk in progress: its inputs, and its state after step ``t`` of ``steps``.

    The arrays of ``out`` (``OUTPUTS``) hold the state between slices: the state
    vector, the optimiser buffers and tangent vector, the per-trajectory observables
    and the sums so far. Nothing else is needed to continue, so a checkpoint stores
    exactly these (sim._checkpoint) and the continued chunk is bit-identical to an
    uninterrupted one.
    """

    g_first: int
    i_first: int
    steps: int
    key: tuple
    params: tuple
    conf: tuple
    out: dict
    paths: np.ndarray
    t: int = 0
    seconds: float = 0.0

    @property
    def done(self):
        return self.t >= self.steps


@dataclass
class ChunkKernel:
    """A compiled chunk kernel for one backend, with its compile time."""

    backend: str
    kernel: object
    dtype: np.dtype
    dim: int
    compile_seconds: float = 0.0
    compiled: bool = False
    user_functions: tuple = ()   # a user model's own functions, to locate compile errors
    tracked_rows: int = 0        # slots of the tracked (plug-in) observables
    aux_rows: int = 0            # the dynamics' auxiliary buffers (an optimiser's state)
    group: int = 1               # steps that share Philox blocks (kernels._dynamics.Layout)
    series: int = 0              # plug-in slots the timeseries records (_observe.series_rows)

    @property
    def ts_columns(self):
        """Columns of ``ts_partial``: see kernels._observe (TS_*, series_rows)."""
        return ts_columns(self.dim, self.series)

    def start(self, x_init, g_first, i_first, steps, seed, p, d, conf_i, conf_f, boundaries,
              ts_steps, paths):
        """A chunk before step 1 (``advance`` runs it).

        A kernel is called ``kernel(chunk, params, conf, out)`` with four tuples:

        - ``chunk = (g_first, i_first, t_first, t_last, final, key_lo, key_hi)``: the
          global index of the launch's first trajectory and its index within the sweep
          point, the slice of steps t_first + 1 .. t_last to run (``final`` when t_last
          is the last step) and the Philox key;
        - ``params = (p, d)``: the model's and the dynamics' parameter vectors;
        - ``conf = (conf_i, conf_f, boundaries, ts_steps)``: the observables'
          configuration (kernels._observe), occupancy boundaries, recorded steps;
        - ``out``: the arrays named in ``OUTPUTS``, in that order, then ``paths``: read
          as the state after step t_first and written as the state after t_last.

        ``paths`` ([M, K] of the point) is updated in place for the rows this chunk owns.
        """
        n = x_init.shape[0]
        groups, bins = conf_i[I_HIST_GROUPS], conf_i[I_HIST_BINS]
        copies = numba.get_num_threads() if self.backend == "cpu" else 1
        n_groups = (n + REDUCE_GROUP - 1) // REDUCE_GROUP
        out = {
            "x_final": np.array(x_init, dtype=self.dtype, copy=True),
            "fp_steps": np.full(n, -1, dtype=np.int64),
            "div_steps": np.full(n, -1, dtype=np.int64),
            "log_growth": np.zeros(n),
            "lyap_steps": np.zeros(n, dtype=np.int64),
            "occupancy": np.zeros((n if boundaries.size else 0, boundaries.size + 1),
                                  dtype=np.int64),
            "hist": np.zeros((copies, groups, self.dim, bins + 2), dtype=np.int64),
            "ts_partial": np.zeros((n_groups, ts_steps.size, self.ts_columns)),
            "tracked": np.zeros((n, max(self.tracked_rows, 1))),
            "aux": np.zeros((n, max(self.aux_rows, 1))),
            "tangent": np.full((n, self.dim), 1.0 / np.sqrt(self.dim)),
            "product": np.ones(n),
        }
        return ChunkState(int(g_first), int(i_first), int(steps), seed_key(seed), (p, d),
                          (conf_i, conf_f, boundaries, ts_steps), out, paths)

    def advance(self, state, t_last):
        """Run ``state`` on to step ``t_last`` (one kernel launch); the first call of a
        kernel compiles it first, on a one-trajectory copy, timed apart."""
        t_last = min(int(t_last), state.steps)
        self.compile(state)
        start = time.perf_counter()
        self._launch(state, state.out, state.paths, state.t, t_last)
        state.seconds += time.perf_counter() - start
        state.t = t_last

    def outputs(self, state):
        """The finished chunk's outputs (numpy), histogram copies summed."""
        out = dict(state.out)
        out["hist"] = out["hist"].sum(axis=0)
        return out

    def run(self, x_init, g_first, i_first, steps, seed, p, d, conf_i, conf_f, boundaries,
            ts_steps, paths):
        """Run one chunk in one launch; return its outputs (numpy) and the kernel seconds."""
        state = self.start(x_init, g_first, i_first, steps, seed, p, d, conf_i, conf_f,
                           boundaries, ts_steps, paths)
        self.advance(state, steps)
        return self.outputs(state), state.seconds

    def arguments(self, state, t_first, t_last, out=None, paths=None):
        """The launch's four bundles (see ``start``) and its number of thread blocks."""
        out = state.out if out is None else out
        paths = state.paths if paths is None else paths
        n = out["x_final"].shape[0]
        chunk = (np.uint64(state.g_first), np.int64(state.i_first), np.int64(t_first),
                 np.int64(t_last), np.int64(t_last == state.steps)) + state.key
        bundles = (chunk, state.params, state.conf,
                   tuple(out[k] for k in OUTPUTS) + (paths,))
        return bundles, (n + REDUCE_GROUP - 1) // REDUCE_GROUP

    def _launch(self, state, out, paths, t_first, t_last):
        bundles, n_groups = self.arguments(state, t_first, t_last, out, paths)
        if self.backend != "cuda":
            self.kernel(*bundles)
            return
        from numba import cuda

        def device(bundle):
            return tuple(cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in bundle)

        device_out = device(bundles[3])
        self.kernel[n_groups, REDUCE_GROUP](*(device(b) for b in bundles[:3]), device_out)
        cuda.synchronize()
        for k, arr in zip(OUTPUTS, device_out):
            out[k][...] = arr.copy_to_host()
        paths[...] = device_out[-1].copy_to_host()

    def compile(self, state):
        """Compile the kernel (once) on a one-trajectory, one-step copy of ``state``."""
        if not self.compiled:
            self._compile(state)

    def _compile(self, state):
        # Compile on a one-trajectory, one-step problem so the first real slice is timed alone.
        # Model errors surface here too, on every backend, before any real work.
        start = time.perf_counter()
        tiny = ChunkState(state.g_first, state.i_first, 1, state.key, state.params, state.conf,
                          {k: v[:1].copy() for k, v in state.out.items()}, state.paths.copy())
        try:
            with warnings.catch_warnings():
                # A failing user model also triggers numba type-safety warnings; the
                # error below says what matters in one line.
                warnings.simplefilter("ignore", numba.core.errors.NumbaWarning)
                self._launch(tiny, tiny.out, tiny.paths, 0, 1)
        except Exception as exc:
            raise KernelCompileError(self.backend,
                                     _compile_failure(exc, self.user_functions)) from exc
        self.compile_seconds = time.perf_counter() - start
        self.compiled = True


def cache_dir(model, variant=""):
    """On-disk kernel cache folder for ``model`` and kernel ``variant``, or None when off.

    numba checks only the kernel's own file when it reuses a cached kernel, and
    its hash of a kernel's closure does not tell apart kernels built from
    different closures (a d = 2 and a d = 4 kernel were seen to collide). So
    each distinct kernel gets a folder of its own, keyed by a fingerprint of
    every kernels source file, the numba version, the model (its name, its
    compile-time shape such as polynomial length or dimension, and a user
    model's source file) and ``variant`` (dynamics and noise kind): editing
    any of them compiles afresh instead of loading a stale or foreign kernel.
    ``SGDSIM_CACHE_DIR`` moves the cache; ``SGDSIM_CACHE_DIR=off`` disables it.
    """
    base = os.environ.get("SGDSIM_CACHE_DIR")
    if base == "off" or model.fingerprint.startswith("uncached"):
        return None
    if base is None:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                            "sgdsim", "kernels")
    digest = hashlib.sha256(numba.__version__.encode())
    for source in sorted(pathlib.Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    for part in (model.name, model.fingerprint, variant):
        digest.update(b"\0" + str(part).encode())
    return os.path.join(base, digest.hexdigest()[:20])


def _kernel_name(model, variant):
    """A function name unique to the kernel variant (see kernels._cpu.compile_cpu)."""
    digest = hashlib.sha256(f"{model.name}\0{model.fingerprint}\0{variant}".encode())
    return "sgdsim_kernel_" + digest.hexdigest()[:16]


@contextlib.contextmanager
def _numba_cache_dir(path):
    # numba picks its cache folder when a function is decorated; set it just for that.
    previous = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = path
    try:
        yield
    finally:
        numba.config.CACHE_DIR = previous


def layout_of(dynamics, dtype, dim):
    """(noise, precision, single_sample, optimiser kind, random Layout) of a resolved
    ``[dynamics]`` table and state dtype: what a compiled step depends on besides the
    model."""
    name = dynamics["name"]
    noise = dynamics.get("noise", "finite_sum")
    precision = "float32" if np.dtype(dtype) == np.float32 else "float64"
    single = name in SGD_FAMILY and dynamics.get("batch_size", 1) == 1
    kind = optimiser(dynamics) or "plain"
    return noise, precision, single, kind, layout(name, noise, dim, single)


def get_kernel(backend, model, dynamics, dtype, observables=OBSERVABLES, cache=True,
               tracked=()):
    """The chunk kernel for a model, a resolved ``[dynamics]`` table and a dtype.

    One kernel is compiled per (model functions, dynamics, noise kind, state
    dtype, for the SGD family whether B = 1 and its optimiser, and the set of
    ``observables`` compiled in:
    names as in kernels._observe.OBSERVABLES, the Lyapunov tangent with
    "lyapunov"); parameters are arguments, so sweeps reuse it. CPU kernels are
    cached on disk across runs (see ``cache_dir``). ``tracked`` are the plug-in
    observables compiled in (sim.observables; their slots come back as ``tracked``
    [n, slots]); a kernel is compiled per enabled set of them too, and their source
    is part of the cache key.
    """
    dtype = np.dtype(dtype)
    name = dynamics["name"]
    noise, precision, single, kind, lay = layout_of(dynamics, dtype, model.dim)
    aux = aux_size(kind, model.dim)
    observables = frozenset(observables) & OBSERVABLES
    tangent = "lyapunov" in observables
    tracked = tuple(tracked)
    plugins = tuple((obs.name, obs.digest) for obs in tracked)
    key = (backend, model.specialisation, name, kind, noise, precision, single, observables,
           plugins,
           (dtype, len(model.params)) if backend == "cuda" else None)
    if key not in _KERNELS:
        rows = (buffer_rows(model.dim, lay), random_rows(lay), random_dtype(precision, lay))
        variant = (f"{name}|{kind}|{noise}|{precision}|single={single}|"
                   f"observables={','.join(sorted(observables))}|"
                   f"tracked={','.join(f'{n}:{d}' for n, d in plugins)}")
        if backend == "cpu":
            rule = make_rule(model, name, noise, precision, single,
                             inline=model.dim <= LANE_DIM, kind=kind)
            split = model.gathers and name in SGD_FAMILY and noise == "finite_sum" and not tangent
            folder = cache_dir(model, variant) if cache else None
            kernel_name = _kernel_name(model, variant)
            if folder is not None:
                os.makedirs(folder, exist_ok=True)
                with _numba_cache_dir(folder):
                    kernel = make_cpu_kernel(rule, model, True, split, observables, kernel_name,
                                             aux, tracked)
            else:
                kernel = make_cpu_kernel(rule, model, False, split, observables, kernel_name,
                                         aux, tracked)
        elif backend == "cuda":
            from ._cuda import make_cuda_kernel
            step = make_step(model, name, noise, precision, single, tangent, registers=True,
                             kind=kind)
            kernel = make_cuda_kernel(step, model, dtype, observables,
                                      len(dynamics_params(dynamics)), aux, tracked, *rows)
        elif backend == "numpy":
            step = make_step(model, name, noise, precision, single, tangent, kind=kind)
            kernel = make_numpy_kernel(step, model, aux, tangent, tracked, *rows)
        else:
            raise ValueError(f"unknown backend {backend!r}")
        _KERNELS[key] = kernel
    return ChunkKernel(backend, _KERNELS[key], dtype, model.dim,
                       user_functions=model.user_functions,
                       tracked_rows=tracked_layout(tracked, model.dim)[0], aux_rows=aux,
                       group=lay.group, series=len(series_rows(tracked, model.dim)))

