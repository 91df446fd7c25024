"""``Level``: capture a freshly reset env, round-trip it through JSON, replay it in another env.

A replayed level must give exactly the observations, rewards, terminations and truncations of the
env it was captured from, over oracle and random rollouts, for every task family on both floors.
"""

from __future__ import annotations

import numpy as np
import pytest

import babyaipp.envs as envs
from babyaipp.envs.level import Level, instr_from_dict, instr_to_dict
from babyaipp.envs.oracle import Oracle
from babyaipp.envs.wrappers import TokenObsWrapper
from babyaipp.errors import ConfigError

from .conftest import quiet_make

FAMILY_IDS = [envs.env_id(task, difficulty, "Test") for task in envs.TASKS for difficulty in envs.DIFFICULTIES]


def _same_obs(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("env_id", FAMILY_IDS)
def test_replayed_level_matches_original(env_id: str) -> None:
    source, replay = (TokenObsWrapper(quiet_make(env_id)) for _ in range(2))
    steps = 0
    for seed in range(4):
        obs_a, info_a = source.reset(seed=seed)
        level = Level.from_json(Level.from_env(source).to_json())
        obs_b, info_b = replay.reset(seed=10_000 + seed, options={"level": level})  # the seed must not matter
        assert _same_obs(obs_a, obs_b)
        assert info_a["dynamics"] == info_b["dynamics"]
        assert source.unwrapped.max_steps == replay.unwrapped.max_steps
        oracle = Oracle(source)
        oracle.reset()
        rng = np.random.default_rng(seed)
        for _ in range(250):
            action = oracle.act() if seed % 2 == 0 else int(rng.integers(7))
            out_a, out_b = source.step(action), replay.step(action)
            steps += 1
            assert _same_obs(out_a[0], out_b[0])
            assert out_a[1:4] == out_b[1:4]
            if out_a[2] or out_a[3]:
                break
    assert steps > 50


def test_json_round_trip_is_lossless() -> None:
    env = quiet_make("BabyAIPP/GoToSeq-Hard-Test-v0")
    env.reset(seed=3)
    level = Level.from_env(env)
    again = Level.from_json(level.to_json())
    assert again == level
    assert again.grid.dtype == np.uint8 and again.floor.dtype == np.int8
    assert instr_to_dict(instr_from_dict(level.instrs)) == level.instrs
    assert level.task == "GoToSeq" and level.mission == env.unwrapped.mission


def test_dense_level_names_its_task_and_replays_in_an_env_of_either_floor() -> None:
    """The floor travels in the level, so a sparse env of the same size replays a dense level exactly."""
    dense = TokenObsWrapper(quiet_make("BabyAIPP/GoToLocalDense-Hard-TargetPairOnly-v0"))
    sparse = TokenObsWrapper(quiet_make("BabyAIPP/GoToLocal-Hard-TargetPairOnly-v0"))
    for seed in range(3):
        obs_a, _ = dense.reset(seed=seed)
        level = Level.from_json(Level.from_env(dense).to_json())
        assert level.task == "GoToLocalDense" and (level.floor != -1).sum() > 10
        obs_b, _ = sparse.reset(options={"level": level})
        assert _same_obs(obs_a, obs_b) and np.array_equal(sparse.unwrapped.floor, dense.unwrapped.floor)
        oracle = Oracle(dense)
        oracle.reset()
        for _ in range(100):
            action = oracle.act()
            out_a, out_b = dense.step(action), sparse.step(action)
            assert _same_obs(out_a[0], out_b[0]) and out_a[1:4] == out_b[1:4]
            if out_a[2] or out_a[3]:
                break
        assert out_a[1] > 0  # the oracle solved it, and so did the replay


def test_capture_after_a_step_is_refused() -> None:
    env = quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0")
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(ConfigError, match="freshly reset"):
        Level.from_env(env)


def test_level_of_another_size_is_refused() -> None:
    env = quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0")
    env.reset(seed=0)
    level = Level.from_env(env)
    bigger = quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0", room_size=10)
    with pytest.raises(ConfigError, match="cannot be replayed"):
        bigger.reset(options={"level": level})
