"""The run directory: reading and writing what a training run leaves on disk.

A run directory holds::

    config.json              the run's configuration (what evaluation needs to rebuild the env)
    model.zip                the final model (written once training reaches ``steps``)
    checkpoints/step_N.zip   periodic checkpoints, for --resume
    progress.csv             the learning curve (timesteps, episodes, mean return, success, fps)
    tb/                      TensorBoard logs
    .lock                    held (an OS advisory lock) while a process writes the run; removed after

Every file is written to a temporary name and renamed, so an interrupted run never leaves half a
file. This module lists checkpoints, reads ``config.json`` and ``progress.csv``, loads models and
writes progress, checkpoints and the record of each training segment during training
(:class:`ProgressCallback`, :func:`record_segment`), for every trainer and for the modules that
only read finished runs.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import pickle
import re
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from babyaipp.agents import resume_state
from babyaipp.agents.models import model_spec, policy_kwargs
from babyaipp.envs.registration import make_tokenized
from babyaipp.errors import BabyAIPPError, CheckpointError, ConfigError
from babyaipp.utils import atomic_write, atomic_write_json, atomic_write_text, check_out_dir, resolve_device

PROGRESS_COLUMNS = ("timesteps", "episodes", "mean_return", "success_rate", "fps")
#: Episodes over which progress.csv averages return and success.
PROGRESS_WINDOW = 100
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


# ---------------------------------------------------------------------------------------------
# Progress and checkpoints
# ---------------------------------------------------------------------------------------------


def read_progress(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of ``progress.csv`` (empty if absent)."""
    path = Path(run_dir) / "progress.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


class ProgressCallback(BaseCallback):
    """Writes ``progress.csv`` after every update and ``checkpoints/step_N.zip`` every N steps.

    Both are written between a gradient update and the next rollout, so a checkpoint named
    ``step_N`` holds weights trained on exactly the first N steps (a checkpoint taken mid-rollout
    would count steps it never learnt from). Success is an episode ending with reward > 0
    (BabyAI's reward is positive only on success), averaged over the last :data:`PROGRESS_WINDOW`
    episodes. Both files are rewritten atomically.
    """

    def __init__(
        self,
        run_dir: Path,
        checkpoint_every: int,
        rows: list[dict[str, float]],
        on_checkpoint: Callable[[int], None] | None = None,
    ):
        super().__init__()
        self.run_dir, self.checkpoint_every = run_dir, checkpoint_every
        #: Called with the step after every checkpoint (training records its segment in config.json).
        self.on_checkpoint = on_checkpoint
        self.rows = list(rows)
        self.episodes = int(rows[-1]["episodes"]) if rows else 0
        self.returns: deque[float] = deque(maxlen=PROGRESS_WINDOW)
        self.start_time = 0.0
        self.start_steps = 0
        self.last_checkpoint = 0
        #: The training state at the last rollout start (see :mod:`babyaipp.agents.resume_state`).
        self.boundary: dict[str, Any] | None = None
        #: num_timesteps at the end of the last gradient update (None until training starts)
        self.trained_steps: int | None = None

    def _on_training_start(self) -> None:
        self.start_time = time.perf_counter()
        self.start_steps = self.last_checkpoint = self.trained_steps = self.num_timesteps

    @property
    def fps(self) -> float:
        elapsed = time.perf_counter() - self.start_time
        return (self.num_timesteps - self.start_steps) / elapsed if elapsed > 0 else 0.0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")
            if episode is not None:
                self.episodes += 1
                self.returns.append(float(episode["r"]))
        return True

    def _on_rollout_start(self) -> None:
        # Called after the previous rollout's update: fps counts collection + update.
        self.capture_boundary()
        if self.num_timesteps > self.start_steps:
            self.after_update()

    def capture_boundary(self) -> None:
        """Keep the training state between two updates, for the next checkpoint's exact-resume sidecar
        (also the one Ctrl-C writes, whose weights are those of the last update)."""
        self.boundary = resume_state.capture(self.model, self.returns, self.episodes)

    def after_update(self) -> None:
        """Record progress and, when a multiple of ``checkpoint_every`` was passed, checkpoint."""
        self.trained_steps = self.num_timesteps
        self.record()
        every = self.checkpoint_every
        if every and self.num_timesteps // every > self.last_checkpoint // every:
            self.save_checkpoint()

    def save_checkpoint(self) -> Path:
        step = int(self.model.num_timesteps)  # the callback's own copy lags behind the model's
        self.last_checkpoint = step
        path = save_atomic(self.model, self.run_dir / "checkpoints" / f"step_{step}.zip")
        self.save_boundary(path, step)
        if self.on_checkpoint is not None:
            self.on_checkpoint(step)
        return path

    def save_boundary(self, checkpoint: Path, step: int) -> None:
        """Write the exact-resume sidecar of ``checkpoint`` when the kept state belongs to ``step``."""
        sidecar = resume_state.state_path(checkpoint)
        if self.boundary is not None and self.boundary["num_timesteps"] == step:
            resume_state.save(sidecar, self.boundary)
        else:
            sidecar.unlink(missing_ok=True)  # a stale one must not pair with these weights

    def save_interrupted(self, model: BaseAlgorithm) -> Path:
        """On Ctrl-C mid-rollout: checkpoint the last update, dropping the unlearnt partial rollout.

        ``model`` is passed in because an interrupt in the first seconds of ``learn`` can come
        before SB3 has given the callback its model; the checkpoint then holds the initial weights
        at the step the call started from, which ``--resume`` continues like any other.
        """
        if getattr(self, "model", None) is None:
            self.init_callback(model)
        if self.trained_steps is not None:
            model.num_timesteps = self.trained_steps
        return self.save_checkpoint()

    def record(self) -> None:
        if self.rows and self.rows[-1]["timesteps"] >= self.num_timesteps:
            return
        returns = np.asarray(self.returns, dtype=float)
        self.rows.append(
            {
                "timesteps": self.num_timesteps,
                "episodes": self.episodes,
                "mean_return": float(returns.mean()) if returns.size else float("nan"),
                "success_rate": float((returns > 0).mean()) if returns.size else float("nan"),
                "fps": self.fps,
            }
        )
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=PROGRESS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (int(row[k]) if k in ("timesteps", "episodes") else f"{row[k]:.6g}") for k in row})
        atomic_write_text(self.run_dir / "progress.csv", buffer.getvalue())


__all__ = [
    "CHECKPOINT_RE",
    "LOCK_NAME",
    "PROGRESS_COLUMNS",
    "PROGRESS_WINDOW",
    "ProgressCallback",
    "RunLockedError",
    "algorithm_class",
    "checkpoints",
    "latest_checkpoint",
    "load_algorithm",
    "load_run",
    "mark_killed_segments",
    "read_config",
    "read_progress",
    "record_segment",
    "run_lock",
    "save_atomic",
]
