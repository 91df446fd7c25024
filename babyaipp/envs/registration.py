"""Registration of every ``BabyAIPP/<Task>-<Easy|Hard>-<Train|Test|TargetPairOnly>-v0`` id.

All ids share one entry point, :func:`make_level`, which checks keyword arguments against those the
level accepts so a typo (``room_sise=8``) fails with the valid keywords listed.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import gymnasium as gym
from minigrid.envs.babyai.goto import GoTo, GoToLocal

from babyaipp.envs.dynamics import DIFFICULTIES, SPLITS
from babyaipp.envs.levels import TASKS, GoToRedBallMazeLevel
from babyaipp.envs.validation import validate_env_keywords
from babyaipp.envs.wrappers import TokenObsWrapper, refuse_floorless_minigrid_wrappers
from babyaipp.errors import InvalidChoiceError, UnknownKeywordError, check_choice, check_range

NAMESPACE = "BabyAIPP"
_ID_RE = re.compile(rf"^(?:babyaipp:)?{NAMESPACE}/(?P<task>\w+?)-(?P<difficulty>[A-Za-z]+)-(?P<split>[A-Za-z]+)-v0$")


def env_id(task: str, difficulty: str, split: str) -> str:
    return f"{NAMESPACE}/{task}-{difficulty}-{split}-v0"


ENV_IDS: tuple[str, ...] = tuple(env_id(t, d, s) for t in TASKS for d in DIFFICULTIES for s in SPLITS)


def parse_env_id(id: str) -> tuple[str, str, str]:
    """Split an id into (task, difficulty, split), naming the bad part and its valid choices."""
    m = _ID_RE.match(id)
    if not m:
        raise InvalidChoiceError("env id", id, [f"{NAMESPACE}/<Task>-<Easy|Hard>-<Train|Test|TargetPairOnly>-v0"])
    task, difficulty, split = m["task"], m["difficulty"], m["split"]
    check_choice("task", task, TASKS)
    check_choice("difficulty", difficulty, DIFFICULTIES)
    check_choice("split", split, SPLITS)
    return task, difficulty, split


def split_ids(id: str) -> dict[str, str]:
    """The Train / Test / TargetPairOnly ids of the same task and difficulty."""
    task, difficulty, _ = parse_env_id(id)
    return {s: env_id(task, difficulty, s) for s in SPLITS}


@cache
def valid_keywords(task: str) -> tuple[str, ...]:
    """Keywords ``gym.make`` accepts for a task: the mixin's and the minigrid level's own.

    Candidates are the parameters of every ``__init__`` in the class's MRO; a candidate is kept only
    if constructing the level with it (at its default value) works, since some levels pass a
    parent's keyword themselves (``see_through_walls``, ``num_dists`` for PickupLoc).
    """
    spec = TASKS[task]
    candidates: dict[str, Any] = {}
    for klass in spec.cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                default = spec.defaults.get(p.name, p.default)
                candidates.setdefault(p.name, default)
    candidates.pop("difficulty", None)
    candidates.pop("split", None)
    valid = {"difficulty", "split"}
    for name, default in candidates.items():
        if default is inspect.Parameter.empty:
            continue
        try:
            spec.cls(**{**spec.defaults, name: default})
        except TypeError:
            continue
        valid.add(name)
    return tuple(sorted(valid - {"difficulty", "split", "grid_size"}))  # room grids size themselves


def _target_among_distractors(task: str) -> bool:
    """Levels that pick their target among the distractors (GoToLocal, GoTo, GoToObjMaze and their
    dense variants), so they need at least one; the maze of the red ball places its own."""
    cls = TASKS[task].cls
    return issubclass(cls, (GoTo, GoToLocal)) and not issubclass(cls, GoToRedBallMazeLevel)


def validate_task_keywords(task: str, keywords: Mapping[str, Any]) -> None:
    """The checks of :func:`~babyaipp.envs.validation.validate_env_keywords` plus those that depend on the task."""
    validate_env_keywords(keywords)
    if "num_dists" in keywords and _target_among_distractors(task):
        check_range(f"num_dists (for {task}, whose target is one of them)", keywords["num_dists"], 1)


def make_level(task: str, difficulty: str, split: str, **kwargs: Any) -> gym.Env:
    """Entry point of every id: build the task's env after checking its keywords."""
    check_choice("task", task, TASKS)
    valid = valid_keywords(task)
    for key in kwargs:
        if key not in valid:
            raise UnknownKeywordError(task, key, valid)
    validate_task_keywords(task, kwargs)
    spec = TASKS[task]
    return spec.cls(difficulty=difficulty, split=split, **{**spec.defaults, **kwargs})


def register_all() -> None:
    refuse_floorless_minigrid_wrappers()
    for task in TASKS:
        for difficulty in DIFFICULTIES:
            for split in SPLITS:
                id = env_id(task, difficulty, split)
                if id in gym.registry:
                    continue
                gym.register(
                    id=id,
                    entry_point="babyaipp.envs.registration:make_level",
                    vector_entry_point="babyaipp.envs.vector:make_batched_vector",  # the batched engine
                    kwargs={"task": task, "difficulty": difficulty, "split": split},
                    disable_env_checker=False,
                )


def make(id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` with a clear error for an unknown task, difficulty or split."""
    parse_env_id(id)
    return gym.make(id.removeprefix("babyaipp:"), **kwargs)


def make_tokenized(env_id: str, **kwargs: Any) -> gym.Env:
    """:func:`make` wrapped in :class:`~babyaipp.envs.wrappers.TokenObsWrapper` (the agents' observations)."""
    return TokenObsWrapper(make(env_id, **kwargs))
