"""The run directory: reading and writing what a training run leaves on disk.

A run directory holds::

    config.json              the run's configuration (what evaluation needs to rebuild the env)
    model.zip                the final model (written once training reaches ``steps``)
    checkpoints/step_N.zip   periodic checkpoints, for --resume
    progress.csv             the learning curve (timesteps, episodes, mean return, success, fps)
    tb/                      TensorBoard logs

Every file is written to a temporary name and renamed, so an interrupted run never leaves half a
file. This module lists checkpoints, reads ``config.json`` and ``progress.csv``, loads models and
writes progress and checkpoints during training (:class:`ProgressCallback`); it knows nothing of
environments, so :mod:`babyaipp.agents.training` (which re-exports these names) and the modules
that only read finished runs can both use it without import cycles.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import zipfile
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from babyaipp.errors import BabyAIPPError, CheckpointError
from babyaipp.utils import atomic_write, atomic_write_text, resolve_device

PROGRESS_COLUMNS = ("timesteps", "episodes", "mean_return", "success_rate", "fps")
#: Episodes over which progress.csv averages return and success.
PROGRESS_WINDOW = 100
_CHECKPOINT_RE = re.compile(r"^step_(\d+)\.zip$")


# ---------------------------------------------------------------------------------------------
# Run directory
# ---------------------------------------------------------------------------------------------


def _algorithm_class(recurrent: bool) -> type[BaseAlgorithm]:
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
            m = _CHECKPOINT_RE.match(path.name)
            if m:
                found[int(m[1])] = path
    return dict(sorted(found.items()))


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
        raise CheckpointError(
            f"{path} not found: not a training run directory (train one with `babyaipp train`)"
        )
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


def _load_algorithm(path: Path, recurrent: bool, device: str, env: Any = None) -> BaseAlgorithm:
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        return _algorithm_class(recurrent).load(path, env=env, device=device)
    except BabyAIPPError:
        raise
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError, OSError) as err:
        kind = _algorithm_class(recurrent).__name__
        raise CheckpointError(f"{path} is corrupt or not a {kind} model: {err}") from err


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[BaseAlgorithm, dict[str, Any]]:
    """The trained model (PPO or RecurrentPPO) of a finished run and its config dict.

    Raises :class:`CheckpointError` naming the path when ``model.zip`` or ``config.json`` is
    missing or corrupt.
    """
    config = read_config(run_dir)
    model = _load_algorithm(Path(run_dir) / "model.zip", bool(config["recurrent"]), resolve_device(device))
    return model, config


def _save_atomic(model: BaseAlgorithm, path: Path) -> Path:
    return atomic_write(path, lambda tmp: model.save(tmp))


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

    def __init__(self, run_dir: Path, checkpoint_every: int, rows: list[dict[str, float]]):
        super().__init__()
        self.run_dir, self.checkpoint_every = run_dir, checkpoint_every
        self.rows = list(rows)
        self.episodes = int(rows[-1]["episodes"]) if rows else 0
        self.returns: deque[float] = deque(maxlen=PROGRESS_WINDOW)
        self.start_time = 0.0
        self.start_steps = 0
        self.last_checkpoint = 0
        self.trained_steps = 0  # num_timesteps at the end of the last gradient update

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
        if self.num_timesteps > self.start_steps:
            self.after_update()

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
        return _save_atomic(self.model, self.run_dir / "checkpoints" / f"step_{step}.zip")

    def save_interrupted(self) -> Path:
        """On Ctrl-C mid-rollout: checkpoint the last update, dropping the unlearnt partial rollout."""
        self.model.num_timesteps = self.trained_steps
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
            writer.writerow(
                {k: (int(row[k]) if k in ("timesteps", "episodes") else f"{row[k]:.6g}") for k in row}
            )
        atomic_write_text(self.run_dir / "progress.csv", buffer.getvalue())


__all__ = [
    "PROGRESS_COLUMNS",
    "PROGRESS_WINDOW",
    "ProgressCallback",
    "checkpoints",
    "latest_checkpoint",
    "load_run",
    "read_config",
    "read_progress",
]
