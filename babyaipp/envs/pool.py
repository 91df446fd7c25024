"""Level generation for the batched engine's pool, in this process or in worker processes.

Layouts come from minigrid's generator (the single env), which defines the tasks and costs about
1 ms per level per core. A :class:`LevelGenerator` turns a list of seeds into encoded start states
(:func:`babyaipp.envs.batched_state.encode_env`), level ``k`` being the single env reset with
``seeds[k]``. With ``workers > 0`` the seeds are cut into fixed chunks that a process pool
(``forkserver``/``spawn`` start, so no torch state is forked) generates in parallel; results are
put back in seed order, so the levels are identical for any number of workers, and chunks can be
requested ahead (:meth:`LevelGenerator.submit`) so the batch keeps stepping while they are made.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

from babyaipp.envs.batched_state import Geometry, encode_env
from babyaipp.envs.registration import make
from babyaipp.errors import check_choice, check_range

Encoded = dict[str, np.ndarray]
START_METHODS = ("forkserver", "spawn")
#: Seeds per task sent to a worker: large enough that pickling and scheduling stay small beside
#: generation (~1 ms a level), small enough that two workers share a 256-level pool evenly.
CHUNK = 64

_worker_envs: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}


def quiet_make(env_id: str, **env_kwargs: Any) -> Any:
    """The single env of ``env_id`` (pygame's font warnings, a rendering matter, silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*font.*")
        return make(env_id, **env_kwargs)


def encode_seeds(env: Any, geometry: Geometry, seeds: Sequence[int]) -> list[Encoded]:
    """Reset ``env`` with every seed in turn and encode the start state (``level_seed`` recorded)."""
    out = []
    for seed in seeds:
        env.reset(seed=int(seed))
        encoded = encode_env(env, geometry)
        encoded["level_seed"] = np.int64(seed)
        out.append(encoded)
    return out


#: How often a worker checks that the process that started it is still alive.
PARENT_POLL_SECONDS = 0.5


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return True  # no /proc (macOS): the kill probe is all there is


def _exit_with(parent_pid: int) -> None:
    while process_alive(parent_pid):
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(0)


def init_worker(parent_pid: int) -> None:
    """Worker initializer: ignore Ctrl-C and die with the process that started the pool.

    Ctrl-C reaches the whole process group, but only the parent should act on it (it checkpoints
    and shuts the pool down); a worker would print a KeyboardInterrupt traceback. A parent killed
    outright (SIGKILL, a crash) cannot shut its pool down, and a worker blocked on the task queue
    would then live forever (keeping the forkserver and resource tracker alive too); a daemon
    thread ends the worker within :data:`PARENT_POLL_SECONDS` of the parent's death instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent_pid,), name="exit-with-parent", daemon=True).start()


def _generate_in_worker(env_id: str, env_kwargs: dict[str, Any], width: int, height: int, seeds: list[int]):
    """Worker entry point: one env per (id, keywords), kept for the worker's lifetime."""
    key = (env_id, tuple(sorted(env_kwargs.items())))
    if key not in _worker_envs:
        _worker_envs[key] = quiet_make(env_id, **env_kwargs)
    return encode_seeds(_worker_envs[key], Geometry(width, height), seeds)


class LevelGenerator:
    """Encoded levels for given seeds, made by ``workers`` processes (0 = in this process)."""

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any],
        geometry: Geometry,
        *,
        workers: int = 0,
        start_method: str = "forkserver",
        single: Any = None,
    ):
        check_range("workers", workers, 0, 256)
        check_choice("start method", start_method, START_METHODS)
        self.env_id, self.env_kwargs, self.geometry = env_id, dict(env_kwargs), geometry
        self.workers, self.start_method = int(workers), start_method
        self.single = single if single is not None else quiet_make(env_id, **env_kwargs)
        self._executor: ProcessPoolExecutor | None = None

    @property
    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context(self.start_method)
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=init_worker, initargs=(os.getpid(),)
            )
        return self._executor

    def submit(self, seeds: Sequence[int]) -> list[Future]:
        """Start generating ``seeds`` in the workers; one future per chunk, in seed order."""
        geo = self.geometry
        return [
            self.executor.submit(
                _generate_in_worker,
                self.env_id,
                self.env_kwargs,
                geo.width,
                geo.height,
                [int(s) for s in seeds[i : i + CHUNK]],
            )
            for i in range(0, len(seeds), CHUNK)
        ]

    def generate(self, seeds: Sequence[int]) -> list[Encoded]:
        """The encoded levels of ``seeds``, in order (blocks until all are made)."""
        if self.workers == 0:
            return encode_seeds(self.single, self.geometry, seeds)
        return [level for future in self.submit(seeds) for level in future.result()]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass
