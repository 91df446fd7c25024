"""Checks of env keywords and bounds on level generation, so bad settings fail fast with one line.

minigrid builds levels by rejection sampling and retries forever: a room too small for its
objects (``room_size=3``) or more distractors than fit (``num_dists=1000``) spins at 100% CPU
instead of failing. :func:`validate_env_keywords` refuses values of the wrong type or range before
anything is built, and :class:`GenerationBudget` caps the retries and minigrid's own unbounded
loops, then raises an error that names the keywords that shape the level.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from minigrid.minigrid_env import MiniGridEnv

from babyaipp.envs.level import Level
from babyaipp.errors import BabyAIPPError, ConfigError, check_choice, check_range

#: Integer keywords and their smallest valid value (upper bounds, where there are any: ``_UPPER``).
_INT_MIN: dict[str, int] = {
    "room_size": 3,  # minigrid's own minimum (a wall, a cell, a wall)
    "num_dists": 0,
    "num_objs": 2,  # PutNextLocal moves one object next to another
    "objs_per_room": 1,
    "num_rows": 1,
    "num_cols": 1,
    "max_steps": 1,
    "agent_view_size": 3,
    "tile_size": 1,
    "screen_size": 1,
    "properties_per_colour": 1,
}
#: Upper bounds where minigrid draws distinct (type, colour) pairs, of which there are 3 x 6 = 18:
#: more would loop forever in ``add_distractors(all_unique=True)``.
_UPPER: dict[str, int] = {"num_objs": 18, "objs_per_room": 9}
#: Keywords that may also be ``None`` (the level then picks its own value).
_NONE_OK = frozenset({"max_steps", "screen_size", "properties_per_colour"})
_BOOL_KEYWORDS = frozenset({"agent_pov", "highlight", "doors_open", "implicit_unlock", "start_carrying"})
RENDER_MODES = (None, "human", "rgb_array")
#: Keywords that shape a generated level, named when generation fails.
LAYOUT_KEYWORDS = ("room_size", "num_rows", "num_cols", "num_dists", "num_objs", "objs_per_room")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_env_keywords(keywords: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first keyword whose value has the wrong type or range."""
    for name, value in keywords.items():
        if name in _INT_MIN:
            if value is None and name in _NONE_OK:
                continue
            if not _is_int(value):
                raise ConfigError(f"{name}={value!r} must be an integer (got {type(value).__name__})")
            check_range(name, int(value), _INT_MIN[name], _UPPER.get(name))
            if name == "agent_view_size" and value % 2 == 0:
                raise ConfigError(f"agent_view_size={value!r} must be odd (the agent sits mid-view): 3, 5, 7, ...")
        elif name in _BOOL_KEYWORDS and not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{name}={value!r} must be True or False (got {type(value).__name__})")
        elif name == "render_mode":
            check_choice("render_mode", value, RENDER_MODES)


def check_level(level: Any) -> Any:
    """Return ``level`` if it is a :class:`~babyaipp.envs.level.Level`, else raise :class:`ConfigError`."""
    if not isinstance(level, Level):
        raise ConfigError(
            f"reset(options={{'level': ...}}) needs a babyaipp.envs.level.Level (Level.from_env, Level.from_json), "
            f"got {type(level).__name__} {level!r:.60}"
        )
    return level


def layout_summary(env: Any) -> str:
    """``room_size=3, num_dists=7``: the layout keywords the env holds, for error messages."""
    held = [(k, getattr(env, k)) for k in LAYOUT_KEYWORDS if getattr(env, k, None) is not None]
    return ", ".join(f"{k}={v!r}" for k, v in held)


class GenerationError(BabyAIPPError, ValueError):
    """No level could be generated with the given settings (they are infeasible)."""


class GenerationBudget:
    """Bounds one env's level generation, so settings that leave no room for a level fail in seconds.

    minigrid retries a failed level (``RecursionError`` / ``RejectSampling``) forever, and some of
    its loops (``add_distractors(all_unique=True)``, ``RoomGrid.place_agent``) draw forever without
    raising. Three bounds, each far above what feasible settings need (measured, docs/environments.md):

    * ``no_room``: this many attempts in a row in which minigrid found no free cell for an object
      (``place_obj``'s ``RecursionError``): nothing fits (``room_size=3``, ``num_dists=1000``).
      Feasible settings show at most a few in a row.
    * ``attempts``: failed attempts of any kind. The registered levels need at most 15; a 6x6 room
      with GoToRedBall's 7 distractors, mostly rejected as "unreachable object", up to about 850.
    * ``draws``: random draws within one attempt (minigrid's loops that never raise).
    """

    def __init__(self, env: Any, attempts: int = 5000, no_room: int = 200, draws: int = 200_000):
        self.env, self.attempts, self.no_room, self.draws = env, attempts, no_room, draws
        self.failures = 0
        self.no_room_streak = 0

    def failed(self, err: BaseException) -> None:
        """Count one failed attempt; raise :class:`GenerationError` once a bound is reached."""
        self.failures += 1
        self.no_room_streak = self.no_room_streak + 1 if isinstance(err, RecursionError) else 0
        if self.no_room_streak >= self.no_room:
            self._give_up(f"{self.no_room} attempts in a row found no free cell for an object (last: {err})")
        if self.failures >= self.attempts:
            self._give_up(f"{self.attempts} attempts failed (last: {err})")

    def _give_up(self, why: str) -> None:
        raise GenerationError(
            f"cannot generate a level with {layout_summary(self.env)}: {why}; the rooms are too small for "
            "the objects, use a larger room_size or fewer num_dists / num_objs / objs_per_room"
        )

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """One generation attempt with minigrid's random draws counted (the values are unchanged)."""
        env, count = self.env, [0]
        draw: Callable[[int, int], int]
        if type(env)._rand_int is MiniGridEnv._rand_int:
            # minigrid's _rand_int is np_random.integers(low, high): called directly, the same
            # values with two Python frames fewer on each of the ~200 draws of a dense reset
            draw = env.np_random.integers
        else:
            draw = type(env)._rand_int.__get__(env)

        def counted_draw(low: int, high: int) -> int:
            count[0] += 1
            if count[0] > self.draws:
                self._give_up(f"one attempt made {self.draws} random draws without placing every object")
            return draw(low, high)

        env._rand_int = counted_draw
        try:
            yield
        finally:
            del env._rand_int
