"""The experiment-file schema (SPEC 2-5) as data: every table, key, type, default and range.

`sim._config` validates against these tables and `sgdsim models` prints them, so a key is
described in exactly one place. Cross-key rules that a single `Key` cannot express
(``lo < hi``, one-of groups, equal list lengths) live in `sim._config` and are listed here
as ``notes`` so that the printed schema still states them.
"""
from ._keys import NUMERIC_TYPES, REQUIRED, Entry, Key
from .observables import PLUGINS

__all__ = [
    "REQUIRED",
    "Key",
    "Entry",
    "TABLES",
    "RUN",
    "MODELS",
    "DYNAMICS",
    "INIT",
    "OBSERVABLES",
    "USER_MODEL",
    "SWEEP_NOTES",
    "NUMERIC_TYPES",
    "VECTOR_MODELS",
    "TWO_SCALE_MODELS",
    "state_dimension",
    "SPLITTING",
]


# [run]: how the experiment is executed. Not sweepable (see SWEEP_NOTES).
RUN = {
    "seed": Key("int", 0, "Philox key of the whole run", minimum=0, below=2**64),
    "trajectories": Key("int", 1000, "trajectories per sweep point", minimum=1),
    "steps": Key("int", 1000, "update steps per trajectory", minimum=1, below=2**32),
    "dtype": Key("str", "float64", "floating-point type of the state",
                 choices=("float32", "float64")),
    "backend": Key("str", "auto", "auto: cuda if a GPU is usable, else cpu",
                   choices=("auto", "cpu", "cuda", "numpy")),
    "chunk": Key("int", 0, "trajectories per kernel launch; 0 = sized to the device",
                 minimum=0),
    "checkpoint_seconds": Key("float", 60.0, "seconds between checkpoints, 0 = after every "
                              "chunk; --checkpoint-seconds and SGDSIM_CHECKPOINT_SECONDS "
                              "override it", minimum=0),
}

_LOGISTIC = {
    "left": Key("float", REQUIRED, "Sigma as theta -> -inf", minimum=0),
    "right": Key("float", REQUIRED, "Sigma as theta -> +inf", minimum=0),
    "center": Key("float", 0.0, "midpoint of the logistic step"),
    "width": Key("float", REQUIRED, "width of the logistic step", above=0),
}

MODELS = {
    "quadratic_finite_sum": Entry(
        "l_i(theta) = 0.5 * h_i * (theta - c_i)**2, i = 0..n-1; "
        "L' = mean_i h_i (theta - c_i), Sigma = var_i [h_i (theta - c_i)]",
        {
            "curvatures": Key("floats", REQUIRED, "h_i, one per sample", min_len=1),
            "centers": Key("floats", None, "c_i, same length as curvatures",
                           default_doc="zeros"),
        },
        notes=("centers must have as many entries as curvatures",),
    ),
    "polynomial": Entry(
        "L(theta) = sum_k coefficients[k] * theta**k; as a finite sum n = 2 samples with "
        "per-sample gradients L'(theta) +- sqrt(Sigma(theta))",
        {
            "coefficients": Key("floats", REQUIRED, "coefficients[k] multiplies theta**k",
                                min_len=1, max_len=12),
            "noise_var": Key("number_or_table", 1.0,
                             "Sigma: a number >= 0, or the logistic profile "
                             "Sigma = left + (right - left) / (1 + exp(-(theta - center) / width))",
                             minimum=0, keys=_LOGISTIC),
        },
    ),
}

# Models with a d-dimensional state (issue 4). Two-time-scale models have the state
# theta = (x, y), x and y of dimension `dim`, and are written as f(x, w) at w = eps*y.
_TWO_SCALE_KEYS = {
    "dim": Key("int", 1, "dimension of x and of y (the state has 2*dim coordinates)",
               minimum=1, below=33),
    "kappa": Key("float", 1.0, "coupling: lambda(y) = argmin_x f(x, eps y) = kappa eps y"),
    "mu": Key("float", 1.0, "curvature of the slow variable", above=0),
}
MODELS.update({
    "coupled_quadratic": Entry(
        "f(x, w) = |x - kappa w|^2/2 + mu |w - w_star|^2/2, x, w in R^dim, at w = eps*y; "
        "lambda(y) = kappa eps y, y* = w_star / eps",
        {**_TWO_SCALE_KEYS,
         "w_star": Key("floats", None, "minimiser of the slow part, one entry or dim entries",
                       default_doc="zeros")},
        notes=("w_star has 1 or dim entries",
               "eps comes from the two-time-scale dynamics (1 under gd/langevin)"),
    ),
    "grooves": Entry(
        "f(x, w) = |x - kappa w|^2/2 + mu sum_k (1 - cos(2 pi w_k)) / (2 pi^2), at w = eps*y: "
        "min_x f(x, eps y) has a groove wherever eps*y_k is an integer",
        dict(_TWO_SCALE_KEYS),
        notes=("lambda(y) = kappa eps y; |y - y*|^2 is the squared distance to the nearest "
               "groove",),
    ),
    "linear_regression": Entry(
        "l_i(theta) = (a_i . theta - b_i)^2 / 2 on synthetic data: a_i ~ N(0, diag(eigenvalues)), "
        "b_i = a_i . w_teacher + label_noise * N(0, 1), w_teacher ~ N(0, I/features)",
        {
            "samples": Key("int", REQUIRED, "n, number of data points", minimum=1),
            "features": Key("int", REQUIRED, "d, the state dimension", minimum=1, below=257),
            "eigenvalues": Key("floats", None, "eigenvalues of the feature covariance",
                               default_doc="ones"),
            "label_noise": Key("float", 0.0, "standard deviation of the label noise",
                               minimum=0),
            "data_seed": Key("int", 0, "seed of the synthetic data (numpy PCG64)", minimum=0,
                             below=2**63),
        },
        notes=("eigenvalues has `features` entries, all > 0",),
    ),
})
MODELS["uv"] = Entry(
    "L(u, v) = (u v - target)^2 / 2, state theta = (u, v); Hessian "
    "[[v^2, 2uv - target], [2uv - target, u^2]], eigenvalues 0 and u^2 + v^2 at a minimum",
    {
        "target": Key("float", 1.0, "the product u v at the minima"),
        "noise_std": Key("float", 0.0, "sqrt(Sigma), the per-coordinate gradient noise of "
                         "sgd noise = \"gaussian\" and langevin", minimum=0),
    },
    notes=("one sample (the loss itself): finite-sum sgd is gd",),
)
MODELS["two_layer"] = Entry(
    "a width-W scalar network f(x) = sum_j a_j act(w_j x), state theta = (w_1..w_W, "
    "a_1..a_W); l_i = (f(x_i) - y_i)^2 / 2 on synthetic points x_i ~ N(0, 1), "
    "y_i = sin(2 x_i)",
    {
        "width": Key("int", 8, "W, hidden units (the state has 2 W coordinates)", minimum=1,
                     below=129),
        "samples": Key("int", 16, "n, number of data points", minimum=1, below=100_001),
        "activation": Key("str", "tanh", "act", choices=("tanh", "linear")),
        "data_seed": Key("int", 0, "seed of the synthetic points (numpy PCG64)", minimum=0,
                         below=2**63),
        "noise_std": Key("float", 0.0, "sqrt(Sigma), the per-coordinate gradient noise of "
                         "sgd noise = \"gaussian\" and langevin", minimum=0),
    },
)
VECTOR_MODELS = ("coupled_quadratic", "grooves", "linear_regression", "uv", "two_layer")

TWO_SCALE_MODELS = ("coupled_quadratic", "grooves")


def state_dimension(model):
    """(d, x_dim) of a resolved [model] table: the state's coordinates, and of those the
    fast variable x of a two-time-scale model (0 otherwise)."""
    name = model["name"]
    if name in TWO_SCALE_MODELS:
        return 2 * model.get("dim", 1), model.get("dim", 1)
    if name == "linear_regression":
        return model.get("features", 1), 0
    if name == "uv":
        return 2, 0
    if name == "two_layer":
        return 2 * model.get("width", 8), 0
    return 1, 0

_ESTIMATE = "g = (1/B) sum_{j<B} l'_{z_j}(theta), z_j uniform with replacement"
_SGD_ESTIMATE_KEYS = {
    "lr": Key("float", REQUIRED, "step size", above=0),
    "batch_size": Key("int", 1, "B, samples per step", minimum=1),
    "noise": Key("str", "finite_sum", "gradient estimate g: a minibatch of the finite sum, "
                 "L' + sqrt(Sigma/B) xi, or the full gradient L'",
                 choices=("finite_sum", "gaussian", "none")),
}
_RECORD_KEY = Key("bool", False, "write the optimiser's buffers at the last step to /final "
                  "(momentum; adam_m and adam_v)")
_ADAM_KEYS = {
    **_SGD_ESTIMATE_KEYS,
    "beta1": Key("float", 0.9, "decay of the first moment m", minimum=0, below=1),
    "beta2": Key("float", 0.999, "decay of the second moment v", minimum=0, below=1),
    "eps": Key("float", 1e-8, "added to sqrt(v-hat)", above=0),
    "weight_decay": Key("float", 0.0, "weight decay", minimum=0),
    "record_buffers": _RECORD_KEY,
}
_OPTIMISER_NOTES = ("PyTorch's update conventions (torch.optim); the buffers start at zero "
                    "and are float64", "lyapunov is not available with an optimiser's buffers")

DYNAMICS = {
    "sgd": Entry(
        f"theta <- theta - lr * g, {_ESTIMATE}; noise = \"gaussian\": g = L' + sqrt(Sigma/B) "
        "* xi; with momentum (heavy ball, PyTorch): g <- g + weight_decay theta, "
        "v <- momentum v + g, theta <- theta - lr (g + momentum v) with nesterov, "
        "theta - lr v without",
        {
            **_SGD_ESTIMATE_KEYS,
            "momentum": Key("float", None, "heavy-ball momentum mu (a velocity buffer is kept "
                            "when momentum, nesterov or weight_decay is given)", minimum=0,
                            below=1, default_doc="0, no buffer"),
            "nesterov": Key("bool", None, "Nesterov momentum (needs momentum > 0)",
                            default_doc="false"),
            "weight_decay": Key("float", None, "L2 penalty added to g", minimum=0,
                                default_doc="0"),
            "record_buffers": _RECORD_KEY,
        },
        notes=_OPTIMISER_NOTES,
    ),
    "adam": Entry(
        f"{_ESTIMATE} (+ weight_decay theta); m <- beta1 m + (1 - beta1) g, "
        "v <- beta2 v + (1 - beta2) g^2, "
        "theta <- theta - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)",
        _ADAM_KEYS,
        notes=_OPTIMISER_NOTES,
    ),
    "adamw": Entry(
        f"adam with decoupled weight decay: theta <- theta (1 - lr weight_decay), then adam's "
        f"step with g = the plain estimate ({_ESTIMATE})",
        _ADAM_KEYS,
        notes=_OPTIMISER_NOTES,
    ),
    "gd": Entry(
        "theta <- theta - lr * L'(theta)",
        {"lr": Key("float", REQUIRED, "step size", above=0)},
    ),
    "langevin": Entry(
        "Euler-Maruyama for d theta = -L' dt + sqrt(temperature * Sigma) dW (Ito): "
        "theta <- theta - L' dt + sqrt(temperature * Sigma * dt) * xi",
        {
            "dt": Key("float", REQUIRED, "time step", above=0),
            "temperature": Key("float", REQUIRED, "tau of the SGD-as-SDE picture (tau = lr)",
                               above=0),
        },
    ),
}

DYNAMICS.update({
    "two_time_scale": Entry(
        "x <- x + a (-grad_x f(x, eps y) + noise_x xi), "
        "y <- y + b (-grad_w f(x, eps y) + noise_y zeta); xi, zeta independent N(0, I)",
        {
            "a": Key("float", REQUIRED, "fast step size", above=0),
            "eps": Key("float", REQUIRED, "time-scale ratio: w = eps*y", above=0),
            "b": Key("float", None, "slow step size", above=0, default_doc="eps * a"),
            "noise_x": Key("float", 0.0, "noise amplitude of the fast iterate", minimum=0),
            "noise_y": Key("float", 0.0, "noise amplitude of the slow iterate", minimum=0),
        },
        notes=("needs a two-time-scale model (coupled_quadratic, grooves)",),
    ),
    "two_time_scale_sde": Entry(
        "Euler-Maruyama for dx = -grad_x f dt + s dW, dy = -eps grad_w f dt + eps^(1+alpha) dB",
        {
            "dt": Key("float", REQUIRED, "time step", above=0),
            "eps": Key("float", REQUIRED, "time-scale ratio: w = eps*y", above=0),
            "s": Key("float", REQUIRED, "noise amplitude s(eps) of the fast variable",
                     minimum=0),
            "alpha": Key("float", REQUIRED, "slow noise exponent, 0 < alpha < 1", above=0,
                         below=1),
        },
        notes=("needs a two-time-scale model (coupled_quadratic, grooves)",),
    ),
})

# [init]: exactly one of the forms; value = 0.0 when [init] is absent.
INIT = Entry(
    "initial state theta_0 of every trajectory",
    {
        "value": Key("float", REQUIRED, "the same theta_0 for all trajectories (every "
                                        "coordinate)"),
        "vector": Key("floats", REQUIRED, "theta_0 given per coordinate (d entries)",
                      min_len=1),
        "normal": Key("table", REQUIRED, "theta_0 ~ N(mean, std**2)", keys={
            "mean": Key("float", REQUIRED, "mean"),
            "std": Key("float", REQUIRED, "standard deviation", minimum=0),
        }),
        "uniform": Key("table", REQUIRED, "theta_0 ~ U[low, high)", keys={
            "low": Key("float", REQUIRED, "lower end"),
            "high": Key("float", REQUIRED, "upper end"),
        }),
    },
    one_of=("value", "vector", "normal", "uniform"),
    notes=("uniform needs low < high", "without [init]: value = 0.0",
           "normal and uniform draw every coordinate independently"),
)
INIT_DEFAULT = {"value": 0.0}

OBSERVABLES = {
    "histogram": Entry(
        "visits of each bin at steps t >= burn_in, every thin steps, all trajectories",
        {
            "lo": Key("float", REQUIRED, "lower edge"),
            "hi": Key("float", REQUIRED, "upper edge"),
            "bins": Key("int", 100, "number of bins", minimum=1, below=2**27),
            "burn_in": Key("int", 0, "first step counted", minimum=0),
            "thin": Key("int", 1, "count every thin-th step", minimum=1),
        },
        notes=("lo < hi", "burn_in <= run.steps"),
    ),
    "first_passage": Entry(
        "first step t >= 1 with theta_t >= above (or <= below); -1 if never",
        {
            "above": Key("float", REQUIRED, "target set theta >= above"),
            "below": Key("float", REQUIRED, "target set theta <= below"),
            "stop": Key("bool", False, "end the trajectory at its first passage"),
            "coordinate": Key("coord", 0, "coordinate watched, or \"norm\" for |theta| (d > 1)"),
        },
        one_of=("above", "below"),
    ),
    "divergence": Entry(
        "first step with abs(theta) > threshold or non-finite; the trajectory stops there",
        {"threshold": Key("float", 1e8, "divergence threshold", above=0),
         "coordinate": Key("coord", 0, "coordinate watched, or \"norm\" for |theta| (d > 1)")},
    ),
    "lyapunov": Entry(
        "sum over steps of log growth of the tangent dynamics, renormalised every step",
        {},
    ),
    "occupancy": Entry(
        "steps each trajectory spent in each of len(boundaries) + 1 regions",
        {"boundaries": Key("floats", REQUIRED, "region boundaries", min_len=1,
                           increasing=True),
         "coordinate": Key("coord", 0, "coordinate watched, or \"norm\" for |theta| (d > 1)")},
        notes=("boundaries strictly increasing",
               "first_passage, divergence and occupancy watch the same coordinate"),
    ),
    "timeseries": Entry(
        "ensemble mean, variance and mean loss at `points` recorded steps",
        {
            "points": Key("int", 100, "number of recorded steps", minimum=1, below=2**27),
            "spacing": Key("str", "linear", "spacing of the recorded steps",
                           choices=("linear", "log")),
        },
    ),
    "paths": Entry(
        "the first `count` trajectories, every `every` steps",
        {
            "count": Key("int", 8, "trajectories recorded (at most run.trajectories)",
                         minimum=1),
            "every": Key("int", 1, "record every this many steps", minimum=1),
        },
    ),
}

# Plug-in observables (sim.observables): each module declares its own keys.
OBSERVABLES.update({name: Entry(obs.doc, obs.keys) for name, obs in PLUGINS.items()})

# A user model: [model] name = "package.module:object". Every other key of [model] is
# passed through untouched (kept in the run file as a record); the object's functions
# receive only theta, so those keys cannot be swept.
USER_MODEL = Entry(
    "name = \"package.module:object\": an object (module, class or instance) with plain "
    "scalar functions that numba can compile for the CPU and as CUDA device functions",
    {},
    notes=(
        "required: gradient(theta) -> L'(theta)",
        "optional: noise_var(theta) -> Sigma(theta) (default 0), noise_var_derivative(theta), "
        "loss(theta), second_derivative(theta) (needed by lyapunov)",
        "optional finite sum (needed by sgd noise = \"finite_sum\"): n_samples, "
        "per_sample_gradient(theta, i), per_sample_second_derivative(theta, i)",
        "other [model] keys are passed through untouched (recorded, not read by the "
        "kernels; they cannot be swept)",
    ),
)

SWEEP_NOTES = (
    "keys are dotted \"table.key\": a numeric key of a built-in [model] or of [dynamics], "
    "or init.value",
    "each is a non-empty list; every value is checked as if it were the plain key",
    "several keys form a grid, last key fastest; P = product of the list lengths",
    "a swept required key (lr, dt, temperature) may be left out of its own table; "
    "its first value then stands there",
    "[run] keys are not sweepable: seed is the Philox key of the whole run, "
    "trajectories and steps fix dataset shapes, dtype/backend/chunk choose the kernel",
)

# [splitting]: adaptive multilevel splitting instead of a plain run (sim._splitting).
SPLITTING = Entry(
    "adaptive multilevel splitting: P(reach B = {score >= b} before A = {score <= a}) and "
    "the mean first-passage time to B; run.steps caps a path's length (replicas x runs "
    "paths: run.trajectories is not used)",
    {
        "method": Key("str", "ams", "the splitting algorithm", choices=("ams",)),
        "replicas": Key("int", 100, "replicas n of each run", minimum=2, below=2**31),
        "kill": Key("int", 1, "k: the replicas at or below the k-th smallest maximum score "
                              "are killed each iteration (ties all)", minimum=1),
        "runs": Key("int", 10, "independent AMS runs per sweep point (the interval)",
                    minimum=1, below=2**20),
        "score": Key("str", "theta", 'the reaction coordinate: "theta" (d = 1), '
                                     '"coordinate:K", "norm", one of these negated ("-theta": '
                                     'escape towards lower theta) or "package.module:function" '
                                     "(a numba-compilable f(theta) of the state vector)"),
        "a": Key("float", REQUIRED, "A = {score <= a}"),
        "b": Key("float", REQUIRED, "B = {score >= b}, b > a"),
        "max_iterations": Key("int", 1_000_000, "iterations after which a run gives up "
                                                "(its probability is then NaN)", minimum=1),
        "start": Key("str", "boundary", "boundary: each replica first loops from theta_0 "
                                        "into A and back to score(theta_0), and starts there "
                                        "(p from A's boundary, and the MFPT); init: at "
                                        "theta_0 (p from theta_0, no MFPT)",
                     choices=("boundary", "init")),
    },
    notes=("not with [observables] (a splitting run records /splitting only), --shard or "
           "--mpi; every backend (numpy is the reference)",
           "theta_0 must lie between A and B: a < score(theta_0) < b"),
)

# The tables of an experiment file, in the order they are resolved.
TABLES = ("run", "model", "dynamics", "init", "observables", "sweep", "splitting")


def builtin_score(spec):
    """Whether a [splitting] score is built in: "theta", "norm", "coordinate:K" (K not
    checked here), or one of them negated by a leading "-"."""
    plain = spec[1:] if spec.startswith("-") else spec
    return plain in ("theta", "norm") or plain.startswith("coordinate:")
