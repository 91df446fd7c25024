"""stable-baselines3 as a new user drives it: ``PPO("MultiInputPolicy", TokenObsWrapper(gym.make(id)))``.

SB3 takes a ``(7, 7, 3)`` uint8 box bounded by 0..255 for a picture: its default policy puts an
8x8-kernel CNN on it (which crashes on a 7x7 view) and every policy divides it by 255, which turns
cell indices into values below 0.04. The wrapper's image box is bounded by the index ranges, so
neither happens; these tests hold SB3 to that, and run the docs' example.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.preprocessing import is_image_space

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.agents.models import ImageExtractor
from babyaipp.envs.wrappers import TokenObsWrapper

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "environments.md"


def _env() -> gym.Env:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*font.*")
        return TokenObsWrapper(gym.make(ENV_ID, max_steps=16))


def test_sb3_does_not_take_the_cell_encoding_for_a_picture():
    space = _env().observation_space["image"]
    assert not is_image_space(space)
    assert space.high.max() == 10 and "\n" not in repr(space)  # one-line error messages stay one line


def test_both_checkers_accept_the_wrapped_env():
    from gymnasium.utils.env_checker import check_env

    env = _env()
    check_env(env.unwrapped, skip_render_check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3's advice about shapes; errors still raise
        sb3_check_env(env)


def test_ppo_with_sb3s_default_multi_input_policy_trains():
    model = PPO("MultiInputPolicy", _env(), n_steps=32, batch_size=32, n_epochs=1, device="cpu", seed=0)
    model.learn(64)
    action, _ = model.predict(_env().reset(seed=0)[0], deterministic=True)
    assert 0 <= int(action) < 7


def test_recurrent_ppo_with_its_default_policy_trains():
    sb3_contrib = pytest.importorskip("sb3_contrib")
    model = sb3_contrib.RecurrentPPO(
        "MultiInputLstmPolicy", _env(), n_steps=32, batch_size=32, n_epochs=1, device="cpu", seed=0
    )
    model.learn(32)


def test_image_extractor_alone_sees_the_cell_indices_not_a_255th_of_them():
    """``features_extractor_class=ImageExtractor`` without ``normalize_images=False``: no blinding."""
    env = _env()
    model = PPO("MultiInputPolicy", env, policy_kwargs={"features_extractor_class": ImageExtractor}, device="cpu")
    seen: list[torch.Tensor] = []
    model.policy.features_extractor.register_forward_hook(lambda module, args, out: seen.append(args[0]["image"]))
    obs, _ = env.reset(seed=0)
    model.predict(obs)
    image = seen[0][0]
    assert image.shape == (7, 7, 3)  # not transposed to channels-first either
    assert torch.equal(image, torch.as_tensor(obs["image"], dtype=image.dtype))
    assert image.max() >= 2  # walls (2), objects (5-7): indices, not fractions


def _docs_example() -> str:
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    examples = [b for b in blocks if "PPO(" in b and "TokenObsWrapper" in b]
    assert len(examples) == 1, "docs/environments.md should hold one stable-baselines3 example"
    return examples[0]


def _run_example(code: str) -> dict:
    namespace: dict = {}
    exec(compile(code, str(DOCS), "exec"), namespace)  # the example as a user pastes it
    obs, _ = namespace["env"].reset(seed=1)
    assert 0 <= int(np.asarray(namespace["model"].predict(obs)[0])) < 7
    return namespace


@pytest.mark.slow
def test_the_docs_stable_baselines3_example_runs_as_written():
    """About 60 s on the shared 2-core machine (512 steps, 80 gradient steps of ConcatExtractor)."""
    namespace = _run_example(_docs_example())
    assert namespace["model"].num_timesteps >= 512


def test_the_docs_stable_baselines3_example_runs_with_a_small_budget():
    code = _docs_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 7
    small = re.sub(r"n_steps=\d+", "n_steps=32, batch_size=32, n_epochs=1", code)
    small = re.sub(r"\.learn\(\d+\)", ".learn(32)", small)
    assert small != code
    assert _run_example(small)["model"].num_timesteps == 32
