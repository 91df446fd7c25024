"""Fully observed views keep the floor tiles: the package's wrapper shows them, minigrid's refuse.

minigrid's ``FullyObsWrapper``, ``SymbolicObsWrapper`` and ``ViewSizeWrapper`` rebuild the image
from ``env.grid`` alone, which holds no floor, so the episode's dynamics would vanish from the
observation without a word.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.constants import OBJECT_TO_IDX
from minigrid.wrappers import FullyObsWrapper, SymbolicObsWrapper, ViewSizeWrapper

import babyaipp  # noqa: F401  (registers the ids; makes minigrid's floorless wrappers refuse)
from babyaipp.envs.tiles import NO_TILE
from babyaipp.envs.wrappers import FullyObsFloorWrapper, TokenObsWrapper
from babyaipp.errors import ConfigError

ENV_ID = "BabyAIPP/GoToLocal-Hard-Train-v0"
FLOOR, EMPTY, AGENT = OBJECT_TO_IDX["floor"], OBJECT_TO_IDX["empty"], OBJECT_TO_IDX["agent"]


def _make(**kwargs) -> gym.Env:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*font.*")
        return gym.make(ENV_ID, floor="dense", **kwargs)


@pytest.mark.parametrize(
    "wrapper, instead",
    [
        (FullyObsWrapper, "FullyObsFloorWrapper"),
        (SymbolicObsWrapper, "FullyObsFloorWrapper"),
        (lambda env: ViewSizeWrapper(env, 5), "agent_view_size"),
    ],
)
def test_minigrid_floorless_wrappers_refuse_babyaipp_envs(wrapper, instead: str):
    with pytest.raises(ConfigError, match=f"drops BabyAI\\+\\+'s floor tiles.*{instead}"):
        wrapper(_make())


def test_minigrid_wrappers_still_work_on_minigrid_envs():
    obs, _ = FullyObsWrapper(gym.make("BabyAI-GoToLocal-v0")).reset(seed=0)
    assert obs["image"].shape == (8, 8, 3)
    SymbolicObsWrapper(gym.make("BabyAI-GoToLocal-v0")).reset(seed=0)


def test_the_full_view_shows_every_tile_on_an_empty_cell():
    env = FullyObsFloorWrapper(_make())
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        base = env.unwrapped
        image, floor = obs["image"], base.floor
        assert env.observation_space.contains(obs)
        x, y = (int(v) for v in base.agent_pos)
        grid = base.grid.encode()
        tiles = (floor != NO_TILE) & (grid[..., 0] == EMPTY)
        tiles[x, y] = False
        assert tiles.sum() > 0
        assert np.array_equal(image[..., 0] == FLOOR, tiles)
        assert np.array_equal(image[tiles, 1], floor[tiles])
        assert tuple(image[x, y]) == (AGENT, 0, base.agent_dir)
        others = ~tiles
        others[x, y] = False
        assert np.array_equal(image[others], grid[others])  # the rest is minigrid's FullyObsWrapper encoding


def test_the_full_view_agrees_with_the_egocentric_view_on_every_visible_cell():
    env = FullyObsFloorWrapper(_make())
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(30):
        base = env.unwrapped
        ego = base.gen_obs()["image"]
        for wx in range(base.width):
            for wy in range(base.height):
                view = base.relative_coords(wx, wy)
                if view is None or (wx, wy) == tuple(int(v) for v in base.agent_pos) or ego[view][0] == 0:
                    continue
                assert tuple(obs["image"][wx, wy]) == tuple(ego[view]), (wx, wy)
                checked += int(ego[view][0] == FLOOR)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
        if terminated or truncated:
            obs, _ = env.reset(seed=int(rng.integers(100)))
    assert checked > 0


def test_the_full_view_composes_with_the_token_wrapper_and_checkers():
    from gymnasium.utils.env_checker import check_env

    env = TokenObsWrapper(FullyObsFloorWrapper(_make()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # check_env notes that it was given a wrapped env
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (8, 8, 3) and env.observation_space.contains(obs)
    assert [w.name for w in env.spec.additional_wrappers] == ["FullyObsFloorWrapper", "TokenObsWrapper"]


def test_the_full_view_needs_a_floor():
    with pytest.raises(ConfigError, match="minigrid.wrappers.FullyObsWrapper"):
        FullyObsFloorWrapper(gym.make("BabyAI-GoToLocal-v0"))
