"""Experiment files: read the TOML, apply overrides, validate against `sim._schema`, fill defaults.

The result is the resolved experiment of docs/SPEC.md: a plain nested dict with the
tables run, model, dynamics, init, observables and sweep, every default filled in, every
float a Python float and every int a Python int. Bad input raises `ExperimentError`, whose
str() is one line naming the file and the key, e.g.
``exp.toml: [dynamics] lr must be > 0 (got -0.1)``.
"""
import copy
import difflib
import importlib
import math
import re
import tomllib

from sgdsim.kernels._dynamics import HEAVY_BALL_KEYS, SGD_FAMILY, aux_size, optimiser
from sgdsim.sim import _schema, _toml
from sgdsim.sim._schema import Key
from sgdsim.sim.observables import PLUGINS

__all__ = [
    "ExperimentError",
    "load_experiment",
    "loads_experiment",
    "resolve_experiment",
    "dumps_experiment",
]


class ExperimentError(Exception):
    """Bad input in an experiment: which file, which key, what is wrong.

    ``key`` is the dotted path of the offending key ("dynamics.lr",
    "observables.histogram.lo", "sweep.dynamics.lr"), or None when the fault is not
    in one key (a TOML syntax error, an unreadable file). str() renders it the way a
    user wrote it: ``exp.toml: [dynamics] lr must be > 0 (got -0.1)``.
    """

    def __init__(self, file, key, message):
        super().__init__(file, key, message)
        self.file = file
        self.key = key
        self.message = " ".join(str(message).splitlines())

    def __str__(self):
        where = _render_key(self.key)
        parts = ([f"{self.file}:"] if self.file else []) + ([where] if where else [])
        parts.append(self.message)
        return " ".join(parts)


def _render_key(key):
    """Show a dotted key path as it appears in the file: "[table] key" / '[sweep] "a.b"'."""
    if not key:
        return ""
    table, _, rest = key.partition(".")
    if not rest:
        return f"[{table}]"
    if table == "sweep":
        name, bracket, index = rest.partition("[")
        return f'[sweep] "{name}"' + (bracket + index if bracket else "")
    return f"[{table}] {rest}"


def _show(value):
    """Render a value as TOML would spell it, for messages ("got ...")."""
    try:
        return _toml.value(value)
    except TypeError:
        return repr(value)


def _bound(x):
    """Show a range bound; large powers of two as 2**k."""
    if isinstance(x, int) and x >= 2**16 and x & (x - 1) == 0:
        return f"2**{x.bit_length() - 1}"
    return _show(x)


def _known(names):
    return ", ".join(names) if names else "none"


def _suggest(name, names):
    close = difflib.get_close_matches(str(name), list(names), n=1)
    return f"did you mean {close[0]}? " if close else ""


# --------------------------------------------------------------------------- reading

def load_experiment(path, overrides=None):
    """Read, override, validate and resolve an experiment file.

    ``overrides`` maps dotted keys to values, e.g. ``{"run.trajectories": 10}`` (the
    command-line flags); they replace the file's values before validation. Returns the
    resolved experiment dict; raises `ExperimentError` on any bad input.
    """
    source = str(path)
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise ExperimentError(source, None, "no such experiment file") from None
    except IsADirectoryError:
        raise ExperimentError(source, None, "is a directory, not an experiment file") from None
    except OSError as exc:
        raise ExperimentError(source, None,
                              f"cannot read experiment file ({exc.strerror or exc})") from None
    return loads_experiment(data, source, overrides)


def loads_experiment(text, source="<string>", overrides=None):
    """Like `load_experiment`, from TOML text (str or UTF-8 bytes) instead of a file."""
    raw = _parse_toml(text, source)
    overrides = dict(overrides or {})
    raw = _apply_overrides(raw, overrides, source)
    try:
        return resolve_experiment(raw, source)
    except ExperimentError as exc:
        if exc.key in overrides:
            raise ExperimentError(exc.file, exc.key,
                                  exc.message + " (set on the command line)") from None
        raise


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _parse_toml(text, source):
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            line = bytes(text)[:exc.start].count(b"\n") + 1
            raise ExperimentError(source, None,
                                  f"line {line}: invalid TOML (not UTF-8 text)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        if match:
            where = f"line {match.group(1)}, column {match.group(2)}"
            message = message[:match.start()]
        else:
            message = message.replace("(at end of document)", "").strip()
            where = f"line {text.count(chr(10)) + 1} (end of file)"
        raise ExperimentError(source, None, f"{where}: invalid TOML ({message})") from None


def _apply_overrides(raw, overrides, source):
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        table, _, key = dotted.partition(".")
        if not key or table not in _schema.TABLES:
            raise ExperimentError(source, dotted, "is not an overridable key")
        section = raw.setdefault(table, {})
        if isinstance(section, dict):
            section[key] = value
    return raw


# --------------------------------------------------------------------------- resolving

def resolve_experiment(raw, source):
    """Validate a parsed experiment dict and return it with every default filled in.

    ``source`` names the file in error messages. See docs/SPEC.md for the result.
    """
    return _Resolver(source).experiment(raw)


class _Resolver:
    """Validation of one experiment; every error names ``source`` and the key."""

    def __init__(self, source):
        self.source = source

    def fail(self, key, message):
        raise ExperimentError(self.source, key, message)

    # ----- whole file

    def experiment(self, raw):
        if not isinstance(raw, dict):
            self.fail(None, f"must be a TOML document of tables (got {_show(raw)})")
        for name, section in raw.items():
            if name not in _schema.TABLES:
                if isinstance(section, dict):
                    self.fail(name, f"is not a known table ({_suggest(name, _schema.TABLES)}"
                                    f"known: {_known(_schema.TABLES)})")
                self.fail(name, f"is not a known table; top-level keys belong in a table "
                                f"({_suggest(name, _schema.TABLES)}known: "
                                f"{_known(_schema.TABLES)})")
            if not isinstance(section, dict):
                self.fail(name, f"must be a table (got {name} = {_show(section)})")

        sweep = self.flatten_sweep(raw.get("sweep", {}))
        swept = {}
        for dotted in sweep:
            table, _, key = dotted.partition(".")
            swept.setdefault(table, set()).add(key)

        run = self.table(_schema.RUN, raw.get("run", {}), "run", "[run]")
        model = self.model(raw.get("model"), swept.get("model", set()))
        dynamics = self.dynamics(raw.get("dynamics"), swept.get("dynamics", set()))
        init = self.init(raw.get("init"), swept.get("init", set()))
        observables = self.observables(raw.get("observables", {}), run)
        sweep = self.sweep(sweep, {"model": model, "dynamics": dynamics, "init": init})
        self.compatible(model, dynamics, init, observables)
        self.optimiser(dynamics, observables, sweep)
        resolved = {
            "run": run,
            "model": model,
            "dynamics": dynamics,
            "init": init,
            "observables": observables,
            "sweep": sweep,
        }
        if "splitting" in raw:
            if "trajectories" in (raw.get("run") or {}):
                self.fail("run.trajectories", "is not used by a [splitting] run (it runs "
                                              "splitting.replicas x splitting.runs paths)")
            resolved["splitting"] = self.splitting(raw["splitting"], run, model, observables)
        return resolved

    def splitting(self, raw, run, model, observables):
        """[splitting]: its keys and the rules across them (SPLITTING's notes)."""
        spl = self.table(_schema.SPLITTING.keys, raw, "splitting", "[splitting]")
        if not spl["a"] < spl["b"]:
            self.fail("splitting.b", f"must be > splitting.a = {spl['a']:g} (got {spl['b']:g})")
        if spl["kill"] >= spl["replicas"]:
            self.fail("splitting.kill", f"must be < splitting.replicas = {spl['replicas']} "
                                        f"(got {spl['kill']})")
        dim, _ = _schema.state_dimension(model)
        score = spl["score"]
        if score.startswith("-"):        # a built-in score negated: escape towards lower values
            if not _schema.builtin_score(score):
                self.fail("splitting.score", 'a leading "-" negates "theta", "coordinate:K" '
                                             f'or "norm" (got {_show(spl["score"])})')
            score = score[1:]
        if score == "theta" and dim != 1:
            self.fail("splitting.score", f'"theta" needs a 1-D state (d = {dim}): use '
                                         '"coordinate:K", "norm" or a function')
        if score.startswith("coordinate:"):
            index = score.split(":", 1)[1]
            if not index.isdigit() or int(index) >= dim:
                self.fail("splitting.score", f"must be coordinate:K with 0 <= K < {dim} "
                                             f"(got {_show(score)})")
        elif score not in ("theta", "norm"):
            module_name, _, attr = score.partition(":")
            if not module_name or not attr:
                self.fail("splitting.score", 'must be "theta", "coordinate:K", "norm" or '
                                             f'"package.module:function" (got {_show(score)})')
            try:
                target = importlib.import_module(module_name)
            except ImportError as exc:
                self.fail("splitting.score", f"cannot import {module_name!r}: {exc}")
            if not callable(getattr(target, attr, None)):
                self.fail("splitting.score", f"{module_name!r} has no function {attr!r}")
        if observables:
            self.fail("observables", "is not used by a [splitting] run (it records "
                                     "/splitting only): remove it")
        return spl

    # ----- generic values and tables

    def table(self, keys, raw, path, owner, swept=frozenset(), optional=(), extra=()):
        """Check a table against ``keys``: no unknown keys, required present, defaults filled.

        ``swept`` keys may be missing (the sweep supplies them); ``optional`` keys are left
        out of the result when missing (one-of groups); ``extra`` names keys handled by the
        caller (such as ``name``).
        """
        known = list(extra) + list(keys)
        for name in raw:
            if name not in keys and name not in extra:
                self.fail(f"{path}.{name}",
                          f"is not a key of {owner} ({_suggest(name, known)}"
                          f"known: {_known(known)})")
        resolved = {}
        for name, key in keys.items():
            key_path = f"{path}.{name}"
            if name in raw:
                resolved[name] = self.value(key, raw[name], key_path)
            elif key.required:
                if name in swept or name in optional:
                    continue
                self.fail(key_path, f"is required by {owner}")
            else:
                resolved[name] = copy.deepcopy(key.default)
        return resolved

    def value(self, key, value, path):
        """Check one value against its `Key`; return it normalised (ints to float etc.)."""
        kind = key.type
        if kind == "int":
            checked = self.integer(value, path)
        elif kind == "float":
            checked = self.number(value, path)
        elif kind == "bool":
            if not isinstance(value, bool):
                self.fail(path, f"must be true or false (got {_show(value)})")
            return value
        elif kind == "str":
            if not isinstance(value, str):
                self.fail(path, f"must be a string (got {_show(value)})")
            if key.choices and value not in key.choices:
                choices = ", ".join(_show(c) for c in key.choices)
                self.fail(path, f"must be one of {choices} (got {_show(value)})")
            return value
        elif kind == "floats":
            return self.number_list(key, value, path)
        elif kind == "coord":
            if value == "norm":
                return value
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self.fail(path, f'must be a coordinate index >= 0 or "norm" (got {_show(value)})')
            return value
        elif kind == "table":
            if not isinstance(value, dict):
                self.fail(path, f"must be a table {{{', '.join(key.keys)}}} "
                                f"(got {_show(value)})")
            return self.table(key.keys, value, path, path.partition(".")[2])
        elif kind == "number_or_table":
            if isinstance(value, dict):
                return self.table(key.keys, value, path, path.partition(".")[2])
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(path, f"must be a number or a table {{{', '.join(key.keys)}}} "
                                f"(got {_show(value)})")
            checked = self.number(value, path)
        else:  # pragma: no cover - a schema error, not bad input
            raise ValueError(f"unknown key type {kind!r} in the schema")
        self.check_range(key, checked, path)
        return checked

    def integer(self, value, path):
        if isinstance(value, bool):
            self.fail(path, f"must be an integer, not a boolean (got {_show(value)})")
        if not isinstance(value, int):
            self.fail(path, f"must be an integer (got {_show(value)})")
        return int(value)

    def number(self, value, path):
        if isinstance(value, bool):
            self.fail(path, f"must be a number, not a boolean (got {_show(value)})")
        if not isinstance(value, (int, float)):
            self.fail(path, f"must be a number (got {_show(value)})")
        try:
            number = float(value)
        except OverflowError:
            self.fail(path, f"is too large for a float (got {_show(value)})")
        if not math.isfinite(number):
            self.fail(path, f"must be a finite number (got {_show(value)})")
        return number

    def number_list(self, key, value, path):
        if not isinstance(value, list):
            self.fail(path, f"must be a list of numbers (got {_show(value)})")
        if len(value) < key.min_len:
            self.fail(path, "must not be empty" if key.min_len == 1 else
                            f"must have at least {key.min_len} entries (got {len(value)})")
        if key.max_len and len(value) > key.max_len:
            self.fail(path, f"must have at most {key.max_len} entries (got {len(value)})")
        numbers = [self.number(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if key.increasing:
            for i in range(1, len(numbers)):
                if not numbers[i] > numbers[i - 1]:
                    self.fail(path, f"must be strictly increasing "
                                    f"(got {_show(numbers[i - 1])} then {_show(numbers[i])})")
        return numbers

    def check_range(self, key, number, path):
        if key.minimum is not None and key.below is not None:
            if not key.minimum <= number < key.below:
                self.fail(path, f"must be in [{_bound(key.minimum)}, {_bound(key.below)}) "
                                f"(got {_show(number)})")
            return
        if key.minimum is not None and not number >= key.minimum:
            self.fail(path, f"must be >= {_bound(key.minimum)} (got {_show(number)})")
        if key.above is not None and not number > key.above:
            self.fail(path, f"must be > {_bound(key.above)} (got {_show(number)})")
        if key.below is not None and not number < key.below:
            self.fail(path, f"must be < {_bound(key.below)} (got {_show(number)})")

    def name(self, raw, table, known):
        if raw is None or "name" not in raw:
            example = next(iter(known))
            self.fail(f"{table}.name", f'is required (for example name = "{example}")')
        name = raw["name"]
        if not isinstance(name, str):
            self.fail(f"{table}.name", f"must be a string (got {_show(name)})")
        return name

    # ----- tables of the experiment

    def model(self, raw, swept):
        name = self.name(raw, "model", _schema.MODELS)
        if ":" in name:
            return self.user_model(name, raw)
        if name not in _schema.MODELS:
            self.fail("model.name",
                      f'{_show(name)} is not a built-in model nor "package.module:object" '
                      f"({_suggest(name, _schema.MODELS)}built-ins: {_known(_schema.MODELS)})")
        entry = _schema.MODELS[name]
        rest = {k: v for k, v in raw.items() if k != "name"}
        model = {"name": name}
        model.update(self.table(entry.keys, rest, "model", f'model "{name}"', swept,
                                extra=("name",)))
        if name == "coupled_quadratic":
            w_star = model["w_star"]
            if w_star is None:
                model["w_star"] = [0.0] * model["dim"]
            elif len(w_star) not in (1, model["dim"]):
                self.fail("model.w_star", f"must have 1 or dim = {model['dim']} entries "
                                          f"(got {len(w_star)})")
            elif len(w_star) == 1:
                model["w_star"] = w_star * model["dim"]
        if name == "linear_regression" and "features" in model:
            eig = model["eigenvalues"]
            if eig is None:
                model["eigenvalues"] = [1.0] * model["features"]
            elif len(eig) != model["features"]:
                self.fail("model.eigenvalues", f"must have features = {model['features']} "
                                               f"entries (got {len(eig)})")
            elif min(eig) <= 0:
                self.fail("model.eigenvalues", f"must all be > 0 (got {_show(min(eig))})")
        if name == "quadratic_finite_sum" and "curvatures" in model:
            if model["centers"] is None:
                model["centers"] = [0.0] * len(model["curvatures"])
            elif len(model["centers"]) != len(model["curvatures"]):
                self.fail("model.centers",
                          f"must have as many entries as curvatures "
                          f"(got {len(model['centers'])}, curvatures has "
                          f"{len(model['curvatures'])})")
        return model

    def user_model(self, name, raw):
        module_name, _, attribute = name.partition(":")
        if not module_name or not attribute.isidentifier():
            self.fail("model.name",
                      f'must be a built-in model or "package.module:object" (got {_show(name)})')
        try:
            target = importlib.import_module(module_name)
        except Exception as exc:  # any failure to import is the user's module, not ours
            self.fail("model.name", f"cannot import module {module_name} of user model "
                                    f"{_show(name)} ({type(exc).__name__}: {exc})")
        try:
            target = getattr(target, attribute)
        except AttributeError:
            self.fail("model.name",
                      f"user model {_show(name)}: {module_name} has no attribute {attribute}")
        if not callable(getattr(target, "gradient", None)):
            self.fail("model.name",
                      f"user model {_show(name)} has no callable gradient(theta)")
        # Every other key belongs to the user's object: passed through untouched.
        return {"name": name, **{k: copy.deepcopy(v) for k, v in raw.items() if k != "name"}}

    def compatible(self, model, dynamics, init, observables):
        """Rules across tables: model vs dynamics, state dimension vs init and coordinates."""
        name, dyn = model["name"], dynamics["name"]
        two_scale_dynamics = dyn in ("two_time_scale", "two_time_scale_sde")
        if two_scale_dynamics and name not in _schema.TWO_SCALE_MODELS:
            self.fail("dynamics.name", f"{_show(dyn)} needs a two-time-scale model "
                                       f"({_known(_schema.TWO_SCALE_MODELS)}; got {_show(name)})")
        if name in _schema.TWO_SCALE_MODELS and dyn in SGD_FAMILY:
            self.fail("dynamics.name", f"model {_show(name)} has no finite sum for {dyn}: use "
                                       f"two_time_scale (SGD on f(x, eps y)), gd or langevin")
        dim, _ = _schema.state_dimension(model)
        if "vector" in init and len(init["vector"]) != dim:
            self.fail("init.vector", f"must have {dim} entries, one per coordinate "
                                     f"(got {len(init['vector'])})")
        watched = {}
        for obs in ("first_passage", "divergence", "occupancy"):
            if obs in observables:
                coordinate = observables[obs]["coordinate"]
                if coordinate != "norm" and coordinate >= dim:
                    self.fail(f"observables.{obs}.coordinate",
                              f"must be < {dim}, the state dimension (got {coordinate})")
                watched[obs] = coordinate
        if len(set(map(str, watched.values()))) > 1:
            first, second = list(watched)[:2]
            self.fail(f"observables.{second}.coordinate",
                      f"must equal observables.{first}.coordinate: one coordinate is watched "
                      f"(got {_show(watched[second])} and {_show(watched[first])})")

    def optimiser(self, dynamics, observables, sweep):
        """Rules of the optimisers (SGD with momentum, adam, adamw)."""
        name = dynamics["name"]
        if name == "sgd" and dynamics.get("nesterov"):
            momenta = sweep.get("dynamics.momentum", [dynamics.get("momentum")])
            if not all(mu is not None and mu > 0 for mu in momenta):
                self.fail("dynamics.nesterov", "needs momentum > 0 at every sweep point "
                                               f"(got momentum = {_show(momenta[0])})")
        buffers = aux_size(optimiser(dynamics), 1) > 0
        if dynamics.get("record_buffers") and not buffers:
            self.fail("dynamics.record_buffers", "plain sgd keeps no buffer: give momentum, "
                                                 "nesterov or weight_decay, or use adam/adamw")
        if buffers and "lyapunov" in observables:
            self.fail("observables.lyapunov", f"is not available with the buffers of {name} "
                                              f"(momentum, nesterov, weight_decay, adam): the "
                                              f"tangent covers theta only")

    def dynamics(self, raw, swept):
        name = self.name(raw, "dynamics", _schema.DYNAMICS)
        if name not in _schema.DYNAMICS:
            self.fail("dynamics.name",
                      f"{_show(name)} is not a known dynamics "
                      f"({_suggest(name, _schema.DYNAMICS)}known: {_known(_schema.DYNAMICS)})")
        entry = _schema.DYNAMICS[name]
        rest = {k: v for k, v in raw.items() if k != "name"}
        dynamics = {"name": name}
        dynamics.update(self.table(entry.keys, rest, "dynamics", f'dynamics "{name}"', swept,
                                   extra=("name",)))
        if name == "sgd":
            # Given or not is what counts (the velocity buffer): leave out those not given.
            for key in HEAVY_BALL_KEYS:
                if dynamics[key] is None:
                    del dynamics[key]
        return dynamics

    def init(self, raw, swept):
        entry = _schema.INIT
        if raw is None:
            return {} if "value" in swept else dict(_schema.INIT_DEFAULT)
        given = [name for name in entry.one_of if name in raw]
        for name in raw:
            if name not in entry.keys:
                self.fail(f"init.{name}", f"is not a key of [init] ({_suggest(name, entry.keys)}"
                                          f"known: {_known(entry.keys)})")
        if len(given) > 1:
            self.fail(f"init.{given[1]}",
                      f"cannot be combined with {given[0]}: [init] takes exactly one of "
                      f"value, vector, normal, uniform")
        if not given:
            if "value" in swept:
                return {}
            self.fail("init", "needs exactly one of value, vector, normal, uniform (got none)")
        init = self.table(entry.keys, raw, "init", "[init]", optional=entry.one_of)
        uniform = init.get("uniform")
        if uniform is not None and not uniform["low"] < uniform["high"]:
            self.fail("init.uniform", f"low must be < high (got low = {_show(uniform['low'])}, "
                                      f"high = {_show(uniform['high'])})")
        return init

    def observables(self, raw, run):
        observables = {}
        for name, spec in raw.items():
            path = f"observables.{name}"
            if name not in _schema.OBSERVABLES:
                self.fail(path, f"is not a known observable "
                                f"({_suggest(name, _schema.OBSERVABLES)}"
                                f"known: {_known(_schema.OBSERVABLES)})")
            if not isinstance(spec, dict):
                self.fail(path, f"must be a table, e.g. {name} = {{ ... }} or {name} = {{}} "
                                f"(got {_show(spec)})")
            entry = _schema.OBSERVABLES[name]
            if entry.one_of:
                given = [key for key in entry.one_of if key in spec]
                if len(given) > 1:
                    self.fail(f"{path}.{given[1]}",
                              f"cannot be combined with {given[0]}: {name} takes exactly one "
                              f"of {' or '.join(entry.one_of)}")
            observable = self.table(entry.keys, spec, path, name, optional=entry.one_of)
            if entry.one_of and not any(key in observable for key in entry.one_of):
                self.fail(path, f"needs exactly one of {' or '.join(entry.one_of)}")
            if name == "histogram":
                if not observable["lo"] < observable["hi"]:
                    self.fail(path, f"lo must be < hi (got lo = {_show(observable['lo'])}, "
                                    f"hi = {_show(observable['hi'])})")
                if observable["burn_in"] > run["steps"]:
                    self.fail(f"{path}.burn_in",
                              f"must be <= run.steps = {run['steps']} so that some step is "
                              f"counted (got {observable['burn_in']})")
            if name == "paths" and observable["count"] > run["trajectories"]:
                self.fail(f"{path}.count", f"must be <= run.trajectories = "
                                           f"{run['trajectories']} (got {observable['count']})")
            plugin = PLUGINS.get(name)
            problem = plugin.validate(observable, run) if plugin and plugin.validate else None
            if problem is not None:
                self.fail(f"{path}.{problem[0]}", problem[1])
            observables[name] = observable
        return observables

    # ----- sweep

    def flatten_sweep(self, raw, prefix=""):
        """Sweep keys as dotted strings: "dynamics.lr" = [...] and dynamics.lr = [...] alike."""
        flat = {}
        for name, values in raw.items():
            dotted = prefix + name
            if isinstance(values, dict):
                nested = self.flatten_sweep(values, dotted + ".")
            else:
                nested = {dotted: values}
            for key, item in nested.items():
                if key in flat:
                    self.fail(f"sweep.{key}", "is given twice")
                flat[key] = item
        return flat

    def sweep(self, flat, tables):
        sweep = {}
        for dotted, values in flat.items():
            path = f"sweep.{dotted}"
            spec = self.sweep_key(dotted, tables, path)
            if not isinstance(values, list) or not values:
                self.fail(path, f"must be a non-empty list of values (got {_show(values)})")
            checked = [self.value(spec, item, f"{path}[{i}]") for i, item in enumerate(values)]
            table, _, key = dotted.partition(".")
            # A swept key may be left out of its own table: the first value stands there, so
            # the resolved table is complete (and equals sweep point 0 for that key).
            tables[table].setdefault(key, checked[0])
            sweep[dotted] = checked
        return sweep

    def sweep_key(self, dotted, tables, path):
        """The `Key` that every value of sweep key ``dotted`` is checked against."""
        table, _, key = dotted.partition(".")
        if table == "run" and key:
            if key == "seed":
                self.fail(path, "cannot be swept: the seed is the Philox key of the whole run "
                                "(for more samples use more trajectories)")
            self.fail(path, "cannot be swept: [run] keys are fixed for a run "
                            "(trajectories and steps set the dataset shapes; dtype, backend "
                            "and chunk choose the kernel, not the physics)")
        if table not in ("model", "dynamics", "init") or not key:
            self.fail(path, 'is not a sweepable key: use "model.<key>", "dynamics.<key>" '
                            'or "init.value"')
        if key == "name":
            self.fail(path, f"cannot be swept: one run has one {table}")
        if table == "init":
            if key != "value":
                self.fail(path, 'cannot be swept: of [init] only "init.value" can be')
            init = tables["init"]
            if init and "value" not in init:
                self.fail(path, f"cannot be swept: [init] uses {next(iter(init))}, not value")
            return _schema.INIT.keys["value"]
        owner = tables[table]
        name = owner["name"]
        if table == "model" and ":" in name:
            self.fail(path, f"cannot be swept: user model {_show(name)} receives only theta, "
                            f"so its [model] keys cannot change between sweep points")
        entries = _schema.MODELS if table == "model" else _schema.DYNAMICS
        keys = entries[name].keys
        if key not in keys:
            self.fail(path, f"names no key of {table} {_show(name)} "
                            f"({_suggest(key, keys)}known: {_known(keys)})")
        spec = keys[key]
        if spec.type not in _schema.NUMERIC_TYPES:
            self.fail(path, f"cannot be swept: only numeric keys can be "
                            f"({table}.{key} is a {_TYPE_WORDS[spec.type]})")
        if spec.type == "number_or_table":
            # Swept values are numbers only: /sweep/<key> stores one float per point.
            return Key("float", minimum=spec.minimum, above=spec.above, below=spec.below)
        return spec


_TYPE_WORDS = {
    "str": "string",
    "bool": "boolean",
    "floats": "list",
    "table": "table",
}


# --------------------------------------------------------------------------- writing

def dumps_experiment(experiment):
    """The resolved experiment as TOML text (stored in the run file); `loads_experiment` of
    it gives it back."""
    tables = {table: experiment.get(table) or {} for table in _schema.TABLES
              if table not in ("sweep", "splitting") or experiment.get(table)}
    if "splitting" in tables:       # its paths are replicas x runs, not [run] trajectories
        tables["run"] = {k: v for k, v in tables["run"].items() if k != "trajectories"}
    text = _toml.dumps(tables)
    tomllib.loads(text)  # what we store must read back
    return text
