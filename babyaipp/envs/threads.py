"""How many CPU threads the batched engine steps under.

A step of the engine is a few hundred small tensor ops (N x 49 cells at most). With torch's default
intra-op threads (one per core) every op splits across threads that must all run before the next op
starts, so when another process holds a core the step waits on descheduled threads: on a 2-core
machine with one busy process, ``gym.make_vec(id, num_envs=256)`` steps about 10x slower with the
default than with one thread (docs/performance.md, ``benchmarks/engine_threads.py``). So on CPU the
engine runs its calls under one thread, restoring torch's setting afterwards (the policy keeps its
threads), unless the user chose threads themselves:

* ``BABYAIPP_ENGINE_THREADS=k`` in the environment: the engine steps under ``k`` threads
  (``0``: leave torch's setting alone);
* else ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set, or ``torch.set_num_threads`` called after
  the engine module was first imported (``import babyaipp`` alone does not import it): torch's
  setting is used as it is. A count set before that import looks like torch's default; name it
  in one of the variables instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from babyaipp.errors import ConfigError

ENV_VAR = "BABYAIPP_ENGINE_THREADS"
#: Variables through which a user sets torch's threads before it starts.
USER_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Methods of the engine that run tensor code (each is scoped; nested calls are free).
ENGINE_METHODS = ("reset", "load", "restart", "step", "advance", "observation")
#: torch's thread count when the engine module was first imported; a different count later means the user set it.
_THREADS_AT_IMPORT = torch.get_num_threads()

F = TypeVar("F", bound=Callable[..., Any])


def engine_thread_limit() -> int | None:
    """Threads the engine's CPU calls run under now, or ``None`` to leave torch's setting (see module docstring)."""
    raw = os.environ.get(ENV_VAR)
    if raw is not None:
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 0:
            raise ConfigError(f"{ENV_VAR}={raw!r} is not valid; use a positive thread count, or 0 for torch's setting")
        return value or None
    if any(name in os.environ for name in USER_THREAD_VARS) or torch.get_num_threads() != _THREADS_AT_IMPORT:
        return None
    return 1


@contextmanager
def limited_threads(limit: int | None) -> Iterator[None]:
    """Run the block under ``limit`` torch threads (``None``: unchanged), then restore the count."""
    current = torch.get_num_threads()
    if limit is None or limit == current:
        yield
        return
    torch.set_num_threads(limit)
    try:
        yield
    finally:
        torch.set_num_threads(current)


def scoped(method: F) -> F:
    """``method`` run under :func:`engine_thread_limit` (read at each call, so later user settings count)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with limited_threads(engine_thread_limit()):
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def use_engine_threads(engine: Any) -> None:
    """Scope the tensor-running methods of a CPU engine (:data:`ENGINE_METHODS`) to the engine's thread limit.

    Inside a scoped call torch's count differs from the import-time one, so nested calls
    (``step`` calling ``advance``) find a user-like setting and leave it: one switch per call.
    """
    if engine.device.type != "cpu":
        return
    for name in ENGINE_METHODS:
        setattr(engine, name, scoped(getattr(engine, name)))
