"""Bad env keywords and infeasible settings: one-line errors naming the keyword, never a hang.

Also the ``TypeError`` contract of unknown keywords, which clients that probe keywords rely on
(TorchRL's ``GymEnv`` passes ``frameskip=`` and retries without it on a ``TypeError`` whose message
says ``unexpected keyword argument 'frameskip'``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import gymnasium as gym
import pytest

import babyaipp.envs as envs
from babyaipp.envs.level import Level
from babyaipp.envs.validation import GenerationBudget, GenerationError
from babyaipp.errors import BabyAIPPError, ConfigError, InvalidChoiceError, UnknownKeywordError

from .conftest import quiet_make

LOCAL = "BabyAIPP/GoToLocal-Easy-Train-v0"


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``."""

    def _timeout(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s: generation is unbounded")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------- infeasible settings
@pytest.mark.parametrize(
    "task, kwargs, named",
    [
        ("GoToRedBall", {"room_size": 3}, "room_size=3"),
        ("GoToRedBall", {"num_dists": 1000}, "num_dists=1000"),
        ("GoTo", {"room_size": 3}, "room_size=3"),
        ("PutNextLocal", {"room_size": 4}, "room_size=4"),
    ],
)
def test_infeasible_settings_fail_fast_naming_the_keyword(task: str, kwargs: dict[str, Any], named: str):
    env = quiet_make(envs.env_id(task, "Easy", "Train"), **kwargs)
    with deadline(30), pytest.raises(GenerationError) as err:  # about 1 s each, measured
        env.reset(seed=0)
    message = str(err.value)
    assert named in message and "\n" not in message, message
    assert "larger room_size" in message


def test_crowded_but_feasible_settings_still_generate():
    """GoToRedBall's 7 distractors in a 6x6 room: hundreds of rejected attempts per level, then a level.

    A bound of 200 attempts refused 107 of 303 seeds here; feasible settings must keep working.
    """
    env = quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0", room_size=6)
    for seed in (0, 5, 7, 2002):  # each needed more than 200 attempts
        env.reset(seed=seed)


def test_the_budget_counts_no_room_streaks_and_all_failures():
    from minigrid.envs.babyai.core.roomgrid_level import RejectSampling

    env = quiet_make(LOCAL).unwrapped
    budget = GenerationBudget(env, attempts=6, no_room=3)
    for err in (RecursionError("full"), RecursionError("full"), RejectSampling("unreachable")):
        budget.failed(err)  # the rejection breaks the streak of two
    budget.failed(RecursionError("full"))
    budget.failed(RecursionError("full"))
    with pytest.raises(GenerationError, match="6 attempts failed"):
        budget.failed(RejectSampling("unreachable"))
    streak = GenerationBudget(env, no_room=3)
    streak.failed(RecursionError("full"))
    streak.failed(RecursionError("full"))
    with pytest.raises(GenerationError, match="3 attempts in a row found no free cell"):
        streak.failed(RecursionError("full"))


def test_a_minigrid_loop_that_never_raises_is_cut_off_by_the_draw_budget():
    """``add_distractors(all_unique=True)`` loops forever once the 18 (type, colour) pairs are used."""
    env = quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0", room_size=16, num_dists=0).unwrapped
    env.reset(seed=0)
    budget = GenerationBudget(env, draws=20_000)
    with deadline(30), pytest.raises(GenerationError, match="random draws"):
        with budget.attempt():
            env.add_distractors(0, 0, num_distractors=19, all_unique=True)
    assert "_rand_int" not in vars(env)  # the counting hook is removed again


def test_the_draw_budget_leaves_generation_unchanged(monkeypatch: pytest.MonkeyPatch):
    """Counting draws must not change any level: the same seeds give the same levels without the hook."""

    def levels() -> list[str]:
        env = quiet_make("BabyAIPP/GoTo-Hard-Train-v0")
        return [Level.from_env(env.reset(seed=s) and env.unwrapped).to_json() for s in range(3)]

    counted = levels()
    monkeypatch.setattr(GenerationBudget, "attempt", lambda self: nullcontext())
    assert levels() == counted


def test_keyword_checks_reach_train_style_string_values():
    """``--env-kwarg num_dists=abc`` reaches the env as a string: one line naming it, not a crash later."""
    with pytest.raises(ConfigError, match=r"num_dists='abc' must be an integer"):
        envs.make(LOCAL, num_dists="abc")


# ---------------------------------------------------------------------------- keyword values
@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"room_size": "8"}, "room_size='8'"),
        ({"room_size": True}, "room_size=True"),
        ({"room_size": 8.5}, "room_size=8.5"),
        ({"room_size": 2}, "room_size=2"),
        ({"num_dists": -1}, "num_dists=-1"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"max_steps": -5}, "max_steps=-5"),
        ({"agent_view_size": 4}, "agent_view_size=4"),
        ({"agent_view_size": 1}, "agent_view_size=1"),
        ({"highlight": "yes"}, "highlight='yes'"),
    ],
)
@pytest.mark.parametrize("maker", [envs.make, gym.make])
def test_bad_keyword_values_raise_one_line_naming_them(maker, kwargs: dict[str, Any], shown: str):
    with pytest.raises(ConfigError) as err:
        maker(LOCAL, **kwargs)
    message = str(err.value)
    assert shown in message and "\n" not in message, message


def test_keyword_upper_bounds_where_minigrid_would_loop_forever():
    with pytest.raises(ConfigError, match=r"num_objs=19 is out of range; valid range: \[2, 18\]"):
        envs.make("BabyAIPP/PutNextLocal-Easy-Train-v0", num_objs=19)
    with pytest.raises(ConfigError, match=r"objs_per_room=10"):
        envs.make("BabyAIPP/PutNext-Easy-Train-v0", objs_per_room=10)


@pytest.mark.parametrize("task", ["GoToLocal", "GoTo", "GoToObjMaze", "GoToLocalDense", "GoToObjMazeDense"])
def test_levels_whose_target_is_a_distractor_need_one(task: str):
    with pytest.raises(ConfigError, match=r"num_dists.*=0 is out of range; valid range: \[1, inf\)"):
        envs.make(envs.env_id(task, "Easy", "Train"), num_dists=0)


@pytest.mark.parametrize("task", ["GoToRedBall", "GoToRedBallMaze", "GoToSeq", "GoToRedBallMazeDense"])
def test_levels_that_place_their_own_target_accept_no_distractors(task: str):
    quiet_make(envs.env_id(task, "Easy", "Train"), num_dists=0).reset(seed=0)


def test_render_mode_is_checked():
    with pytest.raises(InvalidChoiceError, match="rgb_array"):
        envs.make(LOCAL, render_mode="rgb")


def test_valid_edge_values_are_accepted():
    env = quiet_make(LOCAL, room_size=6, num_dists=1, max_steps=1, agent_view_size=3)
    env.reset(seed=0)
    _, _, _, truncated, _ = env.step(0)
    assert truncated


def test_reset_with_something_that_is_not_a_level_names_what_it_needs():
    env = quiet_make(LOCAL)
    with pytest.raises(ConfigError, match=r"Level.*got str 'garbage'"):
        env.reset(options={"level": "garbage"})
    env.reset(seed=0)  # the env is still usable


# ---------------------------------------------------------------------------- unknown keywords
@pytest.mark.parametrize("maker", [envs.make, gym.make])
def test_unknown_keywords_are_a_type_error_with_pythons_wording(maker):
    with pytest.raises(TypeError) as err:
        maker(LOCAL, frameskip=4)
    assert isinstance(err.value, UnknownKeywordError) and isinstance(err.value, BabyAIPPError)
    message = str(err.value)
    assert "unexpected keyword argument 'frameskip'" in message and "room_size" in message
    assert "\n" not in message


def _probing_client_make(env_id: str, **kwargs: Any) -> tuple[gym.Env, int]:
    """What TorchRL's ``GymEnv._build_env`` does: try ``frameskip``, drop it on its ``TypeError``."""
    kwargs["frameskip"] = 4
    while True:
        try:
            return gym.make(env_id, **kwargs), 1
        except TypeError as err:
            if "unexpected keyword argument 'frameskip'" not in str(err):
                raise
            skip = kwargs.pop("frameskip")
            return gym.make(env_id, **kwargs), skip


def test_a_client_that_probes_keywords_gets_an_env():
    env, wrapper_skip = _probing_client_make(LOCAL, text="none")
    assert wrapper_skip == 4  # the client does the frame skip itself
    obs, _ = env.reset(seed=0)
    assert obs["description"] == ""


@pytest.mark.parametrize("kwarg, named", [("room_size=3", "room_size=3")])
def test_train_with_an_infeasible_env_kwarg_exits_with_one_line(tmp_path, kwarg: str, named: str):
    """``babyaipp train --env-kwarg room_size=3`` used to spin forever at 100% CPU."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "babyaipp.cli",
        "train",
        "--env",
        "BabyAIPP/GoToRedBall-Easy-Train-v0",
        "--env-kwarg",
        kwarg,
        "--steps",
        "64",
        "--out",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], done.stderr


def _max_failed_attempts(monkeypatch: pytest.MonkeyPatch, tasks: list[str], seeds: int) -> int:
    """The most failed generation attempts one reset needed (the budget allows 5000)."""
    counts: list[int] = []
    original = GenerationBudget.failed

    def counting(self: GenerationBudget, err: BaseException) -> None:
        original(self, err)
        counts.append(self.failures)

    monkeypatch.setattr(GenerationBudget, "failed", counting)
    for task in tasks:
        for difficulty in ("Easy", "Hard"):
            env = quiet_make(envs.env_id(task, difficulty, "Train"))
            for seed in range(seeds):
                env.reset(seed=seed)
    return max(counts, default=0)


@pytest.mark.slow
def test_normal_levels_stay_far_below_the_attempt_budget(monkeypatch: pytest.MonkeyPatch):
    """Every task, Easy and Hard, 150 seeds: at most 15 attempts were seen (budget 5000)."""
    sparse = [task for task in envs.TASKS if not task.endswith("Dense")]  # the ten measured in the docs
    assert _max_failed_attempts(monkeypatch, sparse, 150) <= 50


def test_normal_levels_stay_far_below_the_attempt_budget_fast(monkeypatch: pytest.MonkeyPatch):
    assert _max_failed_attempts(monkeypatch, ["GoToRedBall", "Unlock", "GoToSeq"], 10) <= 50


@pytest.mark.parametrize(
    "err",
    [
        InvalidChoiceError("text mode", "verbose", ["full", "none"]),
        UnknownKeywordError("GoTo", "frameskip", ["room_size"]),
        UnknownKeywordError("rebuilt from its message alone"),
        GenerationError("no room"),
    ],
)
def test_errors_survive_a_worker_process(err: Exception):
    """Errors raised in level-generator workers come back pickled: same type, message and fields."""
    import pickle

    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err)
    assert getattr(back, "value", None) == getattr(err, "value", None)
