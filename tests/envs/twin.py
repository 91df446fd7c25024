"""Play a single env's level in the batched engine beside it, and check every step agrees.

``BatchedTwin(env)`` captures the freshly built (or reset) env as a :class:`Level`, loads it into
the batched engine and compares the first observation; :meth:`BatchedTwin.step` then applies the
same action to the engine and checks that image, direction, mission and description tokens,
reward, termination, truncation, the agent's pose and the step counter equal the single env's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from babyaipp.envs.batched import BatchedBabyAIPP
from babyaipp.envs.level import Level
from babyaipp.envs.text import tokenize, tokenize_description
from babyaipp.envs.wrappers import MAX_SENTENCES, MISSION_LENGTH, SENTENCE_LENGTH

_ENGINES: dict[tuple[str, tuple[tuple[str, Any], ...]], BatchedBabyAIPP] = {}


def engine_for(env_id: str, **env_kwargs: Any) -> BatchedBabyAIPP:
    """One single-slot engine per env id and keywords, made once per test process (levels are loaded into it)."""
    key = (env_id, tuple(sorted(env_kwargs.items())))
    if key not in _ENGINES:
        _ENGINES[key] = BatchedBabyAIPP(env_id, 1, auto_reset=False, **env_kwargs)
    return _ENGINES[key]


def single_obs_tokens(obs: dict[str, Any]) -> dict[str, np.ndarray]:
    """A single env's raw observation with its text as tokens, as the batched engine gives it."""
    return {
        "image": np.asarray(obs["image"]),
        "direction": np.asarray(obs["direction"]),
        "mission": tokenize(obs["mission"], MISSION_LENGTH),
        "description": tokenize_description(obs["description"], MAX_SENTENCES, SENTENCE_LENGTH),
    }


def assert_same_obs(batched: dict[str, torch.Tensor], single: dict[str, Any], where: str) -> None:
    want = single_obs_tokens(single)
    for key, value in want.items():
        got = batched[key][0].cpu().numpy()
        assert np.array_equal(got, value), f"{where}: {key} differs\nbatched:\n{got}\nsingle:\n{value}"


class BatchedTwin:
    """The batched engine playing the level ``env`` holds (``env`` unwrapped, not stepped yet)."""

    def __init__(self, env: Any, env_id: str, **env_kwargs: Any):
        base = env.unwrapped
        self.engine = engine_for(env_id, **env_kwargs)
        obs = self.engine.load([0], [Level.from_env(base)])
        # A level starts with fresh tile counters; a hand-built world may start with others.
        self.engine.state["steps_in_cell"][0] = int(base.steps_in_cell)
        self.engine.state["magic_count"][0] = int(base.magic_count)
        assert_same_obs(obs, base.gen_obs(), "first observation")
        self.steps = 0

    def step(self, env: Any, action: int, result: tuple) -> None:
        """Apply ``action`` to the engine and check it against the single env's ``result`` of it."""
        obs, reward, terminated, truncated = self.engine.step(torch.tensor([action]))
        where = f"step {self.steps} (action {action})"
        self.steps += 1
        assert_same_obs(obs, result[0], where)
        got = (float(reward[0]), bool(terminated[0]), bool(truncated[0]))
        assert got == (float(result[1]), bool(result[2]), bool(result[3])), f"{where}: {got} != {result[1:4]}"
        base = env.unwrapped
        x, y = (int(v) for v in base.agent_pos)
        state = self.engine.state
        assert int(state["agent_pos"][0]) == self.engine.geometry.flat(x, y), f"{where}: position"
        assert int(state["agent_dir"][0]) == int(base.agent_dir), f"{where}: direction"
        assert int(state["half_steps"][0]) == round(2 * base.step_count), f"{where}: step counter"
        assert int(state["steps_in_cell"][0]) == int(base.steps_in_cell), f"{where}: steps in cell"
        assert int(state["magic_count"][0]) == int(base.magic_count), f"{where}: magic count"
