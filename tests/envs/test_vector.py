"""``gym.make_vec`` on BabyAI++ ids: the batched engine behind Gymnasium's vector API.

Checked against single ``TokenObsWrapper`` envs stepped in lockstep: the seeding rule (sub-env
``i`` of ``reset(seed=s)`` is the single env reset with ``s + i``), both autoreset modes (the
level a sub-env restarts on is replayed in the single env from its ``level_seed`` info), the
``held_out`` info, tensor outputs, partial resets and the spaces.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.agents.runs import read_config
from babyaipp.envs.vector import BatchedVectorEnv, make_vec
from babyaipp.envs.wrappers import TokenObsWrapper
from babyaipp.errors import BabyAIPPError

from .conftest import quiet_make

OBS_KEYS = ("image", "direction", "mission", "description")


def _singles(env_id: str, n: int, **kwargs) -> list[TokenObsWrapper]:
    return [TokenObsWrapper(quiet_make(env_id, **kwargs)) for _ in range(n)]


def _assert_row(obs: dict, i: int, want: dict, where: str) -> None:
    for key in OBS_KEYS:
        assert np.array_equal(np.asarray(obs[key][i]), np.asarray(want[key])), f"{where}: sub-env {i} {key}"


VECTOR_IDS = [
    "BabyAIPP/GoToRedBall-Easy-Train-v0",
    "BabyAIPP/PutNextLocal-Hard-Test-v0",
    "BabyAIPP/GoTo-Easy-TargetPairOnly-v0",
]


@pytest.mark.parametrize("env_id", VECTOR_IDS)
def test_make_vec_returns_the_engine_seeded_like_gymnasium(env_id: str) -> None:
    n, seed = 3, 11
    envs = gym.make_vec(env_id, num_envs=n)
    assert isinstance(envs, BatchedVectorEnv) and envs.num_envs == n
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, infos = envs.reset(seed=seed)
    assert envs.observation_space.contains(obs)
    assert envs.single_observation_space == TokenObsWrapper(quiet_make(env_id)).observation_space
    for i, single in enumerate(_singles(env_id, n)):
        want, info = single.reset(seed=seed + i)
        _assert_row(obs, i, want, f"{env_id} reset")
        assert infos["level_seed"][i] == seed + i and infos["_level_seed"][i]
        assert infos["held_out"][i] == bool(info["held_out_pairs"])
    obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
    assert envs.observation_space.contains(obs)
    assert reward.shape == (n,) and terminated.dtype == bool and truncated.dtype == bool
    envs.close()


def test_held_out_info_flags_test_levels() -> None:
    envs = make_vec("BabyAIPP/GoToLocal-Hard-Test-v0", num_envs=16)
    _, infos = envs.reset(seed=0)
    assert infos["held_out"].any()
    train_envs = make_vec("BabyAIPP/GoToLocal-Hard-Train-v0", num_envs=16)
    assert not train_envs.reset(seed=0)[1]["held_out"].any()


def _lockstep(mode: AutoresetMode, steps: int = 60) -> int:
    """Step the vector env beside single envs that replay each new level; returns restarts seen."""
    env_id, n, seed = "BabyAIPP/GoToRedBall-Easy-Train-v0", 4, 5
    envs = gym.make_vec(env_id, num_envs=n, max_steps=6, pool_size=8, autoreset_mode=mode)
    singles = _singles(env_id, n, max_steps=6)
    obs, _ = envs.reset(seed=seed)
    for i, single in enumerate(singles):
        single.reset(seed=seed + i)
    rng = np.random.default_rng(0)
    ended = np.zeros(n, dtype=bool)
    restarts = 0
    for t in range(steps):
        actions = rng.integers(7, size=n)
        obs, reward, terminated, truncated, infos = envs.step(actions)
        started = infos.get("_level_seed", np.zeros(n, dtype=bool))
        for i, single in enumerate(singles):
            where = f"{mode.value} step {t}"
            if mode == AutoresetMode.NEXT_STEP and ended[i]:
                assert started[i] and reward[i] == 0 and not terminated[i] and not truncated[i], where
                want, _ = single.reset(seed=int(infos["level_seed"][i]))
                _assert_row(obs, i, want, where + " (next-step reset)")
                restarts += 1
                continue
            want, want_reward, want_term, want_trunc, _ = single.step(int(actions[i]))
            assert (reward[i], terminated[i], truncated[i]) == (want_reward, want_term, want_trunc), where
            if mode == AutoresetMode.SAME_STEP and (want_term or want_trunc):
                assert started[i] and infos["_final_obs"][i], where
                _assert_row({k: [v] for k, v in infos["final_obs"][i].items()}, 0, want, where + " (final obs)")
                want, _ = single.reset(seed=int(infos["level_seed"][i]))
                restarts += 1
            else:
                assert not started[i], where
            _assert_row(obs, i, want, where)
        ended = terminated | truncated
    return restarts


def test_next_step_autoreset_matches_single_envs() -> None:
    assert _lockstep(AutoresetMode.NEXT_STEP) >= 8


def test_same_step_autoreset_matches_single_envs() -> None:
    assert _lockstep(AutoresetMode.SAME_STEP) >= 8


def test_tensor_outputs_equal_numpy_outputs() -> None:
    env_id, n = "BabyAIPP/GoToLocal-Easy-Train-v0", 5
    numpy_envs = gym.make_vec(env_id, num_envs=n, max_steps=5)
    tensor_envs = gym.make_vec(env_id, num_envs=n, max_steps=5, tensors=True)
    a_obs, a_info = numpy_envs.reset(seed=2)
    b_obs, b_info = tensor_envs.reset(seed=2)
    assert all(isinstance(v, torch.Tensor) for v in b_obs.values())
    rng = np.random.default_rng(1)
    for _ in range(12):
        actions = rng.integers(7, size=n)
        a = numpy_envs.step(actions)
        b = tensor_envs.step(torch.as_tensor(actions))
        for key in OBS_KEYS:
            assert np.array_equal(a[0][key], b[0][key].numpy())
        for x, y in zip(a[1:4], b[1:4]):
            assert isinstance(y, torch.Tensor) and np.array_equal(x, y.numpy())
        if "_level_seed" in a[4]:
            mask = a[4]["_level_seed"]
            assert np.array_equal(mask, b[4]["_level_seed"].numpy())
            assert np.array_equal(a[4]["level_seed"][mask], b[4]["level_seed"].numpy()[mask])


def test_partial_reset_and_unseeded_reset() -> None:
    envs = make_vec("BabyAIPP/GoToRedBall-Easy-Train-v0", num_envs=4, pool_size=6)
    first, _ = envs.reset(seed=0)
    for _ in range(3):
        envs.step(np.full(4, 2))  # forward
    mask = np.array([True, False, True, False])
    obs, infos = envs.reset(options={"reset_mask": mask})
    assert np.array_equal(infos["_level_seed"], mask)
    assert set(infos["level_seed"][mask]) <= set(range(6))
    again, infos = envs.reset(seed=0)
    for key in OBS_KEYS:
        assert np.array_equal(again[key], first[key])


def test_cuda_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BabyAIPPError, match="CUDA"):
        gym.make_vec("BabyAIPP/GoToRedBall-Easy-Train-v0", num_envs=2, device="cuda")


def test_sync_vectorization_is_still_available() -> None:
    envs = gym.make_vec("BabyAIPP/GoToRedBall-Easy-Train-v0", num_envs=2, vectorization_mode="sync")
    assert isinstance(envs, gym.vector.SyncVectorEnv)
    envs.close()


# ----------------------------------------------------------------------------- stable-baselines3 adapter
def test_pool_seeds_stay_in_their_block() -> None:
    from babyaipp.envs.sb3 import pool_seeds

    assert pool_seeds([5, 6], 4) == [5, 6, 7, 8]
    seeds = pool_seeds([1998, 1999, 1000], 6, (1000, 1999))
    assert seeds == [1998, 1999, 1000, 1001, 1002, 1003]
    assert sorted(pool_seeds([3000 + i for i in range(8)], 1000, (3000, 3999))) == list(range(3000, 4000))
    with pytest.raises(BabyAIPPError):
        pool_seeds([1, 2], 20, (0, 9))


def test_sb3_adapter_same_step_reset_terminal_observation_and_vecmonitor() -> None:
    from stable_baselines3.common.vec_env import VecMonitor

    from babyaipp.envs.sb3 import BatchedSB3VecEnv

    env_id, n = "BabyAIPP/GoToRedBall-Easy-Train-v0", 3
    adapter = BatchedSB3VecEnv(env_id, n, pool_size=10, max_steps=5)
    vec = VecMonitor(adapter)
    vec.seed(40)
    singles = _singles(env_id, n, max_steps=5)
    obs = vec.reset()
    for i, single in enumerate(singles):
        _assert_row(obs, i, single.reset(seed=40 + i)[0], "sb3 reset")
    assert adapter.reset_infos[0]["level_seed"] == 40
    rng = np.random.default_rng(3)
    returns, episodes = np.zeros(n), 0
    for t in range(25):
        actions = rng.integers(7, size=n)
        obs, reward, done, infos = vec.step(actions)
        assert reward.dtype == np.float32 and done.dtype == bool
        for i, single in enumerate(singles):
            want, want_reward, want_term, want_trunc, _ = single.step(int(actions[i]))
            assert (float(reward[i]), bool(done[i])) == (np.float32(want_reward), want_term or want_trunc)
            returns[i] += want_reward
            if done[i]:
                _assert_row({k: [v] for k, v in infos[i]["terminal_observation"].items()}, 0, want, f"final {t}")
                assert infos[i]["TimeLimit.truncated"] == (want_trunc and not want_term)
                assert infos[i]["episode"]["r"] == pytest.approx(returns[i], abs=1e-5)
                returns[i], episodes = 0.0, episodes + 1
                want, _ = single.reset(seed=int(adapter.engine.state["level_seed"][i]))
            else:
                assert "terminal_observation" not in infos[i]
            _assert_row(obs, i, want, f"sb3 step {t}")
    assert episodes >= n
    assert set(adapter.engine.state["level_seed"].tolist()) <= set(range(40, 50))


def test_train_and_resume_with_the_batched_engine(tmp_path) -> None:
    """``babyaipp train --engine batched`` trains, records the engine, and resumes on it."""
    from babyaipp.agents import training, training_resume

    hparams = {"n_steps": 16, "batch_size": 32}
    first = training.train(
        tmp_path / "run",
        engine="batched",
        n_envs=4,
        steps=64,
        hyperparameters=hparams,
        checkpoint_every=64,
        device="cpu",
    )
    assert first.num_timesteps == 64
    config = read_config(tmp_path / "run")
    assert config["engine"] == "batched" and config["train_seeds_used"] == [0, 1, 2, 3]
    again = training_resume.resume(tmp_path / "run", steps=128, device="cpu")
    assert again.num_timesteps == 128 and again.resumed_from == 64
    inner = again.model.get_env().unwrapped
    assert type(inner).__name__ == "BatchedSB3VecEnv"
    assert set(inner.engine.state["level_seed"].tolist()) <= set(range(1000))
