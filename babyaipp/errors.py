"""Errors raised for bad user input.

Every error names the bad value and the valid choices, so a researcher can fix a typo without
reading the source. The CLI prints these as one line (no traceback) and exits with status 2.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any


class BabyAIPPError(Exception):
    """Base class of the errors this package raises for bad input or bad files."""


class InvalidChoiceError(BabyAIPPError, ValueError):
    """A value is not one of a fixed set of choices."""

    def __init__(self, what: str, value: Any, choices: Iterable[Any]):
        self.what, self.value, self.choices = what, value, list(choices)
        shown = ", ".join(map(str, self.choices))
        super().__init__(f"unknown {what} {value!r}; valid choices: {shown}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its message and attributes, so it survives a worker process (pickle calls
        # ``cls(*args)`` by default, and args hold only the message).
        return (_restore_error, (type(self), str(self), dict(self.__dict__)))


def _restore_error(cls: type[Exception], message: str, state: dict[str, Any]) -> Exception:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class UnknownKeywordError(InvalidChoiceError, TypeError):
    """A keyword argument the callee does not take.

    Also a ``TypeError``, as Python raises for an unexpected keyword, so clients that probe which
    keywords an env accepts by catching ``TypeError`` (TorchRL's ``GymEnv``) work.
    """

    def __init__(self, what: str, *value_and_choices: Any):
        if len(value_and_choices) != 2:  # rebuilt from its message alone, as gym.make does: type(e)(message)
            Exception.__init__(self, what, *value_and_choices)
            self.what, self.value, self.choices = what, None, []
            return
        value, choices = value_and_choices
        self.what, self.value, self.choices = what, value, list(choices)
        # Python's own wording, which callers match ("unexpected keyword argument 'frameskip'").
        shown = ", ".join(map(str, self.choices))
        Exception.__init__(self, f"{what} got an unexpected keyword argument {value!r}; valid choices: {shown}")


class ConfigError(BabyAIPPError, ValueError):
    """A hyperparameter is outside its valid range."""


class CheckpointError(BabyAIPPError, FileNotFoundError):
    """A checkpoint or result directory is missing, incomplete or corrupt."""


def check_choice(what: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise :class:`InvalidChoiceError`."""
    choices = list(choices)
    if value not in choices:
        raise InvalidChoiceError(what, value, choices)
    return value


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Raise :class:`ConfigError` naming the valid range when ``value`` lies outside it."""
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        lb = "[" if (low_inclusive and low is not None) else "("
        hb = "]" if (high_inclusive and high is not None) else ")"
        raise ConfigError(f"{name}={value!r} is out of range; valid range: {lb}{lo}, {hi}{hb}")
    return value


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """An integer (numpy integers too; not a bool, float or string) in ``[low, high]``, else :class:`ConfigError`.

    ``num_envs=2.5`` must not quietly become 2, nor ``room_size=True`` become 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name}={value!r} must be an integer (got {type(value).__name__})")
    return int(check_range(name, int(value), low, high))
