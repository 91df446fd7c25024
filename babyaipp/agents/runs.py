"""The run directory: reading and writing what a training run leaves on disk.

A run directory holds::

    config.json              the run's configuration (what evaluation needs to rebuild the env)
    model.zip                the final model (written once training reaches ``steps``)
    checkpoints/step_N.zip   periodic checkpoints, for --resume
    progress.csv             the learning curve (timesteps, episodes, mean return, success, fps)
    tb/                      TensorBoard logs
    .lock                    held (an OS advisory lock) while a process writes the run; removed after

Every file is written to a temporary name and renamed, so an interrupted run never leaves half a
file. This module locks the directory, lists checkpoints, reads ``config.json``, loads models and
records each training segment (:func:`record_segment`), for every trainer and for the modules that
only read finished runs; ``progress.csv`` and the periodic checkpoints are written and read by
:mod:`babyaipp.agents.progress`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from babyaipp.agents.models import model_spec, policy_kwargs
from babyaipp.envs.registration import make_tokenized
from babyaipp.errors import BabyAIPPError, CheckpointError, ConfigError
from babyaipp.utils import atomic_write, atomic_write_json, check_out_dir, resolve_device

CHECKPOINT_RE = re.compile(r"^step_(\d+)\.zip$")
LOCK_NAME = ".lock"


class RunLockedError(ConfigError):
    """Another process holds the run directory's lock (it is training or resuming that run)."""


# ---------------------------------------------------------------------------------------------
# The run directory's lock
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` with an exclusive OS advisory lock (``flock``) while writing the run.

    Two processes training into one directory would overwrite each other's checkpoints; the
    second one gets :class:`RunLockedError` naming the holder's pid. The lock dies with its
    process (even on SIGKILL), so a crashed run never leaves the directory locked; the file is
    removed on a clean exit, and so is the directory if this call created it and it stayed empty.
    """
    import fcntl

    run_dir = check_out_dir(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if not isinstance(err, BlockingIOError) and err.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
                break  # a filesystem without locks (some network mounts): write unlocked, as before
            if not isinstance(err, BlockingIOError):
                os.close(fd)
                raise
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"{run_dir} is being written by another babyaipp process (pid {holder}); "
                "wait for it to finish or stop it, or choose another --out"
            ) from None
        try:  # the holder may have removed the file between our open and our lock: lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        if created:  # a run that failed before writing anything leaves no empty directory either
            with contextlib.suppress(OSError):
                run_dir.rmdir()


# ---------------------------------------------------------------------------------------------
# Run directory
# ---------------------------------------------------------------------------------------------


def algorithm_class(recurrent: bool) -> type[BaseAlgorithm]:
    if recurrent:
        from sb3_contrib import RecurrentPPO

        return RecurrentPPO
    return PPO


def checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """The run's checkpoints by step, from ``checkpoints/step_N.zip``."""
    folder = Path(run_dir) / "checkpoints"
    found: dict[int, Path] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            m = CHECKPOINT_RE.match(path.name)
            if m:
                found[int(m[1])] = path
    return dict(sorted(found.items()))


def write_failure(err: OSError, run_dir: str | Path) -> BabyAIPPError:
    """The one-line error for a run that could not be written (disk full, directory removed or made
    read-only under it), saying from which checkpoint ``--resume`` continues once that is fixed."""
    kept = latest_checkpoint(run_dir)
    where = (
        f"it can continue from step {kept[0]} with `babyaipp train --resume --out {run_dir}` once that is fixed"
        if kept
        else "no checkpoint was written"
    )
    return BabyAIPPError(f"cannot write {err.filename or run_dir}: {err.strerror or err}; {where}")


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    """(step, path) of the most advanced checkpoint, counting ``model.zip``; None if there is none."""
    candidates = dict(checkpoints(run_dir))
    final = Path(run_dir) / "model.zip"
    config_path = Path(run_dir) / "config.json"
    if final.is_file() and config_path.is_file():
        try:
            steps = int(json.loads(config_path.read_text()).get("num_timesteps", 0))
        except (ValueError, TypeError):
            steps = 0
        if steps >= max(candidates, default=-1):
            candidates[steps] = final
    if not candidates:
        return None
    step = max(candidates)
    return step, candidates[step]


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.json``; :class:`CheckpointError` naming the path if missing or corrupt."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found: not a training run directory (train one with `babyaipp train`)")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is corrupt: expected a JSON object")
    missing = [k for k in ("env_id", "text", "recurrent", "model") if k not in config]
    if missing:
        raise CheckpointError(f"{path} is incomplete: missing {', '.join(missing)}")
    return config


#: Pickled entries of an SB3 ``model.zip`` that loading sets to None: training state that SB3
#: rebuilds (schedules, buffers) or that ``resume`` resets (last observation, episode statistics).
_STATE_ENTRIES = (
    "_last_obs",
    "_last_episode_starts",
    "_last_original_obs",
    "ep_info_buffer",
    "ep_success_buffer",
    "rollout_buffer_class",
    "rollout_buffer_kwargs",
    "lr_schedule",
    "_last_lstm_states",
)


def _rebuilt_objects(path: Path, config: dict[str, Any], env: Any) -> dict[str, Any]:
    """Everything ``model.zip`` would unpickle, rebuilt from ``config.json`` instead.

    SB3 stores the policy class, its keywords, the spaces and schedules as cloudpickle, which runs
    code from the file when loaded; weights are read with ``torch.load(weights_only=True)``. Given
    these objects SB3 unpickles none of them, so loading a run made by this package runs no code
    from the file. A pickled entry this package does not know is refused rather than unpickled.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
        raise CheckpointError(f"{path} is corrupt or not an SB3 model: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is corrupt: its 'data' entry is not a JSON object")
    recurrent = bool(config["recurrent"])
    model_config = model_spec(config["model"]).config.from_dict(dict(config.get("hyperparameters") or {}))
    single = None
    if env is None:
        single = env = make_tokenized(config["env_id"], text=config["text"], **dict(config.get("env_kwargs") or {}))
    wrapped = BaseAlgorithm._wrap_env(env, verbose=0, monitor_wrapper=False)  # channels-first, as SB3 saves it
    observation_space, action_space = wrapped.observation_space, wrapped.action_space
    if single is not None:
        single.close()
    algorithm = algorithm_class(recurrent)
    rebuilt: dict[str, Any] = {
        "policy_class": algorithm.policy_aliases["MultiInputLstmPolicy" if recurrent else "MultiInputPolicy"],
        "policy_kwargs": policy_kwargs(config["model"], model_config, recurrent),
        "observation_space": observation_space,
        "action_space": action_space,
        "clip_range": model_config.clip_range,
        **{name: None for name in _STATE_ENTRIES},
    }
    pickled = [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v]
    unknown = [k for k in pickled if k not in rebuilt]
    if unknown:
        raise CheckpointError(
            f"{path} holds pickled entries this package does not rebuild ({', '.join(unknown)}); "
            "loading them would run code from the file"
        )
    return {k: rebuilt[k] for k in pickled}


def load_algorithm(
    path: Path, recurrent: bool, device: str, env: Any = None, config: dict[str, Any] | None = None
) -> BaseAlgorithm:
    """Load a checkpoint; with the run's ``config`` (every caller in this package passes it),
    without unpickling anything from the file (:func:`_rebuilt_objects`)."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    kind = algorithm_class(recurrent).__name__
    custom = _rebuilt_objects(path, config, env) if config is not None else None
    try:
        model = algorithm_class(recurrent).load(path, env=env, device=device, custom_objects=custom)
    except BabyAIPPError:
        raise
    except pickle.UnpicklingError as err:  # torch's weights-only reader refused policy.pth
        raise CheckpointError(f"{path} is corrupt or not a {kind} model: a weights file in it cannot be read") from err
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError, OSError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is corrupt or not a {kind} model: {first}") from err
    if recurrent != hasattr(model.policy, "lstm_actor"):
        raise CheckpointError(
            f"{path} holds a {'non-' if recurrent else ''}recurrent model, but config.json says "
            f"recurrent={recurrent}: the two do not belong to the same run"
        )
    return model


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[BaseAlgorithm, dict[str, Any]]:
    """The trained model (PPO or RecurrentPPO) of a finished run and its config dict.

    Raises :class:`CheckpointError` naming the path when ``model.zip`` or ``config.json`` is
    missing or corrupt. Nothing pickled in ``model.zip`` is unpickled (see
    :func:`_rebuilt_objects`); still, load only runs you trust.
    """
    config = read_config(run_dir)
    model = load_algorithm(
        Path(run_dir) / "model.zip", bool(config["recurrent"]), resolve_device(device), config=config
    )
    return model, config


def save_atomic(model: BaseAlgorithm, path: Path) -> Path:
    """Save ``model`` to ``path`` through a temporary file, so a crash never leaves half a zip."""
    return atomic_write(path, lambda tmp: model.save(tmp))


def mark_killed_segments(run_config: dict[str, Any]) -> None:
    """Mark segments still ``running`` in ``run_config`` as ``killed``: their process died without a word."""
    for old in run_config.get("segments", []):
        if old.get("ended") == "running":  # its process died without a word (SIGKILL, a crash)
            old["ended"] = "killed"


def record_segment(
    run_config: dict[str, Any], run_dir: Path, start: int, reached: int, began: float, ended: str
) -> None:
    """Write this call's segment (steps from..to, time, fps, how it ended) into config.json.

    Written at every checkpoint too (``ended: "running"``), so a run killed without warning still
    records the steps it trained; ``resume`` marks such a segment ``killed``.
    """
    elapsed = time.perf_counter() - began
    done = reached - start
    fps = done / elapsed if elapsed > 0 and done else 0.0
    segment = {"from": start, "to": reached, "seconds": round(elapsed, 3), "fps": round(fps, 1), "ended": ended}
    segments = list(run_config.get("segments", []))
    if segments and segments[-1].get("ended") == "running" and segments[-1].get("from") == start:
        segments[-1] = segment
    else:
        segments.append(segment)
    run_config["segments"] = segments
    run_config.update(num_timesteps=reached, completed=reached >= int(run_config["steps"]))
    atomic_write_json(run_dir / "config.json", run_config)


__all__ = [
    "CHECKPOINT_RE",
    "LOCK_NAME",
    "RunLockedError",
    "algorithm_class",
    "checkpoints",
    "latest_checkpoint",
    "load_algorithm",
    "load_run",
    "mark_killed_segments",
    "read_config",
    "record_segment",
    "run_lock",
    "save_atomic",
]
