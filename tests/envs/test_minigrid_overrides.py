"""``FastGeneration``'s ``check_objs_reachable`` and ``place_obj`` behave exactly as minigrid's own.

``babyaipp.envs.fast_generation.FastGeneration`` (a base of ``BabyAIPPMixin``) overrides two
minigrid methods level generation spends much time in (for speed: flat cell lists instead of
``Grid.get`` and ``np.array_equal`` per cell or draw). Levels must not change, so each is checked
against minigrid's method on the same state: same answer, same first unreachable object, same
cell and the same random draws consumed.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from minigrid.core.world_object import Ball, Wall
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling, RoomGridLevel
from minigrid.minigrid_env import MiniGridEnv

from babyaipp.envs.view import egocentric_image

from .conftest import quiet_make

IDS = [
    "BabyAIPP/GoToLocalDense-Hard-Train-v0",
    "BabyAIPP/PickupLoc-Easy-Train-v0",
    "BabyAIPP/GoTo-Hard-Test-v0",
    "BabyAIPP/UnlockDense-Easy-Train-v0",
]


def _minigrid_check(env, raise_exc: bool = True):
    return RoomGridLevel.check_objs_reachable(env, raise_exc=raise_exc)


@pytest.mark.parametrize("env_id", IDS)
def test_check_objs_reachable_agrees_with_minigrid(env_id: str) -> None:
    env = quiet_make(env_id).unwrapped
    walled_off = 0
    for seed in range(40):
        env.reset(seed=seed)
        assert env.check_objs_reachable(raise_exc=False) is _minigrid_check(env, raise_exc=False) is True
        # Wall in the first object found: both must reject it, naming the same cell.
        obj = next(o for o in env.grid.grid if o is not None and o.type in ("ball", "box", "key"))
        x, y = obj.cur_pos
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            if env.grid.get(x + dx, y + dy) is None and (x + dx, y + dy) != tuple(env.agent_pos):
                env.grid.set(x + dx, y + dy, Wall())
        ours, theirs = env.check_objs_reachable(raise_exc=False), _minigrid_check(env, raise_exc=False)
        assert ours == theirs
        if not theirs:
            walled_off += 1
            with pytest.raises(RejectSampling) as want:
                _minigrid_check(env)
            with pytest.raises(RejectSampling) as got:
                env.check_objs_reachable()
            assert str(got.value) == str(want.value)
    assert walled_off > 10  # the walled-in case was exercised


@pytest.mark.parametrize("env_id", IDS)
def test_place_obj_draws_and_places_as_minigrid(env_id: str) -> None:
    env = quiet_make(env_id).unwrapped
    for seed in range(20):
        env.reset(seed=seed)
        room = env.get_room(0, 0)
        cases = [
            {},  # anywhere
            {"top": room.top, "size": room.size},
            {"top": room.top, "size": room.size, "reject_fn": lambda _env, pos: pos[0] % 2 == 0},
            {"top": (-3, -3), "size": (5, 5)},  # clipped to the grid as minigrid does
        ]
        for kwargs in cases:
            state = copy.deepcopy(env.np_random.bit_generator.state)
            grid = copy.deepcopy(env.grid)
            want = MiniGridEnv.place_obj(env, Ball("red"), **kwargs)
            want_state, want_grid = env.np_random.bit_generator.state, env.grid.encode()
            env.np_random.bit_generator.state, env.grid = state, grid
            got = env.place_obj(Ball("red"), **kwargs)
            assert tuple(int(v) for v in got) == tuple(int(v) for v in want)
            assert env.np_random.bit_generator.state == want_state
            assert np.array_equal(env.grid.encode(), want_grid)
            assert tuple(env.grid.get(*got).cur_pos) == tuple(got)


def test_place_obj_gives_up_as_minigrid() -> None:
    env = quiet_make(IDS[0]).unwrapped
    env.reset(seed=0)
    with pytest.raises(RecursionError):
        env.place_obj(Ball("red"), top=(0, 0), size=(1, 1), max_tries=5)  # a wall cell: never free


@pytest.mark.parametrize(
    "env_id",
    [
        "BabyAIPP/PickupLoc-Easy-Train-v0",
        "BabyAIPP/GoTo-Hard-Test-v0",
        "BabyAIPP/UnlockDense-Easy-Train-v0",
        "BabyAIPP/PutNextLocal-Hard-Train-v0",
    ],
)
def test_egocentric_image_is_minigrids_image(env_id: str) -> None:
    """The observation's image before the floor overlay, against minigrid's ``gen_obs`` on random
    walks (doors opened, objects carried and dropped, views past the grid's edge)."""
    env = quiet_make(env_id).unwrapped
    rng = np.random.default_rng(0)
    carried = opened = 0
    for seed in range(8):
        env.reset(seed=seed)
        for _ in range(150):
            env.step(int(rng.choice([0, 1, 2, 2, 2, 3, 4, 5])))
            for see_through in (False, True):
                env.see_through_walls = see_through
                assert np.array_equal(egocentric_image(env), MiniGridEnv.gen_obs(env)["image"])
            env.see_through_walls = False
            carried += env.carrying is not None
            opened += any(c is not None and c.type == "door" and c.is_open for c in env.grid.grid)
    assert carried > 0 or opened > 0  # the walks carried objects (one-room ids) or opened doors (the others)


@pytest.mark.parametrize("view", [3, 5, 9])
def test_egocentric_image_for_other_view_sizes(view: int) -> None:
    env = quiet_make("BabyAIPP/GoTo-Easy-Train-v0", agent_view_size=view).unwrapped
    rng = np.random.default_rng(1)
    for seed in range(3):
        env.reset(seed=seed)
        for _ in range(100):
            env.step(int(rng.choice([0, 1, 2, 2, 5])))
            assert np.array_equal(egocentric_image(env), MiniGridEnv.gen_obs(env)["image"])
