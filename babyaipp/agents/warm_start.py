"""Starting a new run from a finished run's policy weights (``babyaipp train --init-from``).

Both PPO trainers (:mod:`babyaipp.agents.training`, :mod:`babyaipp.agents.device_training`)
warm-start from a behaviour-cloning or PPO run; the checks that the saved policy fits the new one
(model, recurrence, network sizes, observation space) live here, once, apart from either trainer
and from behaviour cloning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babyaipp.agents.evaluation import spaces_match
from babyaipp.agents.runs import load_run
from babyaipp.errors import BabyAIPPError, ConfigError

#: Hyperparameters that shape the network: a warm start needs them equal.
_SHAPE_FIELDS = ("head_hidden_dim", "lstm_hidden_dim")


def warm_start_from(
    agent: Any, source_dir: str | Path, model: str, recurrent: bool, config: Any, device: str
) -> dict[str, Any]:
    """Copy a finished run's policy weights into ``agent``; a clear error naming what differs
    (model, recurrence, network sizes, observation space) when they cannot fit."""
    source, source_config = load_run(source_dir, device=device)
    where = f"--init-from {source_dir}"
    if source_config["model"] != model:
        raise ConfigError(
            f"{where} holds a {source_config['model']!r} model, not {model!r}; pass --model {source_config['model']}"
        )
    if bool(source_config["recurrent"]) != bool(recurrent):
        raise ConfigError(
            f"{where} is {'' if source_config['recurrent'] else 'not '}recurrent; "
            f"{'add' if source_config['recurrent'] else 'drop'} --recurrent"
        )
    saved = source_config.get("hyperparameters") or {}
    for name in (*config.ARCHITECTURE_FIELDS, *_SHAPE_FIELDS):
        if name in saved and saved[name] != getattr(config, name):
            raise ConfigError(
                f"{where} has {name}={saved[name]}, this run {getattr(config, name)}; pass --set {name}={saved[name]}"
            )
    if not spaces_match(agent.observation_space, source.observation_space):
        raise BabyAIPPError(
            f"{where} was trained on another observation space ({source.observation_space}) "
            f"than this run's ({agent.observation_space})"
        )
    agent.policy.load_state_dict(source.policy.state_dict())
    return {
        "run_dir": str(source_dir),
        "algo": source_config.get("algo", "ppo"),
        "num_timesteps": source_config.get("num_timesteps"),
    }


__all__ = ["warm_start_from"]
