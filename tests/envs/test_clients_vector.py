"""``gym.make_vec`` as Gymnasium 1.x's vector clients use it: conventions, wrappers and bad input.

Each test holds the batched vector env to what Gymnasium's own ``SyncVectorEnv`` does (final
observations and infos only in steps where a sub-env ends, ``AutoresetMode.DISABLED``,
``get_attr`` / ``call`` / ``render``) or to a one-line error where it cannot.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.envs.vector import ResetNeededError
from babyaipp.errors import ConfigError

from .conftest import quiet_make

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"


def _ended_steps(envs: gym.vector.VectorEnv, steps: int, seed: int = 0) -> list[tuple[np.ndarray, dict]]:
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        _, _, terminated, truncated, infos = envs.step(rng.integers(7, size=envs.num_envs))
        out.append((np.asarray(terminated) | np.asarray(truncated), infos))
    return out


# ---------------------------------------------------------------------------- autoreset conventions
def test_same_step_final_obs_and_final_info_only_when_a_sub_env_ends():
    envs = gym.make_vec(ENV_ID, num_envs=3, max_steps=4, autoreset_mode=AutoresetMode.SAME_STEP)
    steps = _ended_steps(envs, 12)
    assert any(ended.any() for ended, _ in steps) and any(not ended.any() for ended, _ in steps)
    for ended, infos in steps:
        if not ended.any():
            assert "final_obs" not in infos and "final_info" not in infos
            continue
        assert np.array_equal(infos["_final_obs"], ended) and np.array_equal(infos["_final_info"], ended)
        for i in range(3):
            assert (infos["final_obs"][i] is not None) == ended[i]
        final_info = infos["final_info"]
        assert np.array_equal(final_info["_level_seed"], ended)
        assert set(final_info["level_seed"][ended].tolist()) <= set(range(3))  # the pool of seeds 0..2


def test_final_info_names_the_level_that_ended_not_the_new_one():
    envs = gym.make_vec(ENV_ID, num_envs=2, max_steps=3, pool_size=50, autoreset_mode=AutoresetMode.SAME_STEP)
    envs.reset(seed=7)
    before = envs.get_attr("level_seed")
    for _ in range(3):
        _, _, terminated, truncated, infos = envs.step(np.zeros(2, dtype=np.int64))
    assert (terminated | truncated).all()
    assert tuple(infos["final_info"]["level_seed"].tolist()) == before == (7, 8)
    assert tuple(infos["level_seed"].tolist()) == envs.get_attr("level_seed")


def test_autoreset_disabled_needs_an_explicit_partial_reset():
    envs = gym.make_vec(ENV_ID, num_envs=2, max_steps=2, autoreset_mode=AutoresetMode.DISABLED)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.DISABLED
    envs.reset(seed=0)
    envs.step(np.zeros(2, dtype=np.int64))
    _, _, _, truncated, infos = envs.step(np.zeros(2, dtype=np.int64))
    assert truncated.all() and "final_obs" not in infos
    with pytest.raises(ResetNeededError, match=r"sub-envs \[0, 1\].*reset_mask"):
        envs.step(np.zeros(2, dtype=np.int64))
    _, infos = envs.reset(options={"reset_mask": np.array([True, True])})
    assert infos["_level_seed"].all()
    _, _, _, truncated, _ = envs.step(np.zeros(2, dtype=np.int64))
    assert not truncated.any()


def test_record_episode_statistics_counts_episodes_of_the_default_numpy_outputs():
    """Gymnasium's RecordEpisodeStatistics is numpy-only (docs/batched.md says so for ``tensors=True``)."""
    stats = RecordEpisodeStatistics(gym.make_vec(ENV_ID, num_envs=2, max_steps=3))
    episodes = [infos for _, infos in _ended_steps(stats, 8) if "episode" in infos]
    assert episodes and all(infos["episode"]["l"][infos["_episode"]].max() <= 3 for infos in episodes)
    assert len(stats.return_queue) >= 4


def test_record_episode_statistics_refuses_tensor_outputs_naming_the_fix():
    with pytest.raises(ConfigError, match="tensors=False"):
        RecordEpisodeStatistics(gym.make_vec(ENV_ID, num_envs=2, tensors=True))
    RecordEpisodeStatistics(gym.make_vec(ENV_ID, num_envs=2))  # numpy outputs: accepted
    RecordEpisodeStatistics(gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync"))  # other envs unaffected


# ---------------------------------------------------------------------------- sub-env access
def test_get_attr_and_call_give_one_value_per_sub_env():
    envs = gym.make_vec(ENV_ID, num_envs=3, room_size=7)
    envs.reset(seed=4)
    assert envs.get_attr("level_seed") == (4, 5, 6)
    assert envs.get_attr("room_size") == (7, 7, 7)
    assert envs.call("step_count") == (0.0, 0.0, 0.0)
    assert envs.get_attr("spec")[0].id == ENV_ID
    with pytest.raises(ConfigError, match=r"'agent_pos'.*vectorization_mode='sync'"):
        envs.get_attr("agent_pos")
    with pytest.raises(ConfigError, match="set_attr"):
        envs.set_attr("room_size", 9)


def test_render_gives_the_single_envs_frames():
    envs = gym.make_vec(ENV_ID, num_envs=2, render_mode="rgb_array")
    singles = [quiet_make(ENV_ID, render_mode="rgb_array") for _ in range(2)]
    envs.reset(seed=3)
    rng = np.random.default_rng(0)
    for i, single in enumerate(singles):
        single.reset(seed=3 + i)
    for t in range(6):
        frames = envs.render()
        for i, single in enumerate(singles):
            assert np.array_equal(frames[i], single.render()), f"step {t} sub-env {i}"
        actions = rng.integers(3, size=2)  # turns and forward: the frame changes
        envs.step(actions)
        for i, single in enumerate(singles):
            single.step(int(actions[i]))
    with pytest.raises(ConfigError, match="render_mode='rgb_array'"):
        gym.make_vec(ENV_ID, num_envs=2).render()


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "actions, match",
    [
        (np.array([0, 7]), r"action 7 of sub-env 1 is out of range; valid actions: 0\.\.6"),
        (np.array([0, -1]), r"action -1 of sub-env 1"),
        (np.array([0.0, 2.5]), r"actions must be integers \(got dtype float64\)"),
        (torch.tensor([1.0, 2.0]), r"actions must be integers \(got dtype float32\)"),
        (np.array([0, 1, 2]), r"shape \(2,\)"),
    ],
)
def test_bad_actions_are_refused_like_the_single_env(actions, match: str):
    envs = gym.make_vec(ENV_ID, num_envs=2)
    envs.reset(seed=0)
    with pytest.raises(ConfigError, match=match):
        envs.step(actions)


def test_step_before_reset_is_a_clear_error():
    envs = gym.make_vec(ENV_ID, num_envs=2)
    with pytest.raises(ResetNeededError, match="reset"):
        envs.step(np.zeros(2, dtype=np.int64))
    assert isinstance(ResetNeededError("x"), gym.error.ResetNeeded)


@pytest.mark.parametrize("num_envs", [2.5, "2", True, 0])
def test_num_envs_must_be_a_positive_integer(num_envs):
    with pytest.raises(ConfigError, match="num_envs"):
        gym.make_vec(ENV_ID, num_envs=num_envs)


@pytest.mark.parametrize("seed", [2**63, 2**64 + 3, -1, 1.5])
def test_seeds_outside_int64_are_refused(seed):
    envs = gym.make_vec(ENV_ID, num_envs=2)
    with pytest.raises(ConfigError, match="seed"):
        envs.reset(seed=seed)


def test_large_seeds_in_range_and_seed_lists_work():
    envs = gym.make_vec(ENV_ID, num_envs=2)
    big = 2**62
    _, infos = envs.reset(seed=big)
    assert infos["level_seed"].tolist() == [big, big + 1]
    _, infos = envs.reset(seed=[5, 9])
    assert infos["level_seed"].tolist() == [5, 9]
    with pytest.raises(ConfigError, match="2 seeds"):
        envs.reset(seed=[1, 2, 3])


# ---------------------------------------------------------------------------- other vectorization modes
def test_async_mode_works_without_shared_memory():
    """The single env's observation holds Text (mission, description), which shared memory cannot hold."""
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="async", vector_kwargs={"shared_memory": False})
    try:
        obs, _ = envs.reset(seed=0)
        assert isinstance(obs["mission"][0], str)
        envs.step(np.zeros(2, dtype=np.int64))
    finally:
        envs.close()


def test_sync_mode_with_the_token_wrapper_matches_the_default_mode():
    """The documented way to get the default mode's token observations from single envs."""
    from babyaipp.envs.wrappers import TokenObsWrapper

    sync = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", wrappers=[TokenObsWrapper])
    batched = gym.make_vec(ENV_ID, num_envs=2)
    assert sync.single_observation_space == batched.single_observation_space
    a, _ = sync.reset(seed=1)
    b, _ = batched.reset(seed=1)
    assert all(np.array_equal(a[key], b[key]) for key in a)
    plain = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync")
    assert isinstance(plain.single_observation_space["description"], gym.spaces.Text)
    assert isinstance(plain.reset(seed=1)[0]["mission"][0], str)


def test_the_engine_and_the_sb3_adapter_refuse_fractional_num_envs_too():
    from babyaipp.envs.batched import BatchedBabyAIPP
    from babyaipp.envs.sb3 import BatchedSB3VecEnv

    for make in (BatchedBabyAIPP, BatchedSB3VecEnv):
        with pytest.raises(ConfigError, match=r"num_envs=2\.5 must be an integer"):
            make(ENV_ID, 2.5)
