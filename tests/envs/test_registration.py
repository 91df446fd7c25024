"""Registration, Gymnasium API conformance, seeding, and errors on bad input."""

from __future__ import annotations

import random
import re
import signal
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import babyaipp
import babyaipp.envs as envs
from babyaipp.envs.dynamics import DIFFICULTIES, SPLITS
from babyaipp.envs.physics import ACTION_NAMES
from babyaipp.envs.registration import valid_keywords
from babyaipp.errors import BabyAIPPError, InvalidChoiceError

from .conftest import quiet_make

SEEDING_IDS = [
    "BabyAIPP/GoToLocal-Hard-Test-v0",
    "BabyAIPP/GoToRedBallMaze-Easy-Train-v0",
    "BabyAIPP/PutNextLocal-Hard-TargetPairOnly-v0",
    "BabyAIPP/GoToSeq-Easy-Test-v0",
    "BabyAIPP/Unlock-Hard-Train-v0",
]


# ---------------------------------------------------------------------------- ids
def test_every_task_difficulty_split_is_registered_once():
    expected = {f"BabyAIPP/{t}-{d}-{s}-v0" for t in envs.TASKS for d in DIFFICULTIES for s in SPLITS}
    assert len(envs.ENV_IDS) == len(set(envs.ENV_IDS)) == 120  # 10 families x sparse/dense x 2 x 3
    assert set(envs.ENV_IDS) == expected
    assert expected <= set(gym.registry)
    for env_id in envs.ENV_IDS:
        task, difficulty, split = envs.parse_env_id(env_id)
        assert envs.env_id(task, difficulty, split) == env_id


def test_split_ids_name_the_same_task_and_difficulty():
    ids = envs.split_ids("BabyAIPP/PutNext-Hard-Train-v0")
    assert ids == {
        "Train": "BabyAIPP/PutNext-Hard-Train-v0",
        "Test": "BabyAIPP/PutNext-Hard-Test-v0",
        "TargetPairOnly": "BabyAIPP/PutNext-Hard-TargetPairOnly-v0",
    }


def test_registered_env_carries_its_difficulty_and_split():
    env = quiet_make("BabyAIPP/GoTo-Hard-TargetPairOnly-v0").unwrapped
    assert (env.difficulty, env.split, env.text_mode) == ("Hard", "TargetPairOnly", "full")
    assert env.properties_per_colour == 2


def test_module_prefixed_id_and_register_envs_work():
    gym.register_envs(babyaipp)
    env = gym.make("babyaipp:BabyAIPP/GoToRedBall-Easy-Train-v0")
    obs, info = env.reset(seed=3)
    assert obs["mission"] == "go to the red ball"
    assert envs.make("babyaipp:BabyAIPP/GoToRedBall-Easy-Train-v0").reset(seed=3)[0]["mission"] == obs["mission"]


def test_keywords_reach_the_level():
    env = quiet_make("BabyAIPP/GoToLocal-Easy-Train-v0", room_size=6, max_steps=17, text="none").unwrapped
    obs, _ = env.reset(seed=0)
    assert (env.width, env.height, env.max_steps) == (6, 6, 17)
    assert obs["description"] == ""


# ---------------------------------------------------------------------------- API conformance
@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_gymnasium_env_checker_passes(env_id: str):
    env = quiet_make(env_id).unwrapped  # rendering is checked in test_wrappers_and_api
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*font.*")
        check_env(env)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(info) >= {"dynamics", "held_out_pairs"}


@pytest.mark.parametrize(
    "text",
    [
        "full",
        "partial",
        "lorem",
        "none",  # the empty description must be inside the Text space (min_length=0)
    ],
)
def test_observations_are_in_the_observation_space_in_every_text_mode(text: str):
    env = quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0", text=text).unwrapped
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*font.*")
        check_env(env)


# ---------------------------------------------------------------------------- seeding
def _rollout(env_id: str, seed: int, n_steps: int = 60) -> list:
    """Everything an episode exposes, over random actions from a generator seeded like the env."""
    env = quiet_make(env_id)
    actions = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    trace = [(obs["image"].tobytes(), obs["direction"], obs["mission"], obs["description"], repr(info))]
    for _ in range(n_steps):
        obs, reward, terminated, truncated, _ = env.step(int(actions.integers(7)))
        u = env.unwrapped
        trace.append(
            (obs["image"].tobytes(), obs["direction"], reward, terminated, truncated, u.step_count, tuple(u.agent_pos))
        )
        if terminated or truncated:
            obs, info = env.reset()
            trace.append((obs["image"].tobytes(), obs["mission"], obs["description"], repr(info)))
    return trace


@pytest.mark.parametrize("env_id", SEEDING_IDS)
def test_same_seed_same_episode_different_seed_different(env_id: str):
    first = _rollout(env_id, seed=11)
    random.seed(123)  # global RNGs must play no part
    np.random.seed(123)
    assert _rollout(env_id, seed=11) == first
    assert _rollout(env_id, seed=12) != first


def test_different_seeds_draw_different_worlds():
    env = quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0").unwrapped
    worlds = set()
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        worlds.add((env.floor.tobytes(), obs["mission"], obs["description"], repr(sorted(info["dynamics"].items()))))
    assert len(worlds) == 20


def test_global_random_state_is_untouched():
    random.seed(5)
    np.random.seed(5)
    py_state, np_state = random.getstate(), np.random.get_state()
    env = quiet_make("BabyAIPP/GoToRedBallMaze-Hard-Test-v0", text="partial")
    for seed in range(5):
        env.reset(seed=seed)
        for action in (2, 0, 2, 1, 2, 5, 2):
            env.step(action)
    lorem = quiet_make("BabyAIPP/GoToLocal-Easy-Test-v0", text="lorem")
    lorem.reset(seed=0)
    assert random.getstate() == py_state
    np_after = np.random.get_state()
    assert np_after[0] == np_state[0] and np.array_equal(np_after[1], np_state[1]) and np_after[2:] == np_state[2:]


# ---------------------------------------------------------------------------- bad input
def _assert_names(err: pytest.ExceptionInfo, bad: str, choices: list[str]) -> None:
    message = str(err.value)
    assert bad in message, message
    for choice in choices:
        assert choice in message, message


@pytest.mark.parametrize(
    "bad_id, bad, choices",
    [
        ("BabyAIPP/GoToBlueBall-Easy-Train-v0", "GoToBlueBall", list(envs.TASKS)),
        ("BabyAIPP/GoToLocal-Medium-Train-v0", "Medium", list(DIFFICULTIES)),
        ("BabyAIPP/GoToLocal-Easy-Validation-v0", "Validation", list(SPLITS)),
        ("BabyAIPP/GoToLocal-v0", "BabyAIPP/GoToLocal-v0", ["Easy|Hard", "Train|Test|TargetPairOnly"]),
        ("GoToLocal-Easy-Train", "GoToLocal-Easy-Train", ["BabyAIPP/<Task>"]),
    ],
)
def test_unknown_id_names_the_bad_part_and_the_choices(bad_id: str, bad: str, choices: list[str]):
    with pytest.raises(InvalidChoiceError) as err:
        envs.make(bad_id)
    _assert_names(err, bad, choices)
    with pytest.raises(BabyAIPPError):
        envs.split_ids(bad_id)


@pytest.mark.parametrize("maker", [envs.make, gym.make])
def test_bad_keywords_name_the_value_and_the_choices(maker):
    env_id = "BabyAIPP/GoToLocal-Easy-Train-v0"
    with pytest.raises(InvalidChoiceError) as err:
        maker(env_id, text="verbose")
    _assert_names(err, "verbose", ["full", "partial", "lorem", "none"])
    with pytest.raises(InvalidChoiceError) as err:
        maker(env_id, room_sise=8)
    _assert_names(err, "room_sise", ["room_size", "max_steps", "text", "num_dists"])
    with pytest.raises(InvalidChoiceError) as err:
        maker("BabyAIPP/GoToLocal-Hard-Train-v0", properties_per_colour=3)
    _assert_names(err, "3", ["1", "2"])


#: A value for every keyword some task advertises in its "valid choices" (registration.valid_keywords).
KEYWORD_VALUES = {
    "agent_pov": True,
    "agent_view_size": 5,
    "doors_open": True,
    "floor": "dense",
    "highlight": False,
    "max_steps": 50,
    "num_cols": 2,
    "num_rows": 2,
    "implicit_unlock": False,
    "instr_kinds": ["action"],
    "num_dists": 2,
    "num_objs": 3,
    "objs_per_room": 3,
    "properties_per_colour": 1,
    "render_mode": "rgb_array",
    "room_size": 7,
    "screen_size": 320,
    "see_through_walls": False,
    "start_carrying": True,
    "text": "lorem",
    "tile_size": 16,
}


@pytest.mark.parametrize("task, keyword", [(t, k) for t in envs.TASKS for k in valid_keywords(t)])
def test_every_advertised_keyword_is_accepted(task: str, keyword: str):
    assert keyword in KEYWORD_VALUES, f"no test value for the advertised keyword {keyword!r}"
    env = quiet_make(envs.env_id(task, "Hard", "Test"), **{keyword: KEYWORD_VALUES[keyword]})
    env.reset(seed=0)
    env.step(2)


@pytest.mark.parametrize("task, keyword", [("GoToLocal", "see_through_walls"), ("PickupLoc", "num_dists")])
def test_keywords_the_level_sets_itself_are_refused_by_name(task: str, keyword: str):
    """A parent's keyword that the level passes itself must be refused clearly, not crash with TypeError."""
    with pytest.raises(InvalidChoiceError) as err:
        gym.make(envs.env_id(task, "Easy", "Train"), **{keyword: KEYWORD_VALUES[keyword]})
    _assert_names(err, keyword, ["max_steps", "room_size"])


def _raise_timeout(signum, frame):
    raise TimeoutError("reset did not return")


def test_a_room_too_small_for_tiles_fails_instead_of_hanging():
    env = quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0", room_size=4, num_dists=0)
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.alarm(10)  # the error comes in well under a second
    try:
        try:
            env.reset(seed=0)  # fine if a level can be built ...
        except BabyAIPPError as err:  # ... or refused with a clear message
            assert "room_size" in str(err)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_properties_per_colour_1_is_accepted_for_hard():
    env = quiet_make("BabyAIPP/GoToLocal-Hard-Train-v0", properties_per_colour=1)
    _, info = env.reset(seed=0)
    assert all(len(props) == 1 for props in info["dynamics"].values())


@pytest.mark.parametrize("bad_action", [7, -1, "x", None, 2.5])
@pytest.mark.parametrize("wrapped", [True, False])
def test_out_of_range_action_names_the_value_and_the_actions(bad_action, wrapped: bool):
    env = quiet_make("BabyAIPP/GoToLocal-Easy-Train-v0")
    env = env if wrapped else env.unwrapped
    env.reset(seed=0)
    with pytest.raises(InvalidChoiceError) as err:
        env.step(bad_action)
    _assert_names(err, repr(bad_action), list(ACTION_NAMES))
    assert re.search(r"\b0\b.*\b6\b", str(err.value))


def test_numpy_integer_actions_are_accepted():
    env = quiet_make("BabyAIPP/GoToLocal-Easy-Train-v0")
    env.reset(seed=0)
    for action in (np.int64(2), np.int32(0), np.array(1)):
        env.step(action)
