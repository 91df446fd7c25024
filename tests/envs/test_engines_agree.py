"""Property-based: any level x any action sequence gives identical outputs in both engines.

``hypothesis`` draws a task family (sparse and dense floors), a difficulty, a split, a reset seed
and a sequence of actions (each a raw action, or "the oracle's action" so that episodes also end
in success); the single env plays them, the batched engine plays the same level (captured as a
``Level``) beside it, and every observation (image, direction, mission and description tokens),
reward, termination, truncation, pose and counter must be equal (``tests/envs/twin.py``). The
default run draws 20 cases, the slow run 400, both derandomised so that every run draws the same.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import babyaipp.envs as envs
from babyaipp.envs.oracle import NoPlanError, Oracle

from .conftest import quiet_make
from .twin import BatchedTwin

TASKS = tuple(envs.TASKS)
ORACLE = -1  # an action drawn as ORACLE is the oracle's next action
_SINGLES: dict[str, Any] = {}


def _single(env_id: str) -> Any:
    if env_id not in _SINGLES:
        _SINGLES[env_id] = quiet_make(env_id)
    return _SINGLES[env_id]


def play_both(task: str, difficulty: str, split: str, seed: int, actions: list[int]) -> int:
    """Play ``actions`` from the level of ``seed`` in both engines, checking every step; returns the steps played."""
    env_id = envs.env_id(task, difficulty, split)
    env = _single(env_id)
    env.reset(seed=seed)
    twin = BatchedTwin(env, env_id)
    oracle = Oracle(env)
    oracle.reset()
    for t, drawn in enumerate(actions):
        action = drawn
        if drawn == ORACLE:
            try:
                action = oracle.act()
            except NoPlanError:
                action = 0
        result = env.step(action)
        twin.step(env, action, result)
        if result[2] or result[3]:
            return t + 1
    return len(actions)


cases = st.tuples(
    st.sampled_from(TASKS),
    st.sampled_from(envs.DIFFICULTIES),
    st.sampled_from(envs.SPLITS),
    st.integers(0, 10**6),
    # Half the steps the oracle's action (so episodes also end in success), half a raw action.
    st.lists(st.sampled_from((ORACLE,) * 7 + tuple(range(7))), min_size=20, max_size=150),
)


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_engines_agree_on_random_levels_and_actions(case):
    play_both(*case)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_engines_agree_on_many_random_levels_and_actions(case):
    play_both(*case)


def test_the_check_covers_successes_traps_and_time_limits():
    """The cases the property test draws reach every kind of episode end (so its checks are not vacuous)."""
    ends = set()
    for seed in range(12):
        env_id = envs.env_id("GoToLocal", "Hard", "Test")
        env = _single(env_id)
        env.reset(seed=seed)
        twin = BatchedTwin(env, env_id)
        oracle = Oracle(env)
        oracle.reset()
        for t in range(200):
            action = oracle.act() if seed % 3 == 0 else (t * 7 + seed) % 3
            result = env.step(action)
            twin.step(env, action, result)
            if result[2] or result[3]:
                ends.add("success" if result[1] > 0 else "trap" if result[2] else "time limit")
                break
    assert ends == {"success", "trap", "time limit"}
