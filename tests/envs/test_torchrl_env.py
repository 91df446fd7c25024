"""The batched engine as a TorchRL ``EnvBase``: TorchRL's spec check, and rollouts that replay the Gymnasium vector env.

The rollout tests drive both with the same seed and the same (random) actions and compare every
observation, reward and done; short ``max_steps`` make several episodes end and restart per run.
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

pytest.importorskip("torchrl")
pytest.importorskip("tensordict")

from torchrl.envs.utils import check_env_specs  # noqa: E402

import babyaipp  # noqa: E402, F401  (registers the ids)
from babyaipp.envs.torchrl_env import OBS_KEYS, BabyAIPPTorchRLEnv  # noqa: E402
from babyaipp.errors import ConfigError  # noqa: E402

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"
N, STEPS, MAX_STEPS = 6, 60, 9


def _rollout(seed: int, torch_seed: int = 0, n: int = N, copy_rows: bool = True, **kwargs):
    env = BabyAIPPTorchRLEnv(ENV_ID, n, max_steps=MAX_STEPS, **kwargs)
    env.engine.copy_rows = copy_rows  # False: the reset path of other devices (torch.where, every row redrawn)
    env.set_seed(seed)
    torch.manual_seed(torch_seed)  # the random policy of rollout draws from torch's global generator
    return env.rollout(STEPS, break_when_any_done=False)


def test_check_env_specs_passes_and_specs_live_on_the_engine_device():
    env = BabyAIPPTorchRLEnv(ENV_ID, 4)
    check_env_specs(env)
    assert env.batch_size == torch.Size([4])
    assert env.observation_spec["image"].shape == (4, 7, 7, 3)
    assert env.observation_spec["image"].dtype == torch.uint8
    assert env.observation_spec["description"].shape == (4, 3, 8)
    assert env.reward_spec.dtype == torch.float32 and env.reward_spec.shape == (4, 1)
    assert set(env.full_done_spec.keys()) == {"done", "terminated", "truncated"}
    assert env.observation_spec.device == env.engine.device == torch.device("cpu")


@pytest.mark.parametrize("copy_rows", [True, False], ids=["cpu-reset", "device-reset"])
def test_rollout_replays_the_same_step_vector_env_exactly(copy_rows):
    td = _rollout(seed=3, copy_rows=copy_rows)
    actions = td["action"]
    ended = td["next", "done"].squeeze(-1)
    assert 3 <= int(ended.sum()) and not bool(ended.all())  # several episodes end and restart
    vec = gym.make_vec(ENV_ID, num_envs=N, max_steps=MAX_STEPS, autoreset_mode=AutoresetMode.SAME_STEP)
    obs, _ = vec.reset(seed=3)
    for t in range(STEPS):
        for key in OBS_KEYS:
            np.testing.assert_array_equal(td[key][:, t].numpy(), obs[key], err_msg=f"{key} before step {t}")
        obs, reward, terminated, truncated, infos = vec.step(actions[:, t].numpy())
        np.testing.assert_array_equal(td["next", "reward"][:, t, 0].numpy(), reward.astype(np.float32))
        np.testing.assert_array_equal(td["next", "terminated"][:, t, 0].numpy(), terminated)
        np.testing.assert_array_equal(td["next", "truncated"][:, t, 0].numpy(), truncated)
        done = terminated | truncated
        for i in range(N):  # ("next", obs) is the ended episode's last observation, as final_obs gives it
            final = infos["final_obs"][i] if done[i] else {k: v[i] for k, v in obs.items()}
            for key in OBS_KEYS:
                np.testing.assert_array_equal(td["next", key][i, t].numpy(), final[key])


def test_first_episodes_match_the_default_vector_env():
    """``gym.make_vec``'s default NEXT_STEP autoreset spends one step on each restart; up to every
    sub-env's first episode end the two are the same episode."""
    td = _rollout(seed=5)
    vec = gym.make_vec(ENV_ID, num_envs=N, max_steps=MAX_STEPS)
    obs, _ = vec.reset(seed=5)
    alive = np.ones(N, dtype=bool)
    for t in range(STEPS):
        for key in OBS_KEYS:
            np.testing.assert_array_equal(td[key][alive, t].numpy(), obs[key][alive])
        obs, reward, terminated, truncated, _ = vec.step(td["action"][:, t].numpy())
        np.testing.assert_array_equal(td["next", "reward"][alive, t, 0].numpy(), reward[alive].astype(np.float32))
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    assert not alive.any()


def test_set_seed_decides_the_rollout():
    a, b, c = _rollout(seed=7), _rollout(seed=7), _rollout(seed=8)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["next", "reward"], b["next", "reward"])
    assert not torch.equal(a["mission"][:, 0], c["mission"][:, 0])


def test_partial_reset_restarts_only_the_masked_slots():
    env = BabyAIPPTorchRLEnv(ENV_ID, 4, max_steps=50)
    env.set_seed(1)
    td = env.reset()
    for _ in range(3):
        td = env.step(td.set("action", torch.full((4,), 2)))["next"].clone()  # forward x3
    steps_before = env.engine.state["half_steps"].clone()
    assert bool((steps_before > 0).all())
    mask = torch.tensor([True, False, False, True]).unsqueeze(-1)
    out = env.reset(td.clone().set("_reset", mask))
    after = env.engine.state["half_steps"]
    assert after[[0, 3]].tolist() == [0, 0] and torch.equal(after[[1, 2]], steps_before[[1, 2]])
    for key in OBS_KEYS:  # the slots kept their observations
        assert torch.equal(out[key][[1, 2]], td[key][[1, 2]])
    assert not bool(out["done"].any())


def test_a_collector_gathers_frames_from_the_env():
    import torchrl.collectors as collectors

    make_collector = getattr(collectors, "Collector", None) or collectors.SyncDataCollector  # renamed in 0.14
    env = BabyAIPPTorchRLEnv(ENV_ID, 4, max_steps=MAX_STEPS)
    env.set_seed(0)
    collector = make_collector(env, policy=None, frames_per_batch=4 * 20, total_frames=4 * 40)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 2 and batches[0].batch_size == torch.Size([4, 20])
    assert bool(batches[1]["next", "done"].any())  # episodes of 9 steps end inside each batch
    assert batches[0]["next", "reward"].dtype == torch.float32


def test_wrapping_a_reset_engine_keeps_its_pool():
    from babyaipp.envs.batched import BatchedBabyAIPP

    engine = BatchedBabyAIPP(ENV_ID, 3, pool_size=5, seed=4)
    engine.reset()
    pool = engine.pool
    env = BabyAIPPTorchRLEnv(engine=engine)
    assert env.num_envs == 3 and not engine.auto_reset
    check_env_specs(env)
    td = env.rollout(5, break_when_any_done=False)
    assert env.engine.pool is pool and td.batch_size == torch.Size([3, 5])


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ConfigError, match="num_envs"):
        BabyAIPPTorchRLEnv(ENV_ID, 0)
    with pytest.raises(ConfigError, match="engine="):
        BabyAIPPTorchRLEnv(ENV_ID)
    env = BabyAIPPTorchRLEnv(ENV_ID, 2)
    with pytest.raises(ConfigError, match="seed"):
        env.set_seed(-1)


def test_import_babyaipp_does_not_import_torchrl():
    code = "import sys, babyaipp, babyaipp.envs, babyaipp.envs.vector; assert 'torchrl' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
