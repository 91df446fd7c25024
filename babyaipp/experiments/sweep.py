"""Seeded sweeps of ``train`` + ``eval`` on Ray core tasks, resumable, one run directory per trial.

Every trial calls :func:`babyaipp.agents.training.train` (or :func:`~babyaipp.agents.training_resume.resume`) and then
:func:`babyaipp.agents.evaluation.evaluate_run` + ``write_results``, exactly what ``babyaipp train``
and ``babyaipp eval`` call, so a trial directory is a normal run directory::

    SWEEP/sweep.json                    the grid and a log of every invocation
    SWEEP/trials/<key>/trial.json       the trial's config, status (queued/running/done/failed), timings
    SWEEP/trials/<key>/config.json ...  the run directory written by `train` (model.zip, progress.csv, tb/)
    SWEEP/trials/<key>/eval/results.json  written by the evaluation
    SWEEP/trials/<key>/error.txt        the traceback of a failed trial

``<key>`` ends with a hash of the trial's full config, so a trial whose results are on disk is
never rerun, and rerunning a command runs only what is missing (a trial interrupted mid-training
continues from its latest checkpoint). Trials run as Ray tasks with ``num_cpus``/``num_gpus``
resources: a local Ray started in this process by default, or an existing cluster by address (the
sweep directory must then be on a filesystem every node shares).

Nothing here prints; :func:`run_sweep` reports progress through a callback.

Trial configs, their keys and directories, and :func:`~babyaipp.experiments.trials.run_trial` (what
each Ray task runs) live in :mod:`babyaipp.experiments.trials`; this module is the Ray driver.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babyaipp.defaults import DEFAULT_CHECKPOINT_EVERY
from babyaipp.errors import BabyAIPPError, ConfigError, check_range
from babyaipp.experiments.aggregate import TRIALS_SUBDIR
from babyaipp.experiments.trials import (
    TrialConfig,
    is_trial_done,
    read_trial_meta,
    record_failure,
    run_trial,
    trial_dir,
    write_meta,
)
from babyaipp.utils import atomic_write_json

SWEEP_JSON = "sweep.json"
#: Seconds an interrupted sweep gives its running trials to checkpoint before killing them.
CANCEL_GRACE_S = 30.0
#: How often the driver refreshes its counts while waiting on Ray.
POLL_SECONDS = 0.5


# --------------------------------------------------------------------------- the driver
@dataclass
class SweepStatus:
    """Counts the progress view shows, and the failures so far."""

    total: int
    skipped: int = 0
    done: int = 0
    running: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.skipped + self.done + len(self.failed)


@dataclass
class SweepReport:
    """What one :func:`run_sweep` call did."""

    sweep_dir: Path
    total: int
    skipped: list[str]
    ran: list[str]
    failed: dict[str, str]
    seconds: float
    trial_seconds: dict[str, float]


#: Ray reads this at import: off, a local Ray takes the loopback address as its node IP and every
#: one of its servers (GCS, raylet, workers) listens on 127.0.0.1 only, instead of on all interfaces.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Seconds to wait for a TCP connection to ``--address`` before giving up.
CONNECT_TIMEOUT_S = 5.0


def _local_ray_on_loopback() -> None:
    """Make the local Ray this process starts listen on 127.0.0.1 only (nothing else can reach it)."""
    os.environ[_RAY_CLUSTER_ENV] = "0"  # for Ray imported from now on, and Ray's own child processes
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # for Ray already imported in this process


def check_address(address: str) -> None:
    """Fail in seconds, before anything is written, when ``--address HOST:PORT`` does not answer.

    ``ray.init`` would retry for about 20 s with a wall of warnings first. ``auto`` (a cluster
    started on this machine) is left to Ray.
    """
    target = address.split("://", 1)[-1]
    if address == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--address {address!r} is not HOST:PORT (or 'auto')")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise BabyAIPPError(
            f"cannot reach the Ray cluster at --address {address!r}: {err.strerror or err}; start it with "
            "`ray start --head` there, or leave --address out to run a local Ray"
        ) from None


def _ray_init(address: str | None, num_cpus: int | None) -> bool:
    """Start (or connect to) Ray quietly; False when this process already had Ray running.

    A local Ray listens on 127.0.0.1 only; ``address`` connects to an existing cluster instead.
    """
    if address is None:
        _local_ray_on_loopback()
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a FutureWarning tip
    quiet = {
        "log_to_driver": False,
        "include_dashboard": False,
        "configure_logging": True,
        "logging_level": logging.ERROR,
    }
    sigterm = signal.getsignal(signal.SIGTERM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if address:
            try:
                ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise BabyAIPPError(f"cannot connect to the Ray cluster at --address {address!r}: {err}") from err
        else:
            ray.init(num_cpus=num_cpus, **quiet)
    if callable(sigterm) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, sigterm)  # Ray installs its own (sys.exit); keep the caller's cleanup
    return True


def _check_gpus(gpus_per_trial: float, address: str | None) -> None:
    """A local sweep asking for GPUs on a machine without CUDA would queue trials forever."""
    if gpus_per_trial > 0 and address is None:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"--gpus-per-trial={gpus_per_trial:g} asks for GPUs, but torch sees no CUDA device on this machine; "
                "use --gpus-per-trial 0, or --address of a cluster with GPUs"
            )


def _check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """A trial asking more than the whole cluster has would wait forever: refuse it up front."""
    import ray

    available = ray.cluster_resources()
    for name, asked in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial)):
        have = float(available.get(name, 0.0))
        if asked > have:
            flag = "--cpus-per-trial" if name == "CPU" else "--gpus-per-trial"
            raise ConfigError(f"{flag}={asked:g} is more than the Ray cluster has; valid range: [0, {have:g}]")


def write_manifest(sweep_dir: Path, trials: Sequence[TrialConfig], grid: Mapping[str, Any], run: Mapping) -> None:
    """``sweep.json``: the latest grid and trial keys, and one entry per invocation appended."""
    previous: dict[str, Any] = {}
    try:
        previous = json.loads((sweep_dir / SWEEP_JSON).read_text())
    except (OSError, ValueError):
        pass
    invocations = [i for i in previous.get("invocations", []) if i.get("started") != run.get("started")]
    atomic_write_json(
        sweep_dir / SWEEP_JSON,
        {"grid": dict(grid), "trials": [t.key for t in trials], "invocations": [*invocations, dict(run)]},
    )


def run_sweep(
    trials: Iterable[TrialConfig],
    sweep_dir: str | os.PathLike,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    grid: Mapping[str, Any] | None = None,
    on_update: Callable[[SweepStatus], None] | None = None,
) -> SweepReport:
    """Run every trial not already done on Ray; return what ran, what was skipped and what failed.

    ``address`` connects to a running cluster (``ray.init(address=...)``); otherwise a local Ray
    with ``num_cpus`` CPUs (default: all) starts in this process and stops at the end. When this
    process already runs Ray, that instance is used as it is.
    """
    check_range("cpus_per_trial", cpus_per_trial, 0, None, low_inclusive=False)
    check_range("gpus_per_trial", gpus_per_trial, 0, None)
    check_range("checkpoint_every", checkpoint_every, 0, None)
    if num_cpus is not None:
        check_range("num_cpus", num_cpus, 1, None)
    trials = list(trials)
    _check_gpus(gpus_per_trial, address)
    if address:
        check_address(address)
    sweep_dir = Path(sweep_dir).resolve()  # Ray workers may not share the driver's working directory
    began = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    pending = [t for t in trials if not is_trial_done(trial_dir(sweep_dir, t), t)]
    skipped = [t.key for t in trials if t not in pending]
    status = SweepStatus(total=len(trials), skipped=len(skipped))
    run_log: dict[str, Any] = {"started": started, "address": "remote" if address else "local", "skipped": len(skipped)}
    ran: list[str] = []
    trial_seconds: dict[str, float] = {}
    ray_started = False
    try:
        if pending:  # Ray up and the resources checked before anything is written
            ray_started = _ray_init(address, num_cpus)
            _check_resources(cpus_per_trial, gpus_per_trial)
        (sweep_dir / TRIALS_SUBDIR).mkdir(parents=True, exist_ok=True)
        write_manifest(sweep_dir, trials, grid or {}, {**run_log, "pending": len(pending)})
        if on_update:
            on_update(status)
        if pending:
            device = "cuda" if gpus_per_trial > 0 else "cpu"
            for t in pending:
                directory = trial_dir(sweep_dir, t)
                directory.mkdir(parents=True, exist_ok=True)
                write_meta(directory, t, "queued")  # clears a stale "running" left by an interrupted sweep
            outcomes = _run_on_ray(
                pending, sweep_dir, device, cpus_per_trial, gpus_per_trial, checkpoint_every, status, on_update
            )
            for outcome in outcomes:
                ran.append(outcome["key"])
                trial_seconds[outcome["key"]] = round(float(outcome["seconds"]), 2)
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    seconds = time.perf_counter() - began
    run_log.update(ran=len(ran), failed=len(status.failed), seconds=round(seconds, 2))
    write_manifest(sweep_dir, trials, grid or {}, run_log)
    return SweepReport(sweep_dir, len(trials), skipped, ran, dict(status.failed), seconds, trial_seconds)


def _run_on_ray(
    pending: Sequence[TrialConfig],
    sweep_dir: Path,
    device: str,
    cpus_per_trial: float,
    gpus_per_trial: float,
    checkpoint_every: int,
    status: SweepStatus,
    on_update: Callable[[SweepStatus], None] | None,
) -> list[dict[str, Any]]:
    """Submit one Ray task per trial and collect outcomes as they finish, refreshing the counts."""
    import ray

    task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)(run_trial)
    threads = max(1, int(cpus_per_trial))
    refs = {
        task.remote(t.as_dict(), str(trial_dir(sweep_dir, t)), device, threads, checkpoint_every): t for t in pending
    }
    outcomes: list[dict[str, Any]] = []
    waiting = list(refs)
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                trial = refs[ref]
                try:
                    outcome = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - a worker crash (OOM, segfault) fails one trial
                    outcome = record_failure(
                        trial_dir(sweep_dir, trial), trial, err, traceback.format_exc(), float("nan")
                    )
                outcomes.append(outcome)
                if outcome["status"] == "done":
                    status.done += 1
                else:
                    status.failed[outcome["key"]] = outcome.get("error", "failed")
            status.running = sum(
                read_trial_meta(trial_dir(sweep_dir, refs[r])).get("status") == "running" for r in waiting
            )
            if on_update:
                on_update(status)
    except BaseException:
        for ref in waiting:  # a KeyboardInterrupt in each trial: training checkpoints its last update
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=False)
        with contextlib.suppress(Exception):
            ray.wait(waiting, num_returns=len(waiting), timeout=CANCEL_GRACE_S)
        for ref in waiting:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    return outcomes


__all__ = ["SweepReport", "SweepStatus", "run_sweep"]
