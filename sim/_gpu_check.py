"""`sgdsim gpu-check`: compile every CUDA kernel variant for real GPU targets, without a GPU.

Each variant is a small experiment whose CUDA chunk kernel is built exactly as
a run builds it (``kernels.get_kernel``), compiled to PTX by numba-cuda for
each requested compute capability and assembled by ``ptxas``, whose figures
(registers, stack frame, spills, shared memory) and the theoretical occupancy
of the launch are reported, with the SASS instructions of the step loop's body
(``loop``: a static count, read with ``nvdisasm`` when the nvidia-cuda-nvdisasm
wheel or the CUDA toolkit provides it; ``step``: the same with the Philox draw,
which serves several steps, counted once per its group of steps). A kernel is compiled per set of
enabled observables; each variant's experiment turns on every observable its
model supports, the ``bench/`` variants only what the benchmark workloads
record, and where a GPU is present each variant runs once with them on and
once with them off (two kernels), on the device and on the CPU backend, which
must agree.

Compiles run in parallel worker processes, one pool per compute capability
(numba-cuda builds device functions for the capability it is told, and keeps
them per process).
"""
import concurrent.futures
import copy
import importlib
import os
import pathlib
import time

import numpy as np

__all__ = ["VARIANTS", "CheckWell", "check", "user_variants", "DEFAULT_CC"]

DEFAULT_CC = ((8, 0), (9, 0))
_TRAJECTORIES = 512
_STEPS = 40


class CheckWell:
    """A user model written as users write them, with numpy functions (np.sqrt, np.exp).

    L = log(cosh(x)) + x^2 / 8, a smooth single well; two-sample finite sum with
    per-sample gradients L' +- sqrt(Sigma), Sigma = 0.3 (1 + exp(-x^2)).
    """

    n_samples = 2

    @staticmethod
    def loss(x):
        return np.log(np.cosh(x)) + 0.125 * x * x

    @staticmethod
    def gradient(x):
        return np.tanh(x) + 0.25 * x

    @staticmethod
    def second_derivative(x):
        return 1.0 - np.tanh(x) ** 2 + 0.25

    @staticmethod
    def noise_var(x):
        return 0.3 * (1.0 + np.exp(-x * x))

    @staticmethod
    def noise_var_derivative(x):
        return -0.6 * x * np.exp(-x * x)

    @staticmethod
    def per_sample_gradient(x, i):
        sign = 1.0 - 2.0 * i
        return np.tanh(x) + 0.25 * x + sign * np.sqrt(0.3 * (1.0 + np.exp(-x * x)))


CHECK_MODEL = CheckWell()

_SCALAR_OBSERVABLES = {
    "histogram": {"lo": -3.0, "hi": 3.0, "bins": 30, "burn_in": 10},
    "first_passage": {"above": 0.5},
    "divergence": {"threshold": 1e6},
    "occupancy": {"boundaries": [0.0]},
    "timeseries": {"points": 5},
    "paths": {"count": 4, "every": 10},
    "lyapunov": {},
    "loss_min": {"burn_in": 10},
}

_SCALAR_MODELS = {
    "polynomial": {"name": "polynomial", "coefficients": [0.0, 0.0, -0.5, 0.0, 0.25],
                   "noise_var": 0.5},
    "polynomial_logistic": {"name": "polynomial", "coefficients": [0.0, 0.0, -0.5, 0.0, 0.25],
                            "noise_var": {"left": 0.5, "right": 1.5, "center": 0.0,
                                          "width": 0.5}},
    "quadratic_finite_sum": {"name": "quadratic_finite_sum", "curvatures": [1.0, 2.0, 0.5],
                             "centers": [0.0, 0.5, -0.5]},
    "user": {"name": "sgdsim.sim._gpu_check:CHECK_MODEL"},
}

_SCALAR_DYNAMICS = {
    "langevin": {"name": "langevin", "dt": 0.01, "temperature": 0.5},
    "gd": {"name": "gd", "lr": 0.05},
    "sgd_b1": {"name": "sgd", "lr": 0.05, "batch_size": 1},
    "sgd_b3": {"name": "sgd", "lr": 0.05, "batch_size": 3},
    "sgd_gaussian": {"name": "sgd", "lr": 0.05, "batch_size": 2, "noise": "gaussian"},
}

_VECTOR_OBSERVABLES = {
    "histogram": {"lo": -3.0, "hi": 3.0, "bins": 30, "burn_in": 10},
    "first_passage": {"above": 2.0, "coordinate": "norm"},
    "divergence": {"threshold": 1e6, "coordinate": "norm"},
    "occupancy": {"boundaries": [1.0], "coordinate": "norm"},
    "timeseries": {"points": 5},
    "paths": {"count": 4, "every": 10},
    "lyapunov": {},
    "loss_min": {"burn_in": 10},
}

_LINEAR_REGRESSION = {"name": "linear_regression", "samples": 16, "features": 8,
                      "label_noise": 0.1, "data_seed": 3}
_VECTOR_VARIANTS = {
    "linear_regression_d8/sgd_b1": (_LINEAR_REGRESSION, {"name": "sgd", "lr": 0.05}),
    "linear_regression_d8/sgd_b4": (_LINEAR_REGRESSION,
                                    {"name": "sgd", "lr": 0.05, "batch_size": 4}),
    "linear_regression_d8/gd": (_LINEAR_REGRESSION, {"name": "gd", "lr": 0.05}),
    "linear_regression_d8/langevin": (_LINEAR_REGRESSION,
                                      {"name": "langevin", "dt": 0.01, "temperature": 0.1}),
    "coupled_quadratic_m2/two_time_scale": (
        {"name": "coupled_quadratic", "dim": 2, "kappa": 1.0, "mu": 1.0},
        {"name": "two_time_scale", "a": 0.1, "eps": 0.1, "noise_x": 0.1, "noise_y": 0.1}),
    "coupled_quadratic_m2/two_time_scale_sde": (
        {"name": "coupled_quadratic", "dim": 2, "kappa": 1.0, "mu": 1.0},
        {"name": "two_time_scale_sde", "dt": 0.01, "eps": 0.1, "s": 0.1, "alpha": 0.5}),
    "grooves_m2/two_time_scale": (
        {"name": "grooves", "dim": 2, "kappa": 1.0, "mu": 1.0},
        {"name": "two_time_scale", "a": 0.1, "eps": 0.1, "noise_x": 0.1, "noise_y": 0.1}),
    "linear_regression_d8/sgd_nesterov": (
        _LINEAR_REGRESSION, {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                             "weight_decay": 0.01, "record_buffers": True}),
    "linear_regression_d8/adam_b4": (
        _LINEAR_REGRESSION, {"name": "adam", "lr": 0.01, "batch_size": 4,
                             "record_buffers": True}),
    "linear_regression_d8/adamw_gaussian": (
        _LINEAR_REGRESSION, {"name": "adamw", "lr": 0.01, "weight_decay": 0.1,
                             "noise": "gaussian"}),
}
# The optimisers' buffers have no tangent: their variants compile without lyapunov.


def _experiment(model, dynamics, dtype, observables, init):
    return {"run": {"seed": 7, "trajectories": _TRAJECTORIES, "steps": _STEPS, "dtype": dtype,
                    "backend": "cuda"},
            "model": copy.deepcopy(model), "dynamics": copy.deepcopy(dynamics),
            "init": copy.deepcopy(init), "observables": copy.deepcopy(observables)}


def _variants():
    from sgdsim.kernels._dynamics import aux_size, optimiser
    variants = {}
    for dtype in ("float32", "float64"):
        for model_name, model in _SCALAR_MODELS.items():
            for dyn_name, dynamics in _SCALAR_DYNAMICS.items():
                observables = dict(_SCALAR_OBSERVABLES)
                if model_name == "user" and dyn_name.startswith("sgd_b"):
                    observables.pop("lyapunov")  # no per-sample second derivative given
                variants[f"scalar/{model_name}/{dyn_name}/{dtype}"] = _experiment(
                    model, dynamics, dtype, observables, {"normal": {"mean": 0.0, "std": 1.0}})
        for name, (model, dynamics) in _VECTOR_VARIANTS.items():
            observables = dict(_VECTOR_OBSERVABLES)
            if "two_time_scale" in dynamics["name"] or aux_size(optimiser(dynamics), 1):
                observables.pop("lyapunov")
            variants[f"vector/{name}/{dtype}"] = _experiment(
                model, dynamics, dtype, observables, {"normal": {"mean": 0.0, "std": 1.0}})
    # The edge-of-stability kernels: GD with the sharpness plug-in and its timeseries.
    for dtype in ("float32", "float64"):
        for name, model in (("uv", {"name": "uv", "target": 1.0}),
                            ("linear_regression_d8", _LINEAR_REGRESSION)):
            variants[f"sharpness/{name}/gd/{dtype}"] = _experiment(
                model, {"name": "gd", "lr": 0.1}, dtype,
                {"sharpness": {"every": 5}, "timeseries": {"points": 5},
                 "divergence": {"threshold": 1e6}}, {"normal": {"mean": 0.5, "std": 1.0}})
        # GD's orbits beyond the edge: the period plug-in (its ring of 64 states) and the
        # Lyapunov tangent.
        variants[f"period/uv/gd/{dtype}"] = _experiment(
            {"name": "uv", "target": 1.0}, {"name": "gd", "lr": 1.2}, dtype,
            {"period": {"max": 8}, "lyapunov": {}, "divergence": {"threshold": 1e6}},
            {"normal": {"mean": 0.5, "std": 1.0}})
    # The kernels of the benchmark workloads, with only what they record compiled in: the
    # specialised kernels a run of them gets (kernels.get_kernel compiles per set of
    # enabled observables).
    for dtype in ("float32", "float64"):
        variants[f"bench/langevin_first_passage/{dtype}"] = _experiment(
            {"name": "polynomial", "coefficients": [1.0, 0.0, -2.0, 0.0, 1.0], "noise_var": 1.0},
            {"name": "langevin", "dt": 1e-3, "temperature": 0.5}, dtype,
            {"first_passage": {"above": 1.0}}, {"value": -1.0})
        variants[f"bench/sgd_b1_final/{dtype}"] = _experiment(
            _SCALAR_MODELS["quadratic_finite_sum"], _SCALAR_DYNAMICS["sgd_b1"], dtype, {},
            {"value": 0.0})
    # The replica walk of backend = "cuda" for a [splitting] table (kernels._splitting).
    well = {"name": "polynomial", "coefficients": [1.0, 0.0, -2.0, 0.0, 1.0], "noise_var": 1.0}
    for dtype in ("float32", "float64"):
        variants[f"splitting/langevin/{dtype}"] = _splitting_experiment(
            well, _SCALAR_DYNAMICS["langevin"], dtype)
    variants["splitting/sgd_b1/float64"] = _splitting_experiment(
        _SCALAR_MODELS["quadratic_finite_sum"], _SCALAR_DYNAMICS["sgd_b1"], "float64")
    return variants


def _splitting_experiment(model, dynamics, dtype):
    return {"run": {"seed": 7, "steps": _STEPS, "dtype": dtype, "backend": "cuda"},
            "model": copy.deepcopy(model), "dynamics": copy.deepcopy(dynamics),
            "init": {"value": -0.5}, "splitting": {"replicas": 4, "runs": 1, "a": -0.95,
                                                   "b": 1.0, "start": "init"}}


VARIANTS = _variants()


def user_variants(model_name, obj):
    """Variants of a user model ``"module:object"``: its dynamics in float64, Langevin in float32."""
    observables = dict(_SCALAR_OBSERVABLES)
    if not hasattr(obj, "second_derivative"):
        observables.pop("lyapunov")
    if not hasattr(obj, "loss"):
        observables.pop("loss_min")
    dynamics = ["langevin", "gd"]
    if hasattr(obj, "noise_var"):
        dynamics.append("sgd_gaussian")
    if hasattr(obj, "per_sample_gradient"):
        dynamics.append("sgd_b1")
    variants = {}
    for dtype, names in (("float64", dynamics), ("float32", ["langevin"])):
        for dyn_name in names:
            variants[f"user/{model_name}/{dyn_name}/{dtype}"] = _experiment(
                {"name": model_name}, _SCALAR_DYNAMICS[dyn_name], dtype, observables,
                {"normal": {"mean": 0.0, "std": 1.0}})
    return variants


def _build(name, backend="cuda", observables=True, experiment=None,
           trajectories=_TRAJECTORIES):
    """(ChunkKernel, the inputs of its ``run``, resolved experiment) of variant ``name``.

    ``experiment`` (a raw experiment) defaults to ``VARIANTS[name]``.
    """
    from sgdsim import kernels
    from sgdsim.sim._config import resolve_experiment
    from sgdsim.sim._plan import make_plan
    from sgdsim.sim._engine import Points

    raw = copy.deepcopy(VARIANTS[name] if experiment is None else experiment)
    raw["run"]["backend"] = backend
    raw["run"]["trajectories"] = trajectories
    if not observables:
        raw["observables"] = {}
    experiment = resolve_experiment(raw, f"gpu-check:{name}")
    plan = make_plan(experiment, backend)
    points = Points(plan, f"gpu-check:{name}")
    kernel, d, conf_i, conf_f, paths = points.get(0)
    x0 = kernels.initial_state(plan.points[0][1]["init"], 0, trajectories, plan.seed,
                               plan.dtype, plan.dim)
    inputs = (x0, 0, 0, plan.steps, plan.seed, points.models[0].params, d, conf_i, conf_f,
              plan.boundaries, plan.ts_steps, paths)
    return kernel, inputs, experiment


def _splitting_kernel(experiment):
    """(the CUDA replica kernel, arguments of its launch, its layout's group, threads a
    block) of a raw splitting experiment."""
    from sgdsim import kernels
    from sgdsim.kernels._launch import layout_of
    from sgdsim.kernels._splitting import CUDA_BLOCK, aux_columns, make_cuda_driver, make_score
    from sgdsim.sim._config import resolve_experiment
    from sgdsim.sim._plan import model_for

    experiment = resolve_experiment(copy.deepcopy(experiment), "gpu-check:splitting")
    model = model_for(experiment["model"], experiment["dynamics"])
    dtype, dynamics, n = np.dtype(experiment["run"]["dtype"]), experiment["dynamics"], 4
    driver = make_cuda_driver(model, dynamics, dtype,
                              make_score(experiment["splitting"]["score"], model.dim))
    spl = experiment["splitting"]
    key_lo, key_hi = kernels.seed_key(experiment["run"]["seed"])
    args = (np.zeros((n, model.dim), dtype=dtype), np.zeros((n, aux_columns(dynamics, model.dim))),
            np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.uint64),
            np.zeros(n, dtype=np.int64), 0, np.zeros(n), spl["a"], spl["b"],
            experiment["run"]["steps"], key_lo, key_hi, np.array([model.params], dtype=dtype),
            np.array([kernels.dynamics_params(dynamics)], dtype=dtype), np.zeros(n),
            np.zeros(n, dtype=np.int64))
    return driver.kernel, args, layout_of(dynamics, dtype, model.dim)[4].group, CUDA_BLOCK


def _launch_arguments(kernel, inputs):
    """Every argument of the kernel launch for ``run`` inputs (their types are the signature)."""
    state = kernel.start(*inputs)
    bundles, _ = kernel.arguments(state, 0, state.steps)
    return bundles


def _compile_one(name, experiment, cc, out_dir):
    """Worker: compile and assemble one variant for one capability; a report row."""
    from sgdsim.kernels import REDUCE_GROUP
    from sgdsim.kernels._ptx import assemble, compile_kernel_ptx, occupancy, step_loop_instructions

    row = {"variant": name, "cc": f"{cc[0]}{cc[1]}"}
    kernel = None
    try:
        start = time.perf_counter()
        if "splitting" in experiment:
            function, arguments, group, block = _splitting_kernel(experiment)
        else:
            kernel, inputs, _ = _build(name, experiment=experiment)
            function, arguments, group, block = (kernel.kernel, _launch_arguments(kernel, inputs),
                                                 kernel.group, REDUCE_GROUP)
        ptx, seconds = compile_kernel_ptx(function, arguments, cc)
        path = pathlib.Path(out_dir) / (name.replace("/", "__") + f".sm_{cc[0]}{cc[1]}.ptx")
        path.write_text(ptx)
        figures = assemble(path, cc)
        row.update(registers=figures.registers, stack_bytes=figures.stack_bytes,
                   spill_stores=figures.spill_stores, spill_loads=figures.spill_loads,
                   shared_bytes=figures.shared_bytes, block_size=block,
                   occupancy=occupancy(cc, figures.registers, figures.shared_bytes, block),
                   **_step_figures(step_loop_instructions(figures.cubin, group=group)),
                   ptx=str(path), compile_seconds=round(time.perf_counter() - start, 2),
                   ptx_seconds=round(seconds, 2))
        note = _local_memory_note(name, figures, ptx)
        if note:
            row["note"] = note
    except Exception as exc:  # reported per variant; the command exits 1 naming it
        row["error"] = _failure(name, exc, kernel)
    return row


def _step_figures(sass):
    """Report fields of kernels._ptx.step_loop_instructions: ``step_sass`` per step (the
    group's draw spread over its steps), ``loop_sass`` the loop body, ``draw_sass`` the draw."""
    if sass is None:
        return {"step_sass": None}
    body, draw, per_step = sass
    return {"step_sass": per_step, "loop_sass": body, "draw_sass": draw}


def _failure(name, exc, kernel=None):
    """One line for a failed variant: where in a user's model it failed, if it did."""
    if name.startswith("user/"):
        from sgdsim.kernels._launch import _compile_failure
        return _compile_failure(exc, kernel.user_functions if kernel is not None else ())
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())[:600]


def _local_memory_note(name, figures, ptx):
    """Why a kernel uses local memory (a stack frame or spills), from its PTX; '' if it doesn't."""
    if figures.stack_bytes == 0 and figures.spill_stores == 0:
        return ""
    if "__internal_trig_reduction_slowpath" in ptx and figures.spill_stores == 0:
        return ("libdevice's sin/cos keep a 40-byte table in local memory for the slow path "
                "of their argument reduction (huge arguments only); the state is in registers")
    if figures.spill_stores:
        return "register spills"
    return "an array indexed at run time is kept in local memory"


def compile_all(variants, ccs, out_dir, jobs, progress=None):
    """Rows of the report for every (variant, cc), compiled in ``jobs`` processes per cc.

    ``variants`` maps names to raw experiments.
    """
    rows = []
    for cc in ccs:
        with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
            futures = [pool.submit(_compile_one, name, experiment, cc, out_dir)
                       for name, experiment in variants.items()]
            for future in futures:
                rows.append(future.result())
                if progress:
                    progress(rows[-1])
    return rows


def check(variants, ccs, out_dir, jobs=None, device=None, progress=None):
    """Compile ``variants`` (name -> raw experiment) for ``ccs`` into ``out_dir``; with a GPU,
    also run them there.

    Returns the report rows (one per variant and cc, plus one per variant run on
    the device). ``device`` None means: run on the device when a GPU is present.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = jobs or max(1, min(os.cpu_count() or 1, len(variants)))
    rows = compile_all(variants, ccs, out_dir, jobs, progress)
    if device is None:
        device = _gpu_present()
    if device:
        for name, experiment in variants.items():
            if "splitting" in experiment:
                continue     # run on a GPU by tests/test_splitting.py's cuda backend test
            rows.append(run_on_device(name, experiment))
            if progress:
                progress(rows[-1])
    return rows


def _gpu_present():
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return False
    from sgdsim import kernels
    return kernels.cuda_usable()


def run_on_device(name, experiment=None, trajectories=_TRAJECTORIES):
    """Run variant ``name`` on the CUDA backend and on the CPU, observables on and off."""
    row = {"variant": name, "cc": "device"}
    try:
        for observables in (True, False):
            outputs, seconds = {}, {}
            for backend in ("cuda", "cpu"):
                kernel, inputs, resolved = _build(name, backend, observables, experiment,
                                                  trajectories)
                outputs[backend], seconds[backend] = kernel.run(*inputs)
            detail = compare_outputs(outputs["cuda"], outputs["cpu"], resolved["run"]["dtype"])
            detail["cuda_seconds"] = round(seconds["cuda"], 4)
            row["observables_on" if observables else "observables_off"] = detail
            if not detail["agree"]:
                row["error"] = (f"device and CPU disagree (observables "
                                f"{'on' if observables else 'off'}): {detail['worst']}")
    except Exception as exc:
        row["error"] = _failure(name, exc)
    return row


# Relative tolerance of float outputs, and the share of trajectories whose integer
# outputs may differ, between the GPU and the CPU: the GPU contracts a * b + c into
# fused multiply-adds and uses its own libm, so a trajectory can end a rounding step
# apart, and one that lands on a threshold (first passage, a histogram bin edge)
# can be counted on the other side.
_RTOL = {"float32": 1e-3, "float64": 1e-8}
_INTEGER_SHARE = 0.02


def compare_outputs(device, cpu, dtype):
    """Agreement of one chunk's outputs on two backends: {"agree", "worst", per key}."""
    detail, worst, agree = {}, "", True
    n = max(len(cpu["fp_steps"]), 1)
    for key in ("x_final", "log_growth", "ts_partial", "tracked"):
        a, b = np.asarray(device[key], float), np.asarray(cpu[key], float)
        scale = np.maximum(np.abs(b), 1.0)
        both = np.isfinite(a) & np.isfinite(b)
        error = float(np.max(np.abs(a - b)[both] / scale[both], initial=0.0))
        detail[key] = error
        if error > _RTOL[dtype] or not np.array_equal(np.isfinite(a), np.isfinite(b)):
            agree, worst = False, f"{key} relative difference {error:.3g}"
    for key in ("fp_steps", "div_steps", "lyap_steps", "occupancy", "hist"):
        a, b = np.asarray(device[key]), np.asarray(cpu[key])
        if key in ("hist", "occupancy"):     # share of the counts that moved
            differing = float(np.abs(a - b).sum()) / max(float(b.sum()), 1.0)
        else:                                # share of trajectories that differ
            differing = float(np.count_nonzero(a != b)) / n
        detail[key] = differing
        if differing > _INTEGER_SHARE:
            agree, worst = False, f"{key} differs for {differing:.1%} of trajectories"
    detail["agree"] = agree
    detail["worst"] = worst
    return detail


def missing_tools():
    """What gpu-check lacks on this machine, in one sentence, or '' when nothing."""
    try:
        importlib.import_module("numba_cuda")
    except ImportError:
        return "needs numba-cuda: pip install 'sgdsim[cuda]'"
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return "the CUDA simulator compiles nothing: unset NUMBA_ENABLE_CUDASIM"
    from sgdsim.kernels._ptx import find_ptxas
    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:
        return (f"cannot load libNVVM ({type(exc).__name__}); install the cuda extra, which "
                f"brings it (nvidia-cuda-nvcc-cu12)")
    if find_ptxas() is None:
        return "ptxas not found: install the cuda extra (nvidia-cuda-nvcc-cu12 ships it)"
    return ""


HEADER = (f"{'variant':<52} {'cc':>3} {'regs':>4} {'stack':>5} {'spill':>5} {'smem':>6} "
          f"{'occ':>5} {'step':>5} {'loop':>5} {'s':>5}")


def format_row(row):
    """One line of the table for a report row."""
    if "error" in row:
        return f"{row['variant']:<52} {row['cc']:>3} FAILED: {row['error']}"
    if row["cc"] == "device":
        on, off = row["observables_on"], row["observables_off"]
        return (f"{row['variant']:<52} {'gpu':>3} agrees with cpu (observables on: "
                f"{on['cuda_seconds']} s, off: {off['cuda_seconds']} s)")
    spills = row["spill_stores"] + row["spill_loads"]
    line = (f"{row['variant']:<52} {row['cc']:>3} {row['registers']:>4} {row['stack_bytes']:>5} "
            f"{spills:>5} {row['shared_bytes']:>6} {row['occupancy']:>5.3f} "
            f"{'-' if row.get('step_sass') is None else row['step_sass']:>5} "
            f"{row.get('loop_sass', '-'):>5} {row['compile_seconds']:>5.1f}")
    return line + (f"  ({row['note']})" if row.get("note") else "")


def summary(rows, report):
    """Closing lines: counts, local memory, compile time, where the report is."""
    compiled = [r for r in rows if r["cc"] != "device" and "error" not in r]
    failed = [r for r in rows if "error" in r]
    scalar_local = [r for r in compiled if r["variant"].startswith("scalar/")
                    and (r["stack_bytes"] or r["spill_stores"] or r["spill_loads"])]
    seconds = sum(r["compile_seconds"] for r in compiled)
    lines = [f"gpu-check: {len(compiled)} compiled and assembled, {len(failed)} failed; "
             f"{seconds:.0f} s of compiling ({seconds / max(len(compiled), 1):.1f} s a variant)",
             f"gpu-check: 1-D kernels with local memory (stack or spills): {len(scalar_local)}",
             f"gpu-check: report {report}"]
    return "\n".join(lines)
