"""A training run's progress: ``progress.csv`` (the learning curve), and the checkpoints taken with it.

Both PPO trainers (SB3's and the device trainer) write ``progress.csv`` through
:class:`ProgressCallback` and read it back to continue a resumed run's curve; behaviour cloning
writes the same columns plus its own; sweeps and benchmarks read it for curves and speeds. The
callback writes the curve and the periodic checkpoints (with their exact-resume sidecars) between
an update and the next rollout, so both agree on the step. The rest of the run directory (lock,
config, checkpoint listing, loading) lives in :mod:`babyaipp.agents.runs`.
"""

from __future__ import annotations

import csv
import io
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from babyaipp.agents import resume_state
from babyaipp.agents.runs import save_atomic
from babyaipp.utils import atomic_write_text

PROGRESS_COLUMNS = ("timesteps", "episodes", "mean_return", "success_rate", "fps")
#: Episodes over which progress.csv averages return and success.
PROGRESS_WINDOW = 100


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


__all__ = ["PROGRESS_COLUMNS", "PROGRESS_WINDOW", "ProgressCallback", "read_progress"]
