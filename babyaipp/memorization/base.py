"""The contract every memorization module follows, and the runner that executes one.

A module (one file per paper) defines a config dataclass deriving from :class:`MemoConfig` and a
module-level ``SPEC = MemoSpec(...)``. Its ``run(config)`` returns an :class:`Outcome`: the
measured metrics, named :class:`Check` objects computed *from those metrics*, a few
``key_figures`` for the summary table, and a ``plot`` callable that draws the figure.
:func:`run_module` seeds everything, times the run, and writes ``result.json`` and ``figure.png``
atomically.

A check compares one measured number with a threshold that lives in the module's config (fixed
before the results were seen, with a one-line reason), so its *margin* (measured − threshold, in
the check's units) says how close it came. Checks are of two kinds: ``sanity`` checks test
properties that hold by construction (a construction fits its points exactly, an accountant
returns a number) and catch bugs; ``claim`` checks test the paper's point and are the ones a
removed ingredient must be able to break. One seed's claim held iff every check held; over
several seeds (:mod:`babyaipp.memorization.runner`) the claim holds when it held on at least 4
of 5 seeds and no sanity check ever failed.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babyaipp.errors import ConfigError, check_choice
from babyaipp.utils import atomic_savefig, atomic_write_json, resolve_device

#: Registered modules in the order they were added (name -> import path). Loaded lazily.
MODULES: dict[str, str] = {
    "rote_learning": "babyaipp.memorization.rote_learning",
    "elr": "babyaipp.memorization.elr",
    "two_layer_capacity": "babyaipp.memorization.two_layer_capacity",
    "interpolation_transition": "babyaipp.memorization.interpolation_transition",
    "small_relu_memorizers": "babyaipp.memorization.small_relu_memorizers",
    "bias_potential": "babyaipp.memorization.bias_potential",
    "knn_lm": "babyaipp.memorization.knn_lm",
    "fl_memorization": "babyaipp.memorization.fl_memorization",
    "forsaken": "babyaipp.memorization.forsaken",
}


@dataclass
class MemoConfig:
    """Fields every module config has. Subclasses add their hyperparameters with defaults.

    ``quick`` asks for the seconds-long variant used by the tests; a subclass reads it in
    ``__post_init__`` (or in ``run``) to shrink its sizes. Validation of ranges belongs in
    ``__post_init__`` and raises :class:`~babyaipp.errors.ConfigError` naming the valid range.
    """

    seed: int = 0
    quick: bool = False
    device: str = "cpu"


CHECK_KINDS = ("claim", "sanity")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


@dataclass(frozen=True)
class Check:
    """One named test: ``measured op threshold``, of kind ``claim`` or ``sanity``.

    Expressing each test as a number against a threshold (rather than a bare boolean) lets the
    multi-seed summary show how much room each check had: ``margin = measured - threshold``.
    """

    measured: float
    op: str
    threshold: float
    kind: str = "claim"
    reason: str = ""

    def __post_init__(self) -> None:
        check_choice("check operator", self.op, _OPS)
        check_choice("check kind", self.kind, CHECK_KINDS)

    @property
    def held(self) -> bool:
        """True iff the comparison holds (a NaN measurement never holds)."""
        value = float(self.measured)
        return value == value and _OPS[self.op](value, float(self.threshold))

    @property
    def margin(self) -> float:
        """``measured - threshold`` in the check's units; positive is good for > and >=."""
        return float(self.measured) - float(self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured": _finite_or_none(self.measured),
            "op": self.op,
            "threshold": _finite_or_none(self.threshold),
            "kind": self.kind,
            "reason": self.reason,
            "held": self.held,
            "margin": _finite_or_none(self.margin),
        }


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def claim(measured: float, op: str, threshold: float, reason: str = "") -> Check:
    """A check of the paper's point: the one an ablation must be able to break."""
    return Check(float(measured), op, float(threshold), "claim", reason)


def sanity(measured: float, op: str, threshold: float, reason: str = "") -> Check:
    """A check of a property that holds by construction (guards against bugs, proves nothing)."""
    return Check(float(measured), op, float(threshold), "sanity", reason)


def as_check(value: Check | bool) -> Check:
    """Accept a bare boolean (counted as a sanity check with measured 1/0 against >= 1)."""
    if isinstance(value, Check):
        return value
    return sanity(1.0 if value else 0.0, ">=", 1.0)


@dataclass
class Outcome:
    """What a module's ``run`` returns."""

    metrics: dict[str, Any]
    checks: dict[str, Check | bool]
    key_figures: dict[str, Any]
    plot: Callable[[Any], None] | None = None  # plot(fig) draws on a matplotlib Figure


@dataclass
class MemoResult:
    """Typed result of one run, as written to ``result.json``."""

    name: str
    paper: str
    claim: str
    held: bool
    checks: dict[str, bool]
    key_figures: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]
    seconds: float
    figure: str | None = None
    paper_headline: str = ""
    check_details: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MemoSpec:
    """Static description of a module: what it reproduces and how to run it."""

    name: str
    paper: str
    claim: str
    config_cls: type[MemoConfig]
    run: Callable[[Any], Outcome]
    paper_headline: str = ""  # the paper's own headline figure, quoted for docs/memorization.md
    extra: Mapping[str, Any] = field(default_factory=dict)


def load_spec(name: str) -> MemoSpec:
    """Import a module by its registered name and return its ``SPEC``."""
    check_choice("memorization module", name, MODULES)
    return importlib.import_module(MODULES[name]).SPEC


#: Seeds feed NumPy's ``default_rng`` and ``torch.manual_seed``; both take this range.
SEED_MAX = 2**32 - 1


def check_seed(seed: int) -> int:
    """Raise :class:`ConfigError` naming the valid range for a negative or too large seed."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} is not an integer; valid range: [0, {SEED_MAX}]")
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed={seed} is out of range; valid range: [0, {SEED_MAX}]")
    return seed


def _coerce(value: str, tp: Any) -> Any:
    if tp in (bool, "bool"):
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if tp in (int, "int"):
        return int(value)
    if tp in (float, "float"):
        return float(value)
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        (inner, *_) = typing.get_args(tp) or (str,)
        items = [_coerce(v, inner) for v in value.split(",") if v]
        return tuple(items) if origin is tuple else items
    return value


def make_config(
    spec: MemoSpec,
    *,
    quick: bool = False,
    seed: int = 0,
    device: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
) -> MemoConfig:
    """Build a module's config; ``overrides`` may hold strings (from the CLI) or typed values."""
    check_seed(seed)
    hints = typing.get_type_hints(spec.config_cls)
    names = [f.name for f in dataclasses.fields(spec.config_cls) if f.name not in ("seed", "quick", "device")]
    kwargs: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        check_choice(f"parameter of {spec.name}", key, names)
        if isinstance(value, str):
            try:
                value = _coerce(value, hints[key])
            except ValueError:
                raise ConfigError(f"{spec.name}: {key}={value!r} is not a valid {hints[key]}") from None
        kwargs[key] = value
    return spec.config_cls(seed=seed, quick=quick, device=device, **kwargs)


def run_module(
    name: str,
    *,
    quick: bool = False,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> MemoResult:
    """Run one module with its global torch RNG seeded (restored afterwards) and write its files.

    ``out`` is a directory; ``result.json`` and ``figure.png`` are written there atomically, so an
    interrupted run leaves the previous files (or none), never a broken one.
    """
    import torch

    spec = load_spec(name)
    device = resolve_device(device)
    config = make_config(spec, quick=quick, seed=seed, device=device, overrides=overrides)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        outcome = spec.run(config)
    seconds = time.perf_counter() - start
    details = {k: as_check(v) for k, v in outcome.checks.items()}
    checks = {k: c.held for k, c in details.items()}
    result = MemoResult(
        name=spec.name,
        paper=spec.paper,
        claim=spec.claim,
        held=bool(checks) and all(checks.values()),
        checks=checks,
        key_figures=outcome.key_figures,
        metrics=outcome.metrics,
        config=dataclasses.asdict(config),
        seconds=round(seconds, 2),
        paper_headline=spec.paper_headline,
        check_details={k: c.to_dict() for k, c in details.items()},
    )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if outcome.plot is not None:
            fig_path = out / "figure.png"
            atomic_write_figure(outcome.plot, fig_path)
            result.figure = str(fig_path)
        atomic_write_json(out / "result.json", result.to_dict())
    return result


def atomic_write_figure(plot: Callable[[Any], None], path: Path) -> None:
    """Call a module's ``plot`` on a fresh matplotlib figure and save it atomically.

    ``plot(fig)`` draws on the given :class:`matplotlib.figure.Figure`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    plot(fig)
    atomic_savefig(fig, path)
