"""Helpers shared by the BabyAI++ environment tests: hand-built worlds and quiet env construction.

The physics tests need exact control over the floor, so :func:`hand_built_env` takes a real
registered env and overwrites its state (grid, floor layer, dynamics, agent, counters and an
instruction that cannot complete by accident) the way ``BabyAIPPMixin._gen_dynamics`` sets it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, IDX_TO_COLOR
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Wall
from minigrid.envs.babyai.core.verifier import GoToInstr, ObjDesc

import babyaipp.envs as envs
from babyaipp.envs.tiles import NO_TILE

#: The env the hand-built worlds are carved out of; a 10x10 room gives an 8x8 interior.
HAND_BUILT_ID = "BabyAIPP/GoToLocal-Hard-Test-v0"
HAND_BUILT_SIZE = 10
#: Where the instruction's target (a red ball) sits unless a test says otherwise: a corner far
#: from where the physics tests move, so no step faces it by accident.
FAR_TARGET = (8, 1)

EAST, SOUTH, WEST, NORTH = range(4)


def quiet_make(env_id: str, **kwargs: Any):
    """``babyaipp.envs.make`` with pygame's font warnings (rendering only) silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*font.*")
        return envs.make(env_id, **kwargs)


def set_floor(env: Any, tiles: Mapping[tuple[int, int], str], dynamics: Mapping[str, Iterable[str]]) -> None:
    """Give ``env`` exactly these tiles and this colour -> properties mapping (as ``_gen_dynamics`` does)."""
    floor = np.full((env.width, env.height), NO_TILE, dtype=np.int8)
    for (x, y), colour in tiles.items():
        floor[x, y] = COLOR_TO_IDX[colour]
    env.floor = floor
    # The view reads the floor through a padded copy that ``_gen_dynamics`` caches with it.
    env._padded_floor = np.pad(floor, env.agent_view_size, constant_values=NO_TILE)
    env._dynamics = {c: tuple(p) for c, p in dynamics.items()}
    env._props_by_idx = [frozenset()] * len(IDX_TO_COLOR)
    for colour, props in env._dynamics.items():
        env._props_by_idx[COLOR_TO_IDX[colour]] = frozenset(props)


def hand_built_env(
    *,
    agent_pos: tuple[int, int],
    agent_dir: int,
    tiles: Mapping[tuple[int, int], str] | None = None,
    dynamics: Mapping[str, Iterable[str]] | None = None,
    walls: Iterable[tuple[int, int]] = (),
    objects: Mapping[tuple[int, int], Any] | None = None,
    target: tuple[int, int] = FAR_TARGET,
    max_steps: int = 100,
    steps_in_cell: int = 0,
    magic_count: int = 0,
) -> Any:
    """A reset BabyAI++ env (unwrapped) whose world is replaced by the one described.

    The grid is an empty walled 10x10 room plus ``walls`` and ``objects``; the instruction is
    "go to the red ball" for a red ball at ``target``; the step counter is 0.
    """
    env = quiet_make(HAND_BUILT_ID, room_size=HAND_BUILT_SIZE).unwrapped
    env.reset(seed=0)
    grid = Grid(env.width, env.height)
    grid.wall_rect(0, 0, env.width, env.height)
    for x, y in walls:
        grid.set(x, y, Wall())
    for (x, y), obj in (objects or {}).items():
        grid.set(x, y, obj)
        obj.init_pos = obj.cur_pos = (x, y)
    ball = Ball("red")
    grid.set(*target, ball)
    ball.init_pos = ball.cur_pos = target
    env.grid = grid
    env.carrying = None
    set_floor(env, tiles or {}, dynamics or {})
    env.agent_pos = agent_pos
    env.agent_dir = agent_dir
    env.steps_in_cell = steps_in_cell
    env.magic_count = magic_count
    env.step_count = 0
    env.max_steps = max_steps
    env.instrs = GoToInstr(ObjDesc("ball", "red"))
    env.instrs.reset_verifier(env)
    return env


def agent_state(env: Any) -> tuple[tuple[int, int], int]:
    """(position, direction) as plain ints."""
    return (int(env.agent_pos[0]), int(env.agent_pos[1])), int(env.agent_dir)


@pytest.fixture
def no_font_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*font.*")
        yield
