"""The benchmark workloads and the peer implementations they are compared with.

Two workloads, identical for every implementation:

* ``LANGEVIN``: Euler-Maruyama for d theta = -L' dt + sqrt(T Sigma) dW in the
  double well L = (theta^2 - 1)^2 = theta^4 - 2 theta^2 + 1 (L' = 4 theta^3 - 4 theta),
  Sigma = 1, dt = 1e-3, T = 0.5, theta_0 = -1, first passage above 1.0
  (the first step t >= 1 with theta_t >= 1 is recorded; -1 if never; no stop).
* ``SGD``: finite-sum SGD on quadratic_finite_sum, curvatures [4, 1], centers
  [1, 0], lr 0.1, batch 1, theta_0 = 0, final state only.

Peers: a plain vectorised NumPy loop (numpy.random.Generator, one array
operation per term, preallocated buffers, in-place updates) and JAX (jit of a
lax.scan over steps with jax.random keys). Both work in float32 like sgdsim's
float32 runs, and keep only O(trajectories) state: nothing per step is stored.
The peers draw from their own generators, so they are statistically, not
bitwise, equal to sgdsim (which uses Philox4x32-10 with its own counter layout).

``sgdsim_kernel`` builds the sgdsim side: a compiled ``ChunkKernel`` plus the
arguments of ``ChunkKernel.run`` for one chunk holding every trajectory.
"""
import numpy as np

__all__ = [
    "LANGEVIN", "SGD", "WORKLOADS", "experiment", "sgdsim_kernel", "SgdsimWorkload",
    "numpy_langevin", "numpy_sgd", "jax_langevin", "jax_sgd", "NUMPY_PEERS", "JAX_PEERS",
]

# ---------------------------------------------------------------- workloads

LANGEVIN = {
    "name": "langevin",
    "coefficients": [1.0, 0.0, -2.0, 0.0, 1.0],
    "noise_var": 1.0,
    "dt": 1e-3,
    "temperature": 0.5,
    "theta0": -1.0,
    "level": 1.0,
}

SGD = {
    "name": "sgd",
    "curvatures": [4.0, 1.0],
    "centers": [1.0, 0.0],
    "lr": 0.1,
    "batch_size": 1,
    "theta0": 0.0,
}

WORKLOADS = {"langevin": LANGEVIN, "sgd": SGD}


def experiment(workload, trajectories, steps, backend="cpu", seed=12345, dtype="float32"):
    """The raw sgdsim experiment dict of a workload (resolve with sim.resolve_experiment)."""
    run = {"seed": seed, "trajectories": trajectories, "steps": steps, "dtype": dtype,
           "backend": backend, "chunk": 0}
    if workload == "langevin":
        w = LANGEVIN
        return {
            "run": run,
            "model": {"name": "polynomial", "coefficients": w["coefficients"],
                      "noise_var": w["noise_var"]},
            "dynamics": {"name": "langevin", "dt": w["dt"], "temperature": w["temperature"]},
            "init": {"value": w["theta0"]},
            "observables": {"first_passage": {"above": w["level"]}},
        }
    if workload == "sgd":
        w = SGD
        return {
            "run": run,
            "model": {"name": "quadratic_finite_sum", "curvatures": w["curvatures"],
                      "centers": w["centers"]},
            "dynamics": {"name": "sgd", "lr": w["lr"], "batch_size": w["batch_size"]},
            "init": {"value": w["theta0"]},
            "observables": {},
        }
    raise KeyError(workload)


class SgdsimWorkload:
    """A compiled sgdsim chunk kernel and the arguments to run all trajectories at once."""

    def __init__(self, workload, trajectories, steps, backend="cpu", seed=12345,
                 dtype="float32"):
        from sgdsim import kernels
        from sgdsim import sim
        from sgdsim.sim._runner import _configuration

        raw = experiment(workload, trajectories, steps, backend=backend, seed=seed, dtype=dtype)
        resolved = sim.resolve_experiment(raw, "bench")
        self.resolved = resolved
        self.trajectories = trajectories
        self.steps = steps
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.model = kernels.builtin_model(resolved["model"])
        self.d = kernels.dynamics_params(resolved["dynamics"])
        self.conf_i, self.conf_f = _configuration(resolved["observables"], trajectories)
        self.kernel = kernels.get_kernel(backend, self.model, resolved["dynamics"], self.dtype,
                                         resolved["observables"])
        self.x0 = kernels.initial_state(resolved["init"], 0, trajectories, seed, self.dtype,
                                        self.model.dim)
        self.boundaries = np.zeros(0)
        self.ts_steps = np.zeros(0, dtype=np.int64)
        self.paths = np.zeros((0, steps + 1, self.model.dim), dtype=self.dtype)
        self.last_kernel_seconds = None

    def compile(self):
        """Compile (or load from the on-disk cache) outside any timed region."""
        if not self.kernel.compiled:
            # ChunkKernel.run compiles on a one-trajectory problem first; run one tiny chunk.
            x = self.x0[:1].copy()
            self.kernel.run(x, 0, 0, 1, self.seed, self.model.params, self.d, self.conf_i,
                            self.conf_f, self.boundaries, self.ts_steps, self.paths.copy())
        return self.kernel.compile_seconds

    def __call__(self):
        """Run every trajectory for ``steps`` steps; return the outputs dict."""
        out, seconds = self.kernel.run(self.x0, 0, 0, self.steps, self.seed, self.model.params,
                                       self.d, self.conf_i, self.conf_f, self.boundaries,
                                       self.ts_steps, self.paths)
        self.last_kernel_seconds = seconds
        return out


def sgdsim_kernel(workload, trajectories, steps, backend="cpu", **kwargs):
    """A compiled `SgdsimWorkload` (compilation done here, not in the caller's timing)."""
    w = SgdsimWorkload(workload, trajectories, steps, backend=backend, **kwargs)
    w.compile()
    return w


# ---------------------------------------------------------------- NumPy peer

def numpy_langevin(n, steps, seed=0):
    """Vectorised NumPy Euler-Maruyama with first-passage bookkeeping.

    Returns (theta_T, first_passage_steps). Memory: a handful of float32
    arrays of length n.
    """
    w = LANGEVIN
    f32 = np.float32
    rng = np.random.default_rng(seed)
    dt = f32(w["dt"])
    amplitude = f32(np.sqrt(w["temperature"] * w["noise_var"] * w["dt"]))
    level = f32(w["level"])
    x = np.full(n, w["theta0"], dtype=f32)
    first = np.full(n, -1, dtype=np.int64)
    xi = np.empty(n, dtype=f32)
    grad = np.empty(n, dtype=f32)
    hit = np.empty(n, dtype=bool)
    fresh = np.empty(n, dtype=bool)
    for t in range(1, steps + 1):
        rng.standard_normal(dtype=f32, out=xi)
        # L'(x) = 4 x^3 - 4 x = 4 x (x^2 - 1)
        np.multiply(x, x, out=grad)
        grad -= 1
        grad *= x
        grad *= 4 * dt
        xi *= amplitude
        x -= grad
        x += xi
        np.greater_equal(x, level, out=hit)
        np.less(first, 0, out=fresh)
        hit &= fresh
        first[hit] = t
    return x, first


def numpy_sgd(n, steps, seed=0):
    """Vectorised NumPy finite-sum SGD (batch 1) on quadratic_finite_sum; returns theta_T."""
    w = SGD
    f32 = np.float32
    rng = np.random.default_rng(seed)
    lr = f32(w["lr"])
    h = np.asarray(w["curvatures"], dtype=f32)
    c = np.asarray(w["centers"], dtype=f32)
    lr_h = lr * h          # theta <- theta - lr h_i (theta - c_i) = theta - lr_h[i] theta + lr_h[i] c[i]
    lr_hc = lr * h * c
    x = np.full(n, w["theta0"], dtype=f32)
    a = np.empty(n, dtype=f32)
    b = np.empty(n, dtype=f32)
    for _ in range(steps):
        i = rng.integers(0, h.size, size=n)
        np.take(lr_h, i, out=a)
        np.take(lr_hc, i, out=b)
        a *= x
        x -= a
        x += b
    return x


NUMPY_PEERS = {"langevin": numpy_langevin, "sgd": numpy_sgd}


# ---------------------------------------------------------------- JAX peer

_JAX_CACHE = {}


def _jax_functions():
    if _JAX_CACHE:
        return _JAX_CACHE
    import functools

    import jax
    import jax.numpy as jnp

    @functools.partial(jax.jit, static_argnums=(1, 2))
    def langevin(key, n, steps):
        w = LANGEVIN
        dt = jnp.float32(w["dt"])
        amplitude = jnp.float32(np.sqrt(w["temperature"] * w["noise_var"] * w["dt"]))
        level = jnp.float32(w["level"])

        def step(carry, t):
            x, first, key = carry
            key, sub = jax.random.split(key)
            xi = jax.random.normal(sub, (n,), dtype=jnp.float32)
            x = x - 4.0 * x * (x * x - 1.0) * dt + amplitude * xi
            first = jnp.where((first < 0) & (x >= level), t, first)
            return (x, first, key), None

        x0 = jnp.full((n,), w["theta0"], dtype=jnp.float32)
        first0 = jnp.full((n,), -1, dtype=jnp.int32)
        (x, first, _), _ = jax.lax.scan(step, (x0, first0, key),
                                        jnp.arange(1, steps + 1, dtype=jnp.int32))
        return x, first

    @functools.partial(jax.jit, static_argnums=(1, 2))
    def sgd(key, n, steps):
        w = SGD
        lr = jnp.float32(w["lr"])
        h = jnp.asarray(w["curvatures"], dtype=jnp.float32)
        c = jnp.asarray(w["centers"], dtype=jnp.float32)

        def step(carry, _):
            x, key = carry
            key, sub = jax.random.split(key)
            i = jax.random.randint(sub, (n,), 0, h.shape[0])
            x = x - lr * h[i] * (x - c[i])
            return (x, key), None

        x0 = jnp.full((n,), w["theta0"], dtype=jnp.float32)
        (x, _), _ = jax.lax.scan(step, (x0, key), None, length=steps)
        return x

    _JAX_CACHE.update(langevin=langevin, sgd=sgd, jax=jax)
    return _JAX_CACHE


def _jax_peer(name):
    def run(n, steps, seed=0):
        fns = _jax_functions()
        out = fns[name](fns["jax"].random.PRNGKey(seed), n, steps)
        return fns["jax"].block_until_ready(out)

    run.__name__ = f"jax_{name}"
    run.__doc__ = f"JAX peer of the {name} workload (jit + lax.scan; blocks until ready)."
    return run


jax_langevin = _jax_peer("langevin")
jax_sgd = _jax_peer("sgd")
JAX_PEERS = {"langevin": jax_langevin, "sgd": jax_sgd}
