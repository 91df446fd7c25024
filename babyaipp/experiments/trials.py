"""Sweep trials: what defines one, where it lives on disk, and running it (train, then evaluate).

A :class:`TrialConfig` is everything that decides a trial's result; its :attr:`~TrialConfig.key`
ends in a hash of that config and names the trial's directory under ``SWEEP/trials/``, so results
on disk are recognised (:func:`is_trial_done`) and never recomputed. :func:`expand_grid` turns the
command-line grid into trials, and :func:`run_trial` (the function each Ray task runs) trains or
resumes the trial's run and evaluates it, recording ``trial.json`` and, on failure, ``error.txt``.
Kept apart from the Ray driver in :mod:`babyaipp.experiments.sweep`, which imports this module
(never the reverse).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from babyaipp.agents.device_training import TRAINERS
from babyaipp.agents.evaluation import EVAL_SUBDIR, RESULTS_JSON, evaluate_run
from babyaipp.agents.models import MODELS, model_spec
from babyaipp.agents.reports import write_results
from babyaipp.agents.runs import latest_checkpoint, read_config
from babyaipp.agents.training import ALGOS, train
from babyaipp.agents.training_resume import resume
from babyaipp.agents.training_setup import ENGINES, MAX_SEED, check_hyperparameters
from babyaipp.defaults import (
    DEFAULT_ALGO,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_ENGINE,
    DEFAULT_EVAL_N_ENVS,
    DEFAULT_GREEDY,
    DEFAULT_N_ENVS,
    DEFAULT_TEXT,
    DEFAULT_TRAINER,
)
from babyaipp.envs import SPLITS
from babyaipp.envs.registration import parse_env_id
from babyaipp.envs.text import TEXT_MODES
from babyaipp.errors import ConfigError, check_choice, check_range
from babyaipp.experiments.aggregate import TRIAL_JSON, TRIALS_SUBDIR, eval_actions
from babyaipp.utils import atomic_write_json, atomic_write_text

ERROR_TXT = "error.txt"
#: Files and folders ``train`` writes; removed before retraining a run that left no checkpoint.
_RUN_OUTPUTS = ("config.json", "progress.csv", "model.zip", "model.state.pt", "checkpoints", "tb", "eval", ERROR_TXT)


_MISSING = object()
#: Config fields added later, with the default under which they are left out of the hash.
_LATER_FIELDS: dict[str, Any] = {"greedy": False, "engine": "gym", "trainer": DEFAULT_TRAINER}


def supported_algos() -> tuple[str, ...]:
    """The algorithms ``babyaipp train`` supports."""
    return ALGOS


@dataclass(frozen=True)
class TrialConfig:
    """Everything that defines a trial's result; its hash names the trial's directory."""

    env_id: str
    model: str
    seed: int
    steps: int
    episodes: int
    algo: str = DEFAULT_ALGO
    recurrent: bool = False
    text: str = DEFAULT_TEXT
    n_envs: int = DEFAULT_N_ENVS
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    demos: str | None = None
    #: Evaluate with argmax actions instead of sampling from the policy (``babyaipp eval --greedy``).
    greedy: bool = DEFAULT_GREEDY
    #: How training envs are stepped (``babyaipp train --engine``): ``batched``, ``device-levels`` or ``gym``.
    engine: str = DEFAULT_ENGINE
    #: The training loop (``babyaipp train --trainer``): ``sb3`` or ``device``.
    trainer: str = DEFAULT_TRAINER

    def __post_init__(self) -> None:
        parse_env_id(self.env_id)
        check_choice("model", self.model, MODELS)
        check_choice("algo", self.algo, supported_algos())
        check_choice("text mode", self.text, TEXT_MODES)
        check_range("seed", self.seed, 0, MAX_SEED)
        check_range("steps", self.steps, 1, None)
        check_range("episodes", self.episodes, 1, None)
        check_range("n_envs", self.n_envs, 1, 1000)
        check_choice("engine", self.engine, ENGINES)
        check_choice("trainer", self.trainer, TRAINERS)
        config_class = model_spec(self.model).config
        config = config_class.from_dict(
            check_hyperparameters(config_class, dict(self.hyperparameters))
        )  # fails up front
        if self.algo == "bc" and not self.demos:
            raise ConfigError("--algos bc needs --demos DIR (record one with `babyaipp demos`)")
        if self.algo == DEFAULT_ALGO and config.batch_size > config.n_steps * self.n_envs:
            raise ConfigError(
                f"batch_size={config.batch_size} is larger than a rollout (n_steps * n_envs = "
                f"{config.n_steps * self.n_envs}); valid range: [2, {config.n_steps * self.n_envs}]"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def digest(self) -> str:
        """A hash of the full config (sorted JSON), stable across processes and machines.

        Fields added after the first sweeps were run (:data:`_LATER_FIELDS`) enter the hash only
        when they differ from their default, so older sweep directories keep their keys.
        """
        payload = {k: v for k, v in self.as_dict().items() if _LATER_FIELDS.get(k, _MISSING) != v}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def key(self) -> str:
        """Readable name ending in the config hash: ``GoToRedBall-Easy-Train_film_ppo_full_s0_<hash>``."""
        level = self.env_id.split("/")[-1].removesuffix("-v0")
        algo = self.algo + ("-lstm" if self.recurrent else "")
        return f"{level}_{self.model}_{algo}_{self.text}_s{self.seed}_{self.digest}"


def expand_grid(
    envs: Sequence[str],
    models: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    episodes: int,
    algos: Sequence[str] = (DEFAULT_ALGO,),
    texts: Sequence[str] = (DEFAULT_TEXT,),
    recurrent: bool = False,
    n_envs: int = DEFAULT_N_ENVS,
    env_kwargs: Mapping[str, Any] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    demos: str | None = None,
    greedy: bool = DEFAULT_GREEDY,
    engine: str = DEFAULT_ENGINE,
    trainer: str = DEFAULT_TRAINER,
) -> list[TrialConfig]:
    """Every combination as a trial, seeds outermost so an early stop leaves every model a seed."""
    for name, values in (("envs", envs), ("models", models), ("seeds", seeds), ("algos", algos), ("texts", texts)):
        if not values:
            raise ConfigError(f"--{name} is empty; give at least one value")
    trials = [
        TrialConfig(
            env_id=env,
            model=model,
            seed=int(seed),
            steps=steps,
            episodes=episodes,
            algo=algo,
            recurrent=recurrent,
            text=text,
            n_envs=n_envs,
            env_kwargs=dict(env_kwargs or {}),
            hyperparameters=dict(hyperparameters or {}),
            demos=demos,
            greedy=greedy,
            # The engine does not apply to behaviour cloning; its old value keeps BC trials' keys.
            engine=engine if algo != "bc" else _LATER_FIELDS["engine"],
            trainer=trainer if algo != "bc" else DEFAULT_TRAINER,
        )
        for seed in seeds
        for env in envs
        for model in models
        for algo in algos
        for text in texts
    ]
    return list({t.key: t for t in trials}.values())  # a value repeated on the command line runs once


# --------------------------------------------------------------------------- one trial (runs in a Ray worker)
def trial_dir(sweep_dir: str | os.PathLike, trial: TrialConfig) -> Path:
    return Path(sweep_dir) / TRIALS_SUBDIR / trial.key


def read_trial_meta(directory: Path) -> dict[str, Any]:
    try:
        meta = json.loads((directory / TRIAL_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def is_trial_done(directory: Path, trial: TrialConfig) -> bool:
    """Results on disk for exactly this config: ``trial.json`` says done (under this trial's key) and
    ``eval/results.json`` exists, evaluated with the trial's action rule (greedy or sampled)."""
    meta = read_trial_meta(directory)
    if meta.get("status") != "done" or meta.get("key") != trial.key:
        return False
    try:
        results = json.loads((directory / EVAL_SUBDIR / RESULTS_JSON).read_text())
    except (OSError, ValueError):
        return False
    return eval_actions(results) == ("greedy" if trial.greedy else "sampled")


def write_meta(directory: Path, trial: TrialConfig, status: str, **extra: Any) -> None:
    """Write the trial's ``trial.json``: its key, config and status, with ``extra`` (timings, error)."""
    meta = {"key": trial.key, "config": trial.as_dict(), "status": status, **extra}
    atomic_write_json(directory / TRIAL_JSON, meta)


def _train_or_resume(directory: Path, trial: TrialConfig, device: str, checkpoint_every: int) -> str:
    """Train the trial's run, resume it from a checkpoint, or keep a finished one; says which."""
    if (directory / "config.json").is_file():
        config = read_config(directory)
        if int(config.get("num_timesteps", 0)) >= trial.steps and (directory / "model.zip").is_file():
            return "kept"  # trained, not yet evaluated
        if latest_checkpoint(directory) is not None:
            resume(directory, steps=trial.steps, device=device)
            return "resumed"
    for name in _RUN_OUTPUTS:  # a run killed before its first checkpoint: start it again
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    kwargs: dict[str, Any] = {}
    if trial.algo != DEFAULT_ALGO:
        kwargs["algo"] = trial.algo
    if trial.demos is not None:
        kwargs["demos"] = _demos_path(directory, trial.demos)
    if trial.algo != "bc":
        kwargs["engine"] = trial.engine  # always passed: train's default engine changed after older sweeps
        kwargs["trainer"] = trial.trainer
    train(
        directory,
        env_id=trial.env_id,
        model=trial.model,
        recurrent=trial.recurrent,
        steps=trial.steps,
        n_envs=trial.n_envs,
        seed=trial.seed,
        device=device,
        text=trial.text,
        env_kwargs=dict(trial.env_kwargs),
        hyperparameters=dict(trial.hyperparameters),
        checkpoint_every=checkpoint_every,
        **kwargs,
    )
    return "trained"


def _demos_path(directory: Path, demos: str) -> Path:
    """A trial's demonstrations: an absolute path, or one relative to the sweep directory (the
    trial directory's grandparent), so a sweep's files name no absolute path and can be moved."""
    path = Path(demos)
    return path if path.is_absolute() else directory.parent.parent / path


def run_trial(
    trial_dict: Mapping[str, Any],
    directory: str,
    device: str = "cpu",
    threads: int = 1,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
) -> dict[str, Any]:
    """Train then evaluate one trial in ``directory``; never raises (a failure is returned and saved).

    The outcome dict has ``key``, ``status`` (``done`` or ``failed``), ``seconds`` and, on failure,
    ``error`` (one line); the traceback goes to ``error.txt``.
    """
    trial = TrialConfig(**trial_dict)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        import torch

        torch.set_num_threads(max(1, threads))
        write_meta(path, trial, "running", started=started)
        how = _train_or_resume(path, trial, device, checkpoint_every)
        trained = time.perf_counter()
        result = evaluate_run(
            path,
            splits=SPLITS,
            episodes=trial.episodes,
            device=device,
            references=False,
            n_envs=min(DEFAULT_EVAL_N_ENVS, trial.episodes),
            progress=False,
            greedy=trial.greedy,
        )
        result["run_dir"] = ".."  # the run, relative to eval/: no absolute path in the results
        result["run_name"] = trial.key  # for titles, as `babyaipp eval` names the run
        write_results(result, path / EVAL_SUBDIR)
        (path / ERROR_TXT).unlink(missing_ok=True)
        seconds = time.perf_counter() - began
        timings = {"train_s": round(trained - began, 2), "eval_s": round(time.perf_counter() - trained, 2)}
        write_meta(path, trial, "done", started=started, training=how, seconds=round(seconds, 2), **timings)
        return {"key": trial.key, "status": "done", "seconds": seconds}
    except BaseException as err:  # noqa: BLE001 - a trial's failure must not sink the sweep
        if isinstance(err, KeyboardInterrupt | SystemExit):
            raise
        return record_failure(path, trial, err, traceback.format_exc(), time.perf_counter() - began)


def record_failure(path: Path, trial: TrialConfig, err: BaseException, trace: str, seconds: float) -> dict[str, Any]:
    """Save a failed trial's traceback (``error.txt``) and status; return its outcome dict."""
    message = f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__
    atomic_write_text(path / ERROR_TXT, trace)
    write_meta(path, trial, "failed", error=message, seconds=round(seconds, 2))
    return {"key": trial.key, "status": "failed", "seconds": seconds, "error": message}


__all__ = [
    "ERROR_TXT",
    "TrialConfig",
    "expand_grid",
    "is_trial_done",
    "read_trial_meta",
    "record_failure",
    "run_trial",
    "supported_algos",
    "trial_dir",
    "write_meta",
]
