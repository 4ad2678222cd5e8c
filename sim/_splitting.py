"""Adaptive multilevel splitting (AMS) on the dynamics' own update rules: P(reach B before A)
and the mean first-passage time, for rare events that brute force cannot reach.

One AMS run (Cerou and Guyader 2007; the generalised, unbiased form of Brehier, Guyader,
Lelievre and Rousset, Ann. Appl. Probab. 2016), with n = ``replicas``, k = ``kill``:

1. n replicas start from ``[init]`` (replica i of run r is trajectory g = base(r) + i, its
   theta_0 drawn as an ordinary run draws trajectory g's) and run until A = {score <= a}
   or B = {score >= b}; M_i is the largest score along replica i's path.
2. Iteration j: z_j = the k-th smallest M_i. If z_j >= b, stop. Every replica with
   M_i <= z_j is killed (K_j >= k of them: ties are all killed; K_j = n ends the run with
   p = 0). Each killed replica is rebuilt from a survivor chosen uniformly (a Philox word of
   the run's selection stream: counter (killed index, j, base(r) + 2^32 - 1)), branched
   at the first step tau at which the survivor's score exceeds z_j, and run on from tau
   with a new stream id until A or B.
3. p_hat = prod_j (1 - K_j / n) x (the fraction of the final replicas in B), unbiased for
   P(B before A) from the initial distribution.

Branching is by replay, never by stored paths: a replica is (its state, buffers and
step at its own branch point, its stream id), so the state at tau is rebuilt by running
the survivor again from its branch point on its own stream (the survivor's scores before
its branch point are at most the earlier level, so tau is never before it). Its random
words depend on (seed, id, step, draw) only: the results do not depend on threads or on
how the runs are grouped.

With ``start = "boundary"`` (the default) the replicas start on A's boundary: each
first runs a loop from theta_0 down into A and back up to score(theta_0) on its own
stream, and its AMS path starts where the loop ends (a draw from the re-entry
distribution nu of the discrete chain, overshoot included); p is P(B before A) from nu.
The mean first-passage time of the chain started on A's boundary (Cerou, Guyader,
Lelievre and Pommier 2011) is then

    T = (1 / p - 1) E[T_loop] + E[T_reac]

with T_loop the loops' lengths (the run's replicas') and T_reac the length of a path from
nu that reaches B before A (the final replicas in B: from the end of their ancestor's
loop to B). It is exact for the discrete chain when each return to score(theta_0) after
A starts afresh from nu (the Markov property at the re-entry: exact in 1-D with score =
theta, where the state is the score). It approximates the MFPT from theta_0 when the
well relaxes much faster than it is escaped. With ``start = "init"`` the replicas start at
theta_0 itself: p is P(B before A) from theta_0, and no MFPT is given (NaN).
"""
import contextlib
import importlib
import math
import os
import sys
import time

import numpy as np

from sgdsim import kernels
from sgdsim.kernels._splitting import (IN_B, LOOPED, MODE_FORWARD, MODE_LOOP, MODE_REPLAY,
                                       NON_FINITE, TIMEOUT, aux_columns, make_cuda_driver,
                                       make_driver, make_numpy_driver, make_score)

from ._config import ExperimentError
from ._plan import make_plan, model_for, sweep_points
from ._runfile import replacing, root_attrs
from ._schema import builtin_score

__all__ = ["run_splitting", "resume_splitting", "run_range", "run_share", "read_results",
           "merge_results", "write_splitting", "SELECTION"]

SELECTION = np.uint64(2**32 - 1)      # the serial of a run's selection stream
_DRIVERS = {}


def _base(point, run):
    """The first stream id of run ``run`` at sweep point ``point``: 32 bits of replica
    serials, 20 of runs, 12 of points (so a run's streams do not depend on how many runs
    or points there are)."""
    return np.uint64((point << 52) | (run << 32))


def run_range(runs, shard):
    """The independent runs [lo, hi) of shard (i, n): floor(i * runs / n) on. A run's
    streams depend only on (point, run), so the shards' runs are the whole run's."""
    if shard is None:
        return 0, runs
    i, n = shard
    return i * runs // n, (i + 1) * runs // n


def _score_function(spec, dim):
    if not builtin_score(spec):
        module_name, attr = spec.split(":", 1)
        obj = getattr(importlib.import_module(module_name), attr)
        return make_score(spec, dim, kernels.jitable(obj))
    return make_score(spec, dim)


def _driver(model, dynamics, dtype, score, backend="cpu"):
    """The replica driver of ``backend``: cpu and cuda compiled (the CPU one cached on disk
    like the chunk kernels, kernels._launch: a folder per variant, unless the score is a
    user function; the CUDA one compiled once a process, as the chunk kernels are), numpy
    the reference, with the host score."""
    from sgdsim.kernels._launch import _kernel_name, _numba_cache_dir, cache_dir, layout_of

    layout = layout_of(dynamics, dtype, model.dim)[:4]
    variant = f"splitting|{dynamics['name']}|{'|'.join(map(str, layout))}|score={score}"
    key = (model.specialisation, variant, backend)
    if key in _DRIVERS:
        return _DRIVERS[key]
    if backend == "numpy":
        spec = {"splitting": {"score": score}}
        _DRIVERS[key] = make_numpy_driver(model, dynamics, dtype, lambda x: score_of(spec, x))
        return _DRIVERS[key]
    function = _score_function(score, model.dim)
    if backend == "cuda":
        _DRIVERS[key] = make_cuda_driver(model, dynamics, dtype, function)
    elif not builtin_score(score):
        _DRIVERS[key] = make_driver(model, dynamics, dtype, function, False,
                                    _kernel_name(model, variant))
    else:
        folder = cache_dir(model, variant)
        os.makedirs(folder, exist_ok=True)
        with _numba_cache_dir(folder):
            _DRIVERS[key] = make_driver(model, dynamics, dtype, function, True,
                                        _kernel_name(model, variant))
    return _DRIVERS[key]


def _warm(drive, point, rows, dtype, dim):
    """One call of no steps, with the argument types of the real ones."""
    key_lo, key_hi = kernels.seed_key(0)
    drive(np.zeros((1, dim), dtype=dtype), np.zeros((1, aux_columns(point["dynamics"], dim))),
          np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.uint64), np.zeros(1, dtype=np.int64),
          MODE_FORWARD, np.zeros(1), -np.inf, np.inf, 0, key_lo, key_hi, rows[0], rows[1],
          np.zeros(1), np.zeros(1, dtype=np.int64))


def _choose(key_lo, key_hi, iteration, base, survivors, count):
    """Survivors for ``count`` killed replicas: word 0 of the Philox block (killed index,
    iteration, selection id of the run), reduced uniformly onto ``survivors``."""
    sel = base + SELECTION
    hi, lo = sel >> np.uint64(32), sel & np.uint64(0xFFFFFFFF)
    picks = np.empty(count, dtype=np.int64)
    for j in range(count):
        word = kernels.philox4x32(np.uint64(j), np.uint64(iteration), lo, hi, key_lo, key_hi,
                                  10)[0]
        picks[j] = survivors[int(kernels.uniform_index(np.uint64(word), survivors.size))]
    return picks


class _Point:
    """The ``runs`` AMS runs of one sweep point, side by side.

    Every number of the computation in progress is an array attribute (``FIELDS``), so a
    checkpoint is those arrays and ``iterate`` goes on from them bit for bit.
    """

    FIELDS = ("bx", "baux", "bt", "bid", "origin", "top", "flag", "end", "serial", "cost",
              "loops", "log_weight", "iterations", "active", "extinct", "capped")

    def __init__(self, drive, point_index, point, rows, seed, dtype, dim, runs, saved=None):
        spl = point["splitting"]
        self.drive, self.point, self.rows, self.t_max = drive, point, rows, point["run"]["steps"]
        self.n, self.k, self.a, self.b = spl["replicas"], spl["kill"], spl["a"], spl["b"]
        self.runs = runs[1] - runs[0]           # the independent runs runs[0]..runs[1]-1
        self.key = kernels.seed_key(seed)
        self.bases = np.array([_base(point_index, r) for r in range(*runs)], dtype=np.uint64)
        self.zeros = np.zeros(self.n * self.runs, dtype=np.int64)
        if saved is not None:
            for name in self.FIELDS:
                setattr(self, name, np.array(saved[name]))
            return
        n, runs = self.n, self.runs
        # Branch points of every replica (state, buffers, step, stream id): theta_0 at
        # step 0; origin: the step its attempt (its ancestor's path from A's boundary) began.
        self.bx = np.concatenate([kernels.initial_state(point["init"], int(base), n, seed,
                                                        dtype, dim) for base in self.bases])
        self.baux = np.zeros((n * runs, aux_columns(point["dynamics"], dim)))
        self.bt = np.zeros(n * runs, dtype=np.int64)
        self.bid = (self.bases[:, None] + np.arange(n, dtype=np.uint64)[None, :]).ravel()
        self.serial = np.full(runs, n, dtype=np.uint64)
        self.cost = np.zeros(runs, dtype=np.int64)
        self.loops = np.full((runs, n), -1, dtype=np.int64)
        if spl["start"] == "boundary":
            self._to_boundary(seed, dtype, dim)
        self.origin = self.bt.copy()
        everyone = np.arange(n * runs)
        _, _, self.end, self.top, self.flag = self.run_from(everyone, MODE_FORWARD,
                                                            np.zeros(n * runs))
        self.cost += (self.end - self.origin).reshape(runs, n).sum(axis=1)
        self.log_weight = np.zeros(runs)
        self.iterations = np.zeros(runs, dtype=np.int64)
        self.active = np.ones(runs, dtype=bool)
        self.extinct = np.zeros(runs, dtype=bool)
        self.capped = np.zeros(runs, dtype=bool)

    def state(self):
        return {name: getattr(self, name) for name in self.FIELDS}

    def run_from(self, which, mode, level, x=None, aux=None, t=None):
        """Run replicas ``which`` from their branch points (or from ``x``, ``aux``, ``t``);
        (state, buffers, step, top, flag) where they stopped."""
        x = self.bx[which].copy() if x is None else x
        aux = self.baux[which].copy() if aux is None else aux
        t = self.bt[which].copy() if t is None else t
        top, flag = np.zeros(which.size), np.zeros(which.size, dtype=np.int64)
        self.drive(x, aux, t, self.bid[which], self.zeros[:which.size], mode, level, self.a,
                   self.b, self.t_max, *self.key, *self.rows, top, flag)
        return x, aux, t, top, flag

    def _to_boundary(self, seed, dtype, dim):
        """Two loops theta_0 -> A -> score(theta_0) on each replica's stream: the first
        brings it to A's boundary (a draw from nu), the second, from there, is timed and
        ends where its AMS path starts. A replica that reaches B during either starts over
        from theta_0 on a new stream (a failed attempt is what a loop must be)."""
        n, point = self.n, self.point
        level = score_of(point, self.bx)
        todo = np.arange(n * self.runs)
        for _ in range(1000):
            x, aux, t, _, flag = self.run_from(todo, MODE_LOOP, level[todo])
            np.add.at(self.cost, todo // n, t)
            ok = flag == LOOPED
            x2, aux2, t2, _, flag2 = self.run_from(todo, MODE_LOOP, level[todo], x.copy(),
                                                   aux.copy(), t.copy())
            np.add.at(self.cost, todo // n, np.where(ok, t2 - t, 0))
            ok &= flag2 == LOOPED
            done = todo[ok]
            self.bx[done], self.baux[done], self.bt[done] = x2[ok], aux2[ok], t2[ok]
            self.loops.reshape(-1)[done] = (t2 - t)[ok]
            todo = todo[~ok]
            if not todo.size:
                return
            fresh = np.empty(todo.size, dtype=np.uint64)
            for j, r in enumerate(todo // n):
                fresh[j] = self.bases[r] + self.serial[r]
                self.serial[r] += np.uint64(1)
            self.bid[todo] = fresh
            self.bx[todo] = np.concatenate([kernels.initial_state(point["init"], int(g), 1,
                                                                  seed, dtype, dim)
                                            for g in fresh])
            level[todo] = score_of(point, self.bx[todo])
        raise RuntimeError("splitting: 1000 restarts did not complete the loops")

    def iterate(self, stop=lambda: False):
        """AMS iterations until every run has ended (True) or ``stop()``, asked after
        each iteration, is true (False)."""
        n, k, b = self.n, self.k, self.b
        max_iterations = self.point["splitting"]["max_iterations"]
        while self.active.any():
            killed, parents, levels, children = [], [], [], []
            for r in np.flatnonzero(self.active):
                m = self.top[r * n:(r + 1) * n]
                z = np.partition(m, k - 1)[k - 1]
                dead = np.flatnonzero(m <= z)
                if z >= b:
                    self.active[r] = False
                elif self.iterations[r] >= max_iterations:
                    self.active[r], self.capped[r] = False, True
                elif dead.size == n:
                    self.active[r], self.extinct[r] = False, True
                else:
                    self.log_weight[r] += math.log1p(-dead.size / n)
                    picks = _choose(*self.key, self.iterations[r], self.bases[r],
                                    np.flatnonzero(m > z), dead.size)
                    self.iterations[r] += 1
                    killed.append(r * n + dead)
                    parents.append(r * n + picks)
                    levels.append(np.full(dead.size, z))
                    children.append(self.bases[r] + self.serial[r]
                                    + np.arange(dead.size, dtype=np.uint64))
                    self.serial[r] += np.uint64(dead.size)
            if not killed:
                break
            killed, parents = np.concatenate(killed), np.concatenate(parents)
            runs_of = killed // n
            # The survivor replayed from its branch point to its first step above the
            # level: the killed replica's new branch point, on a new stream.
            x, aux, t, _, _ = self.run_from(parents, MODE_REPLAY, np.concatenate(levels))
            np.add.at(self.cost, runs_of, t - self.bt[parents])
            self.bx[killed], self.baux[killed], self.bt[killed] = x, aux, t
            self.bid[killed] = np.concatenate(children)
            self.origin[killed] = self.origin[parents]
            _, _, t, self.top[killed], self.flag[killed] = self.run_from(
                killed, MODE_FORWARD, np.zeros(killed.size))
            np.add.at(self.cost, runs_of, t - self.bt[killed])
            self.end[killed] = t
            if stop():               # after an iteration: every call makes progress
                return False
        return True

    def results(self):
        n, runs = self.n, self.runs
        flags = self.flag.reshape(runs, n)
        in_b = flags == IN_B
        probability = np.where(self.extinct, 0.0, np.exp(self.log_weight) * in_b.mean(axis=1))
        probability[self.capped] = np.nan
        reached = in_b.sum(axis=1)
        lengths = (self.end - self.origin).reshape(runs, n)
        reactive = np.where(reached > 0,
                            (lengths * in_b).sum(axis=1) / np.maximum(reached, 1), np.nan)
        loops = self.loops
        done = loops >= 0
        loop_mean = np.where(done.any(axis=1),
                             (loops * done).sum(axis=1) / np.maximum(done.sum(axis=1), 1),
                             np.nan)
        return {"probability": probability, "iterations": self.iterations.copy(),
                "reactive_steps": reactive, "loop_steps": loop_mean,
                "mfpt": mfpt(probability, loop_mean, reactive), "cost": self.cost.copy(),
                "timeouts": int((flags == TIMEOUT).sum()),
                "non_finite": int((flags == NON_FINITE).sum())}


def mfpt(probability, loop_steps, reactive_steps):
    """T = (1 / p - 1) E[T_loop] + E[T_reac] (steps; inf where p = 0, NaN without loops)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1.0 / probability - 1.0) * loop_steps + reactive_steps


def score_of(point, x):
    """score(theta) of each row of ``x`` (host side, as the driver computes it)."""
    spec = point["splitting"]["score"]
    if spec.startswith("-"):
        return -score_of({"splitting": {"score": spec[1:]}}, x)
    if spec == "theta":
        return x[:, 0].astype(np.float64)
    if spec.startswith("coordinate:"):
        return x[:, int(spec.split(":", 1)[1])].astype(np.float64)
    if spec == "norm":
        return np.sqrt((x.astype(np.float64) ** 2).sum(axis=1))
    module_name, attr = spec.split(":", 1)
    f = getattr(importlib.import_module(module_name), attr)
    return np.array([float(f(row.astype(np.float64))) for row in x])


def run_splitting(experiment, out_path, overwrite=False, quiet=False, source=None,
                  checkpoint_seconds=None, shard=None):
    """Run a resolved experiment with a ``[splitting]`` table; write its run file.

    ``shard=(i, n)`` runs only the independent runs ``run_range(runs, shard)`` of every
    sweep point, into a shard file that ``sgdsim merge`` combines with the others.

    Until it is complete, ``out_path`` holds nothing or a checkpoint (complete = false:
    the finished sweep points' results and every array of the point in progress), saved
    every ``checkpoint_seconds`` (as for a run: ``_runner._checkpoint_interval``) and on
    SIGTERM or SIGINT, after which KeyboardInterrupt is raised; ``resume_splitting``
    finishes it bit for bit.
    """
    out_path = os.fspath(out_path)
    if os.path.exists(out_path) and not overwrite:
        raise ExperimentError(out_path, None, "exists (use --overwrite to replace it)")
    source = source or "<experiment>"
    _check_inputs(experiment, source, shard)
    _execute(experiment, out_path, {"point": 0, "results": [], "state": None,
                                    "compile_seconds": 0.0, "wall_seconds": 0.0,
                                    "shard": shard},
             quiet, checkpoint_seconds)
    return out_path


def _check_inputs(experiment, source, shard):
    """Refuse a sweep too large for the stream ids, more shards than runs, and a theta_0
    outside (a, b)."""
    runs = experiment["splitting"]["runs"]
    if shard is not None and shard[1] > runs:
        raise ExperimentError(source, "splitting.runs", f"{runs} independent runs cannot be "
                                                        f"split into {shard[1]} shards")
    points = sweep_points(experiment)
    if len(points) > 4096:
        raise ExperimentError(source, "sweep", f"a splitting run takes at most 4096 sweep "
                                               f"points (got {len(points)})")
    dtype = np.dtype(experiment["run"]["dtype"])
    for index, (_, point) in enumerate(points):
        model = model_for(point["model"], point["dynamics"])
        spl = point["splitting"]
        x0 = kernels.initial_state(point["init"], int(_base(index, 0)), 1,
                                   experiment["run"]["seed"], dtype, model.dim)
        s0 = float(score_of(point, x0)[0])
        if not spl["a"] < s0 < spl["b"] and set(point["init"]) & {"value", "vector"}:
            where = f" at sweep point {index}" if len(points) > 1 else ""
            raise ExperimentError(source, "splitting.a",
                                  f"theta_0 must start between A and B{where}: a = "
                                  f"{spl['a']:g} < score(theta_0) = {s0:g} < b = "
                                  f"{spl['b']:g} is false")


def run_share(experiment, shard, quiet=False, source=None):
    """The results of shard ``shard``'s runs, for ``sgdsim run --mpi`` (no checkpoints;
    a signal stops it): (the per-point results, compile seconds)."""
    _check_inputs(experiment, source or "<experiment>", shard)
    return _execute(experiment, None, {"point": 0, "results": [], "state": None,
                                       "compile_seconds": 0.0, "wall_seconds": 0.0,
                                       "shard": shard}, quiet, None)


def resume_splitting(path, experiment, quiet=False, checkpoint_seconds=None):
    """Finish the interrupted splitting run at ``path`` (its checkpoint) bit for bit."""
    import h5py

    with h5py.File(path, "r") as f:
        if "checkpoint" not in f:
            raise ExperimentError(path, None, "incomplete and without a checkpoint")
        ckpt = f["checkpoint"]
        shard = tuple(int(v) for v in f.attrs["shard"]) if "shard" in f.attrs else None
        saved = {"point": int(ckpt.attrs["point"]), "state": None, "shard": shard,
                 "compile_seconds": float(ckpt.attrs["compile_seconds"]),
                 "wall_seconds": float(ckpt.attrs["wall_seconds"])}
        saved["results"] = read_results(f, saved["point"])
        if "state" in ckpt:
            saved["state"] = {name: ckpt["state"][name][()] for name in _Point.FIELDS}
    if not quiet:
        print(f"sgdsim: resuming {path} at splitting point {saved['point'] + 1}/"
              f"{len(sweep_points(experiment))}", file=sys.stderr)
    _execute(experiment, path, saved, quiet, checkpoint_seconds)
    return path


def _execute(experiment, out_path, saved, quiet, checkpoint_seconds):
    """Run the sweep points from ``saved`` (a fresh start or a checkpoint) to the end and
    write the run file at ``out_path``; with ``out_path`` None, save nothing (a signal
    raises KeyboardInterrupt). Returns (the per-point results, compile seconds)."""
    from ._engine import Interrupts, resolve_backend
    from ._runner import _checkpoint_interval

    interval = (_checkpoint_interval(experiment, checkpoint_seconds) if out_path is not None
                else math.inf)
    shard = saved["shard"]
    runs = run_range(experiment["splitting"]["runs"], shard)
    plan = make_plan(experiment, resolve_backend(experiment["run"]["backend"]))
    dtype = np.dtype(experiment["run"]["dtype"])
    seed = experiment["run"]["seed"]
    points = sweep_points(experiment)
    results = list(saved["results"])
    started = time.perf_counter() - saved["wall_seconds"]
    compile_seconds = saved["compile_seconds"]
    with Interrupts() as interrupts:
        for index in range(saved["point"], len(points)):
            point = points[index][1]
            model = model_for(point["model"], point["dynamics"])
            tick = time.perf_counter()
            with interrupts.immediate():
                drive = _driver(model, point["dynamics"], dtype, point["splitting"]["score"],
                                plan.backend)
                # In the state's dtype, as a chunk kernel takes them (kernels._launch).
                rows = (np.array([model.params], dtype=dtype),
                        np.array([kernels.dynamics_params(point["dynamics"])], dtype=dtype))
                _warm(drive, point, rows, dtype, model.dim)     # compiles (or loads) it here
            compile_seconds += time.perf_counter() - tick
            state = saved["state"] if index == saved["point"] else None
            ams = _Point(drive, index, point, rows, seed, dtype, model.dim, runs, state)
            last = time.perf_counter()

            def stop():
                return (interrupts.requested is not None
                        or time.perf_counter() - last >= interval)

            while not ams.iterate(stop):
                if out_path is None:
                    raise KeyboardInterrupt
                _save(out_path, plan, experiment, results, index, ams.state(),
                      time.perf_counter() - started, compile_seconds, shard)
                if interrupts.requested is not None:
                    _interrupted(out_path, index, len(points))
                last = time.perf_counter()
            results.append(ams.results())
            if not quiet:
                r = results[-1]
                print(f"sgdsim: splitting point {index + 1}/{len(points)}: p = "
                      f"{np.nanmean(r['probability']):.3g} over {r['probability'].size} runs, "
                      f"{r['iterations'].mean():.0f} iterations a run", file=sys.stderr,
                      flush=True)
            if index + 1 < len(points) and out_path is not None:
                _save(out_path, plan, experiment, results, index + 1, None,
                      time.perf_counter() - started, compile_seconds, shard)
                if interrupts.requested is not None:
                    _interrupted(out_path, index + 1, len(points))
    if out_path is not None:
        write_splitting(out_path, plan, experiment, results, time.perf_counter() - started,
                        compile_seconds, shard)
    return results, compile_seconds


DATASETS = {
    "probability": "P(B before A) per independent run (from A's boundary, or theta_0 with "
                   "start = init); NaN when a run hit max_iterations",
    "mfpt": "(1/p - 1) E[T_loop] + E[T_reac] per run, steps; NaN with start = init",
    "iterations": "AMS iterations per run",
    "reactive_steps": "mean length of the run's paths from A's boundary (or theta_0) to B",
    "loop_steps": "mean length of the run's loops theta_0 -> A -> score(theta_0)",
    "cost": "trajectory-steps the run spent (loops, paths and replays)",
}


def _interrupted(out_path, point, count):
    print(f"sgdsim: interrupted: checkpoint saved in {out_path} at splitting point "
          f"{point + 1}/{count}; `sgdsim resume {out_path}` continues it", file=sys.stderr,
          flush=True)
    raise KeyboardInterrupt


def _save(out_path, plan, experiment, results, point, state, wall, compile_seconds, shard):
    """A checkpoint at ``out_path``: the finished points' results (``point`` of them) and
    the arrays of the point in progress, in a run file marked complete = false."""
    with _file(out_path, plan, experiment, results, wall, compile_seconds, False, shard) as f:
        ckpt = f.create_group("checkpoint")
        ckpt.attrs.update({"kind": "splitting", "point": point, "wall_seconds": wall,
                           "compile_seconds": compile_seconds})
        if state is not None:
            group = ckpt.create_group("state")
            for name, value in state.items():
                group.create_dataset(name, data=value)


def write_splitting(out_path, plan, experiment, results, wall, compile_seconds, shard=None,
                    check=None, **attrs):
    """The complete run file of ``results`` (shard ``shard``'s, or the whole run's), with
    the root attributes ``attrs`` added; ``check()``, called before it replaces
    ``out_path``, may raise to leave ``out_path`` as it was."""
    with _file(out_path, plan, experiment, results, wall, compile_seconds, True, shard) as f:
        f.attrs.update(attrs)
        if check is not None:
            check()


def read_results(f, points):
    """The results of the first ``points`` sweep points in the open run file ``f``."""
    done = f["splitting"]
    return [{name: (done[name][i] if name in DATASETS else int(done[name][i]))
             for name in (*DATASETS, "timeouts", "non_finite")} for i in range(points)]


def merge_results(parts):
    """The results of the whole run from its shards' (in shard order): runs side by side,
    counts added."""
    merged = []
    for point in zip(*parts):
        merged.append({name: (np.concatenate([r[name] for r in point]) if name in DATASETS
                              else sum(r[name] for r in point)) for name in point[0]})
    return merged


@contextlib.contextmanager
def _file(out_path, plan, experiment, results, wall, compile_seconds, complete, shard):
    """The run file (replacing ``out_path`` when the block ends): attrs, /splitting with
    the results of ``results``' points, /sweep."""
    from ._engine import device_name

    with replacing(out_path) as f:
        spl = experiment["splitting"]
        for key, value in root_attrs(plan, device_name(plan.backend), complete,
                                     wall_seconds=wall,
                                     compile_seconds=compile_seconds).items():
            f.attrs[key] = value
        lo, hi = run_range(spl["runs"], shard)
        f.attrs["trajectories"] = spl["replicas"] * (hi - lo)     # initial replicas
        if shard is not None:
            f.attrs["shard"] = np.array(shard, dtype=np.int64)
            f.attrs["shard_runs"] = np.array([lo, hi], dtype=np.int64)
        group = f.create_group("splitting")
        for key, value in experiment["splitting"].items():
            group.attrs[key] = value
        group.attrs["doc"] = ("adaptive multilevel splitting: [P, runs] per sweep point and "
                              "independent run")
        runs = hi - lo
        for name, doc in DATASETS.items():
            data = np.stack([r[name] for r in results]) if results else np.zeros((0, runs))
            group.create_dataset(name, data=data).attrs["doc"] = doc
        for name in ("timeouts", "non_finite"):
            group.create_dataset(name, data=np.array([r[name] for r in results],
                                                     dtype=np.int64))
        sweep = f.create_group("sweep")
        for key, values in (experiment.get("sweep") or {}).items():
            sweep.create_dataset(key, data=np.asarray(values))
        yield f
