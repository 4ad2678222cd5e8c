"""TOML text from Python values: the one TOML writer of sgdsim.

The standard library reads TOML (``tomllib``) but does not write it. Everything
sim writes as TOML goes through here: the resolved experiment stored in a run
file (``_config.dumps_experiment``) and the values that error messages and
``sgdsim models`` quote back to the user (``_config._show``). Only what an
experiment file holds is written: tables of booleans, numbers, strings,
dates and times, arrays and inline tables. TOML has no null, so a key whose
value is None is left out of its table.
"""
import datetime
import math
import numbers
import re

__all__ = ["dumps", "key", "value"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def key(name):
    """A key as TOML spells it: bare when it may be, else a quoted string ("dynamics.lr")."""
    name = str(name)
    return name if _BARE_KEY.fullmatch(name) else _string(name)


def _string(text):
    """A basic string: quotes, backslashes and control characters escaped, the rest as is."""
    chars = []
    for ch in text:
        if ch in _ESCAPES:
            chars.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            chars.append(f"\\u{ord(ch):04x}")
        else:
            chars.append(ch)
    return '"' + "".join(chars) + '"'


def value(item):
    """One value as TOML spells it; TypeError for what TOML cannot hold (None, objects)."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, numbers.Integral):
        return str(int(item))
    if isinstance(item, numbers.Real):
        number = float(item)
        if math.isnan(number):
            return "nan"
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        return repr(number)
    if isinstance(item, str):
        return _string(item)
    if isinstance(item, (datetime.date, datetime.time)):
        return item.isoformat()
    if isinstance(item, dict):
        pairs = [f"{key(k)} = {value(v)}" for k, v in item.items() if v is not None]
        return "{ " + ", ".join(pairs) + " }" if pairs else "{}"
    if isinstance(item, (list, tuple)):
        return "[" + ", ".join(value(v) for v in item) + "]"
    raise TypeError(f"TOML has no value for {item!r}")


def dumps(tables):
    """A document of ``tables`` (name -> dict of keys), each written as ``[name]`` then one
    ``key = value`` line per key, in the order given, a blank line after each table."""
    lines = []
    for name, body in tables.items():
        lines.append(f"[{key(name)}]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in body.items() if v is not None)
        lines.append("")
    return "\n".join(lines)
