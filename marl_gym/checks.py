"""Checking the values users give marl-gym (graph files, memory systems, env arguments) in one way.

A loader checks every field it reads through a `Fields` checker, which knows where the values come from
and which error to raise::

    at = Fields(WorkloadError, "resnet50.json: node 3 ('conv1')")
    flops = at.integer("flops", raw["flops"], minimum=0)

Each check covers the type, finiteness, range and integrality of one value and returns it normalised
(an `int`, a `float`, a `str`), or raises the caller's error (a subclass of `InputError`, itself a
`ValueError`) with a message of one shape::

    resnet50.json: node 3 ('conv1'): flops must be an integer >= 0, got inf

So bad input is refused where it enters, with the file, the object, the field, the bad value and what
was expected, instead of surfacing later as a ZeroDivisionError, an OverflowError or a numpy error deep
inside the model. Bools are not numbers here, strings are not numbers (``"32"`` is refused, with a hint),
and fractional sizes are not truncated. This module is at the bottom of the layers: every package may
import it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

INT64_MAX = 2**63 - 1
"""Largest integer accepted for a count or a size: numpy's int64 holds it, a float64 holds it approximately."""

_REPR_CHARS = 80


class InputError(ValueError):
    """Bad input given to marl-gym (a graph, a memory system, an env argument): the base of the library's
    own errors for it (`WorkloadError`, `MemorySystemError`, `DeviceError`, `EnvArgumentError`)."""


def describe(value: Any) -> str:
    """A short, unambiguous rendering of a bad value for an error message (type named where it helps)."""
    if isinstance(value, (bool, np.bool_)):
        return f"{value!r} (a bool)"
    if isinstance(value, str):
        text = repr(value) if len(value) <= _REPR_CHARS else repr(value[:_REPR_CHARS]) + "..."
        try:
            float(value)
        except ValueError:
            return f"the string {text}"
        return f"the string {text} (write numbers without quotes)"
    if value is None:
        return "None"
    if isinstance(value, (int, float, np.integer, np.floating)):
        text = repr(value.item() if isinstance(value, np.generic) else value)
        return text if len(text) <= _REPR_CHARS else f"an integer of {len(str(value))} digits"
    text = repr(value)
    if len(text) > _REPR_CHARS:
        text = text[:_REPR_CHARS] + "..."
    return f"{type(value).__name__} {text}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _bound(x: float) -> str:
    if x == INT64_MAX:
        return "2**63 - 1"
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _bounds_text(minimum: float | None, maximum: float | None, min_open: bool = False, max_open: bool = False) -> str:
    """`` >= 0 and <= 1`` style text of a range, empty when unbounded."""
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {_bound(minimum)}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {_bound(maximum)}")
    return (" " + " and ".join(parts)) if parts else ""


@dataclass(frozen=True)
class Fields:
    """Checks the fields of one object read from one place, raising `error` with `where` in every message.

    `where` names the source and the object (``"net.json: node 3 ('conv1')"``, ``"system 'my-box'"``);
    empty for arguments, whose names say it all. `whole_floats` accepts ``32.0`` where an integer is
    expected (JSON and TOML writers emit those); a fraction is always refused.
    """

    error: type[ValueError] = InputError
    where: str = ""
    whole_floats: bool = True

    def within(self, where: str) -> Fields:
        """The same checker for a part of the object (``node 3`` of a file, the ``slow`` device of a system)."""
        joined = f"{self.where}: {where}" if self.where and where else self.where or where
        return Fields(self.error, joined, self.whole_floats)

    def fail(self, field: str, expected: str, value: Any, note: str = "", hint: str = "") -> NoReturn:
        """Raise `error`: ``<where>: <field> must be <expected>, got <value>[ (<note>)][; <hint>]``."""
        prefix = f"{self.where}: " if self.where else ""
        got = describe(value) + (f" ({note})" if note else "")
        raise self.error(f"{prefix}{field} must be {expected}, got {got}{'; ' + hint if hint else ''}")

    def problem(self, message: str) -> NoReturn:
        """Raise `error` with a message of its own (about the object as a whole), prefixed by `where`."""
        raise self.error(f"{self.where}: {message}" if self.where else message)

    # ---------------------------------------------------------------- numbers
    def integer(self, field: str, value: Any, minimum: int | None = None, maximum: int = INT64_MAX) -> int:
        """An integer in [minimum, maximum] (int or numpy integer; a whole float if `whole_floats`).

        The implicit upper bound 2**63 - 1 is named in the message only to a value beyond it."""
        shown_max = None if maximum == INT64_MAX else maximum
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            number = int(value)
        elif (
            self.whole_floats
            and isinstance(value, (float, np.floating))
            and math.isfinite(value)
            and float(value).is_integer()
        ):
            number = int(value)
        else:
            fraction = isinstance(value, (float, np.floating)) and math.isfinite(value)
            self.fail(
                field, "an integer" + _bounds_text(minimum, shown_max), value, note="not a whole number" * fraction
            )
        if minimum is not None and number < minimum:
            self.fail(field, "an integer" + _bounds_text(minimum, shown_max), value)
        if number > maximum:
            self.fail(field, "an integer" + _bounds_text(minimum, maximum), value)
        return number

    def number(
        self,
        field: str,
        value: Any,
        minimum: float | None = None,
        maximum: float | None = None,
        *,
        min_open: bool = False,
        max_open: bool = False,
    ) -> float:
        """A finite real number in the given range (`min_open`/`max_open` exclude the bound itself)."""
        expected = "a finite number" + _bounds_text(minimum, maximum, min_open, max_open)
        if not _is_number(value):
            self.fail(field, expected, value)
        try:
            number = float(value)
        except OverflowError:  # a Python int beyond the float range
            self.fail(field, expected, value)
        if not math.isfinite(number):
            self.fail(field, expected, value)
        if minimum is not None and (number < minimum or (min_open and number == minimum)):
            self.fail(field, expected, value)
        if maximum is not None and (number > maximum or (max_open and number == maximum)):
            self.fail(field, expected, value)
        return number

    # ------------------------------------------------------------------ text
    def text(self, field: str, value: Any, allow_empty: bool = False) -> str:
        """A string (non-empty unless `allow_empty`)."""
        if not isinstance(value, str) or (not allow_empty and not value):
            self.fail(field, "a string" if allow_empty else "a non-empty string", value)
        return value

    def optional_text(self, field: str, value: Any) -> str | None:
        """None or a non-empty string."""
        return None if value is None else self.text(field, value)

    def choice(self, field: str, value: Any, choices: Collection[str]) -> str:
        """One of `choices` (strings)."""
        if not isinstance(value, str) or value not in choices:
            self.fail(field, "one of " + ", ".join(repr(c) for c in choices), value)
        return value

    # ------------------------------------------------------------ containers
    def mapping(self, field: str, value: Any) -> Mapping[Any, Any]:
        """A mapping (a JSON object, a TOML table, a dict)."""
        if not isinstance(value, Mapping):
            self.fail(field, "an object of named fields (a dict)", value)
        return value

    def sequence(self, field: str, value: Any, length: int | None = None) -> list[Any]:
        """A list or tuple (not a string, a mapping or a set), of exactly `length` items when given."""
        if not isinstance(value, (list, tuple)):
            self.fail(field, "a list" + (f" of {length} items" if length is not None else ""), value)
        if length is not None and len(value) != length:
            self.fail(field, f"a list of {length} items", value)
        return list(value)

    def known_keys(self, data: Mapping[Any, Any], known: Collection[str], what: str) -> None:
        """Refuse keys of `data` that are not in `known`, listing the known ones."""
        unknown = [k for k in data if k not in known]
        if unknown:
            self.problem(f"unknown {what} field(s) {sorted(map(str, unknown))}; known fields: {sorted(known)}")
