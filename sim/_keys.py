"""The building blocks of the experiment-file schema: a key (type, default, range) and a
named entry (a model, dynamics or observable with its keys).

Kept apart from `sim._schema` so that an observable plug-in (`sim.observables`) can
declare its own keys with them.
"""
from dataclasses import dataclass, field

__all__ = ["REQUIRED", "NUMERIC_TYPES", "Key", "Entry"]


class _Required:
    """Sentinel default of a key that must be given."""

    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()

# Key.type values and what they accept:
#   "int"     an integer (a boolean is not an integer)
#   "float"   a finite number; integers are accepted and stored as float
#   "bool"    true or false
#   "str"     a string, one of `choices` when given
#   "floats"  a list of finite numbers, stored as floats
#   "number_or_table"  a finite number, or a table of `keys` (noise_var)
#   "table"   a table of `keys`
#   "coord"   a coordinate index >= 0, or the string "norm"
NUMERIC_TYPES = ("int", "float", "number_or_table")


@dataclass(frozen=True)
class Key:
    """One key of an experiment table: its type, default and allowed range."""

    type: str
    default: object = REQUIRED
    doc: str = ""
    choices: tuple = ()
    minimum: object = None      # value >= minimum
    above: object = None        # value > above
    below: object = None        # value < below
    min_len: int = 0            # "floats": at least this many entries
    max_len: int = 0            # "floats": at most this many entries (0 = no limit)
    increasing: bool = False    # "floats": strictly increasing
    keys: dict = field(default_factory=dict)   # "table" / "number_or_table" sub-keys
    default_doc: str = ""       # how `sgdsim models` shows a computed default

    @property
    def required(self):
        return self.default is REQUIRED


@dataclass(frozen=True)
class Entry:
    """A named built-in (model, dynamics or observable) and its keys."""

    doc: str
    keys: dict
    one_of: tuple = ()          # exactly one of these keys must be given
    notes: tuple = ()
