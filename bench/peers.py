"""The benchmark workloads and the peer implementations they are compared with.

Two workloads, identical for every implementation:

* ``LANGEVIN``: Euler-Maruyama for d theta = -L' dt + sqrt(T Sigma) dW in the
  double well L = (theta^2 - 1)^2 = theta^4 - 2 theta^2 + 1 (L' = 4 theta^3 - 4 theta),
  Sigma = 1, dt = 1e-3, T = 0.5, theta_0 = -1, first passage above 1.0
  (the first step t >= 1 with theta_t >= 1 is recorded; -1 if never; no stop).
* ``SGD``: finite-sum SGD on quadratic_finite_sum, curvatures [4, 1], centers
  [1, 0], lr 0.1, batch 1, theta_0 = 0, final state only.
* ``MOMENTUM`` and ``ADAM``: the same finite sum and batch with heavy-ball SGD
  (momentum 0.9, lr 0.01: the same effective step lr / (1 - momentum)) and Adam
  (lr 0.01, betas 0.9, 0.999, eps 1e-8), PyTorch's conventions, float64 only
  (an optimiser's buffers are float64 in sgdsim in every run).

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
    "roofline", "MOMENTUM", "ADAM", "numpy_momentum", "numpy_adam", "jax_momentum", "jax_adam",
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

MOMENTUM = {**SGD, "lr": 0.01, "momentum": 0.9}

ADAM = {**SGD, "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

WORKLOADS = {"langevin": LANGEVIN, "sgd": SGD, "momentum": MOMENTUM, "adam": ADAM}


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
    if workload in ("momentum", "adam"):
        w = WORKLOADS[workload]
        dynamics = ({"name": "sgd", "momentum": w["momentum"]} if workload == "momentum" else
                    {"name": "adam", "beta1": w["beta1"], "beta2": w["beta2"], "eps": w["eps"]})
        return {
            "run": run,
            "model": {"name": "quadratic_finite_sum", "curvatures": w["curvatures"],
                      "centers": w["centers"]},
            "dynamics": {**dynamics, "lr": w["lr"], "batch_size": w["batch_size"]},
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


def numpy_sgd(n, steps, seed=0, dtype="float32"):
    """Vectorised NumPy finite-sum SGD (batch 1) on quadratic_finite_sum; returns theta_T."""
    w = SGD
    f32 = np.dtype(dtype).type
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


def _numpy_gradient(rng, x, h, hc, a, g):
    """g <- the single-sample gradient h_i x - h_i c_i, i uniform (buffers a, g)."""
    i = rng.integers(0, h.size, size=x.size)
    np.take(h, i, out=g)
    g *= x
    np.take(hc, i, out=a)
    g -= a
    return g


def numpy_momentum(n, steps, seed=0, dtype="float64"):
    """Vectorised NumPy heavy-ball SGD (PyTorch: v <- mu v + g, theta <- theta - lr v, v_0
    = 0), batch 1, on quadratic_finite_sum; returns theta_T."""
    w = MOMENTUM
    rng = np.random.default_rng(seed)
    h = np.asarray(w["curvatures"], dtype=dtype)
    hc = h * np.asarray(w["centers"], dtype=dtype)
    x = np.full(n, w["theta0"], dtype=dtype)
    v, a, g = np.zeros(n, dtype=dtype), np.empty(n, dtype=dtype), np.empty(n, dtype=dtype)
    for _ in range(steps):
        _numpy_gradient(rng, x, h, hc, a, g)
        v *= w["momentum"]
        v += g
        np.multiply(v, w["lr"], out=a)
        x -= a
    return x


def numpy_adam(n, steps, seed=0, dtype="float64"):
    """Vectorised NumPy Adam (PyTorch's update, bias-corrected, m_0 = v_0 = 0), batch 1,
    on quadratic_finite_sum; returns theta_T."""
    w = ADAM
    rng = np.random.default_rng(seed)
    b1, b2 = w["beta1"], w["beta2"]
    h = np.asarray(w["curvatures"], dtype=dtype)
    hc = h * np.asarray(w["centers"], dtype=dtype)
    x = np.full(n, w["theta0"], dtype=dtype)
    m, v = np.zeros(n, dtype=dtype), np.zeros(n, dtype=dtype)
    a, g = np.empty(n, dtype=dtype), np.empty(n, dtype=dtype)
    for t in range(1, steps + 1):
        _numpy_gradient(rng, x, h, hc, a, g)
        m *= b1
        m += (1 - b1) * g
        g *= g
        v *= b2
        v += (1 - b2) * g
        np.multiply(v, 1.0 / (1 - b2 ** t), out=a)      # theta -= lr mhat / (sqrt(vhat) + eps)
        np.sqrt(a, out=a)
        a += w["eps"]
        np.divide(m, a, out=a)
        a *= w["lr"] / (1 - b1 ** t)
        x -= a
    return x


NUMPY_PEERS = {"langevin": numpy_langevin, "sgd": numpy_sgd, "momentum": numpy_momentum,
               "adam": numpy_adam}


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

    @functools.partial(jax.jit, static_argnums=(1, 2, 3))
    def sgd(key, n, steps, dtype="float32"):
        w = SGD
        f = jnp.dtype(dtype)
        lr = jnp.asarray(w["lr"], dtype=f)
        h = jnp.asarray(w["curvatures"], dtype=f)
        c = jnp.asarray(w["centers"], dtype=f)

        def step(carry, _):
            x, key = carry
            key, sub = jax.random.split(key)
            i = jax.random.randint(sub, (n,), 0, h.shape[0])
            x = x - lr * h[i] * (x - c[i])
            return (x, key), None

        x0 = jnp.full((n,), w["theta0"], dtype=f)
        (x, _), _ = jax.lax.scan(step, (x0, key), None, length=steps)
        return x

    def gradient(key, x, h, c):
        i = jax.random.randint(key, x.shape, 0, h.shape[0])
        return h[i] * (x - c[i])

    @functools.partial(jax.jit, static_argnums=(1, 2, 3))
    def momentum(key, n, steps, dtype="float64"):
        w = MOMENTUM
        f = jnp.dtype(dtype)
        h, c = jnp.asarray(w["curvatures"], dtype=f), jnp.asarray(w["centers"], dtype=f)

        def step(carry, _):
            x, v, key = carry
            key, sub = jax.random.split(key)
            v = w["momentum"] * v + gradient(sub, x, h, c)
            return (x - w["lr"] * v, v, key), None

        zero = jnp.zeros((n,), dtype=f)
        (x, _, _), _ = jax.lax.scan(step, (zero + w["theta0"], zero, key), None, length=steps)
        return x

    @functools.partial(jax.jit, static_argnums=(1, 2, 3))
    def adam(key, n, steps, dtype="float64"):
        w = ADAM
        f = jnp.dtype(dtype)
        h, c = jnp.asarray(w["curvatures"], dtype=f), jnp.asarray(w["centers"], dtype=f)
        b1, b2 = w["beta1"], w["beta2"]

        def step(carry, t):
            x, m, v, key = carry
            key, sub = jax.random.split(key)
            g = gradient(sub, x, h, c)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            update = (m / (1 - b1 ** t)) / (jnp.sqrt(v / (1 - b2 ** t)) + w["eps"])
            return (x - w["lr"] * update, m, v, key), None

        zero = jnp.zeros((n,), dtype=f)
        (x, _, _, _), _ = jax.lax.scan(step, (zero + w["theta0"], zero, zero, key),
                                       jnp.arange(1, steps + 1, dtype=f))
        return x

    _JAX_CACHE.update(langevin=langevin, sgd=sgd, momentum=momentum, adam=adam, jax=jax)
    return _JAX_CACHE


def _jax_peer(name):
    def run(n, steps, seed=0, **kwargs):
        fns = _jax_functions()
        if kwargs.get("dtype") == "float64":
            fns["jax"].config.update("jax_enable_x64", True)
        out = fns[name](fns["jax"].random.PRNGKey(seed), n, steps, **kwargs)
        return fns["jax"].block_until_ready(out)

    run.__name__ = f"jax_{name}"
    run.__doc__ = f"JAX peer of the {name} workload (jit + lax.scan; blocks until ready)."
    return run


jax_langevin = _jax_peer("langevin")
jax_sgd = _jax_peer("sgd")
jax_momentum = _jax_peer("momentum")
jax_adam = _jax_peer("adam")
JAX_PEERS = {"langevin": jax_langevin, "sgd": jax_sgd, "momentum": jax_momentum,
             "adam": jax_adam}


# ---------------------------------------------------------------- rooflines

_ROOF = {}


def _roofline_loops():
    """numba loops built from sgdsim's own Philox and transforms, without bookkeeping.

    64 lanes a task like sgdsim's CPU kernel; each trajectory draws one Philox block per
    four steps (the counter layout of docs/SPEC.md section 6) and keeps only its state.
    ``blocks``: the bare block loop (words folded by xor so none is optimised away);
    ``langevin``: four float32 normals a block (normal_pair32) for four Euler-Maruyama
    steps of the workload; ``sgd``: four sample indices a block (uniform_index, a select
    between the two samples) for four steps.
    """
    if _ROOF:
        return _ROOF
    import numba

    from sgdsim.kernels._philox import normal_pair32, step_block, uniform_index

    lanes = 64
    zero = np.uint64(0)

    @numba.njit(parallel=True, error_model="numpy")
    def blocks(n, count, k0, k1):
        out = np.zeros(n, dtype=np.uint64)
        for b in numba.prange(n // lanes):
            acc = np.zeros(lanes, dtype=np.uint64)
            for c in range(count):
                for lane in range(lanes):
                    w0, w1, w2, w3 = step_block(k0, k1, np.uint64(b * lanes + lane),
                                                np.uint64(c + 1), zero)
                    acc[lane] ^= w0 ^ w1 ^ w2 ^ w3
            out[b * lanes:(b + 1) * lanes] = acc
        return out

    w = LANGEVIN
    f32 = np.float32
    dt, amplitude = f32(w["dt"]), f32(np.sqrt(w["temperature"] * w["noise_var"] * w["dt"]))
    theta0 = f32(w["theta0"])

    @numba.njit(parallel=True, error_model="numpy")
    def langevin(n, steps, k0, k1):
        out = np.zeros(n, dtype=np.float32)
        for b in numba.prange(n // lanes):
            x = np.full(lanes, theta0)
            z = np.zeros((4, lanes), dtype=np.float32)
            for c in range(steps // 4):
                for lane in range(lanes):
                    w0, w1, w2, w3 = step_block(k0, k1, np.uint64(b * lanes + lane),
                                                np.uint64(c + 1), zero)
                    z[0, lane], z[1, lane] = normal_pair32(w0, w1)
                    z[2, lane], z[3, lane] = normal_pair32(w2, w3)
                for s in range(4):
                    for lane in range(lanes):
                        y = x[lane]
                        x[lane] = y - f32(4.0) * y * (y * y - f32(1.0)) * dt + amplitude * z[s, lane]
            out[b * lanes:(b + 1) * lanes] = x
        return out

    s = SGD
    lr = s["lr"]
    a0, a1 = lr * s["curvatures"][0], lr * s["curvatures"][1]
    b0, b1 = a0 * s["centers"][0], a1 * s["centers"][1]
    start = s["theta0"]

    def make_sgd(f):
        @numba.njit(parallel=True, error_model="numpy")
        def sgd(n, steps, k0, k1):
            out = np.zeros(n, dtype=f)
            for b in numba.prange(n // lanes):
                x = np.full(lanes, f(start))
                i = np.zeros((4, lanes), dtype=np.uint64)
                for c in range(steps // 4):
                    for lane in range(lanes):
                        w0, w1, w2, w3 = step_block(k0, k1, np.uint64(b * lanes + lane),
                                                    np.uint64(c + 1), zero)
                        i[0, lane], i[1, lane] = uniform_index(w0, 2), uniform_index(w1, 2)
                        i[2, lane], i[3, lane] = uniform_index(w2, 2), uniform_index(w3, 2)
                    for r in range(4):
                        for lane in range(lanes):
                            first = i[r, lane] == 0
                            a = f(a0) if first else f(a1)
                            shift = f(b0) if first else f(b1)
                            x[lane] = x[lane] - a * x[lane] + shift
                out[b * lanes:(b + 1) * lanes] = x
            return out
        return sgd

    _ROOF.update(blocks=blocks, langevin=langevin, sgd32=make_sgd(np.float32),
                 sgd64=make_sgd(np.float64))
    return _ROOF


def roofline(workload, dtype="float32"):
    """A compiled roofline loop ``fn(n, steps)`` of a workload ("blocks": the bare Philox
    loop, ``steps`` blocks per trajectory); compilation done here."""
    loops = _roofline_loops()
    name = {"blocks": "blocks", "langevin": "langevin"}.get(
        workload, "sgd64" if dtype == "float64" else "sgd32")
    loop = loops[name]
    key = np.uint64(12345)
    loop(1024, 8, key, key)

    def run(n, steps):
        return loop(n, steps, key, key)

    return run
