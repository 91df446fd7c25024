"""Exact effect of every action on every floor property, on small hand-built worlds, in both engines.

Each test builds a walled room by hand (see ``conftest.hand_built_env``), puts the agent on or
next to a tile, and checks position, direction, step counter, termination and reward after each
action against the rules of the spec's property table and ``babyaipp/envs/physics.py``. Every
step is also played by the batched engine on the same world (captured as a ``Level``), which must
give the same observation, reward, termination, truncation, pose and counters
(``tests/envs/twin.py``); the two engines' rule functions are also compared directly, on every
combination of properties, actions and counters.
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np
import pytest
import torch
from minigrid.core.world_object import Door, Key

from babyaipp.envs.physics import (
    DONE,
    DROP,
    FORWARD,
    LEFT,
    PICKUP,
    RIGHT,
    STICKY_STEPS,
    TOGGLE,
    resolve_motion,
    resolve_motion_tensors,
    search_counters,
    search_counters_tensors,
)
from babyaipp.envs.properties import PROPERTY_BIT, TILE_PROPERTIES

from .conftest import EAST, HAND_BUILT_ID, HAND_BUILT_SIZE, NORTH, SOUTH, WEST, agent_state, hand_built_env
from .twin import BatchedTwin

HERE = (4, 4)
#: The batched engine playing each hand-built world, made at the world's first step.
_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def step(env, action: int):
    """One step in the single env and in the batched engine, which must agree: (reward, terminated, truncated)."""
    if env not in _TWINS:
        _TWINS[env] = BatchedTwin(env, HAND_BUILT_ID, room_size=HAND_BUILT_SIZE)
    result = env.step(action)
    _TWINS[env].step(env, action, result)
    _, reward, terminated, truncated, _ = result
    return reward, terminated, truncated


def on_tile(props: tuple[str, ...], agent_dir: int = EAST, **kwargs):
    """The agent stands on a blue tile with ``props`` at HERE (just entered it: counters at 0)."""
    tiles = {HERE: "blue", **kwargs.pop("tiles", {})}
    dynamics = {"blue": props, **kwargs.pop("dynamics", {})}
    return hand_built_env(agent_pos=HERE, agent_dir=agent_dir, tiles=tiles, dynamics=dynamics, **kwargs)


# ---------------------------------------------------------------------------- plain floor
def test_plain_floor_actions_are_minigrids():
    env = hand_built_env(agent_pos=HERE, agent_dir=EAST)
    assert step(env, LEFT) == (0, False, False) and agent_state(env) == (HERE, NORTH)
    assert step(env, RIGHT) == (0, False, False) and agent_state(env) == (HERE, EAST)
    for action in (PICKUP, DROP, TOGGLE, DONE):
        assert step(env, action) == (0, False, False) and agent_state(env) == (HERE, EAST)
    assert step(env, FORWARD) == (0, False, False) and agent_state(env) == ((5, 4), EAST)
    assert env.step_count == 7


def test_tiles_of_colours_without_properties_do_nothing():
    # A trap colour with no tile keeps the mapping non-empty: the single env draws no tiles at all
    # when the episode has no mapping (generated levels always have one), the batched engine does.
    env = hand_built_env(
        agent_pos=HERE, agent_dir=EAST, tiles={HERE: "blue", (5, 4): "blue"}, dynamics={"grey": ("trap",)}
    )
    for action in (LEFT, LEFT, RIGHT, FORWARD):
        step(env, action)
    assert agent_state(env) == ((4, 3), NORTH) and env.step_count == 4


# ---------------------------------------------------------------------------- trap
def test_entering_a_trap_ends_the_episode_with_reward_zero():
    env = hand_built_env(agent_pos=HERE, agent_dir=EAST, tiles={(5, 4): "grey"}, dynamics={"grey": ("trap",)})
    assert step(env, FORWARD) == (0, True, False)
    assert agent_state(env) == ((5, 4), EAST)


def test_standing_next_to_a_trap_does_nothing():
    env = hand_built_env(agent_pos=HERE, agent_dir=EAST, tiles={(5, 4): "grey"}, dynamics={"grey": ("trap",)})
    for action in (PICKUP, DROP, TOGGLE, DONE, LEFT, RIGHT):
        assert step(env, action) == (0, False, False)
    assert agent_state(env) == (HERE, EAST)
    step(env, RIGHT)
    assert step(env, FORWARD) == (0, False, False)  # walking past it is fine
    assert agent_state(env) == ((4, 5), SOUTH)


def test_a_trap_in_front_of_the_target_still_gives_zero():
    """Entering the trap and facing the target in the same step: the trap wins."""
    env = hand_built_env(
        agent_pos=HERE, agent_dir=EAST, tiles={(5, 4): "grey"}, dynamics={"grey": ("trap",)}, target=(6, 4)
    )
    assert step(env, FORWARD) == (0, True, False)


# ---------------------------------------------------------------------------- slippery
def test_a_step_taken_from_a_slippery_tile_costs_half_a_step():
    env = on_tile(("slippery",))
    step(env, LEFT)
    assert env.step_count == 0.5
    step(env, RIGHT)
    assert env.step_count == 1.0
    step(env, FORWARD)  # taken from the tile: half a step, lands on plain floor
    assert env.step_count == 1.5 and agent_state(env) == ((5, 4), EAST)
    step(env, LEFT)  # taken from plain floor: a whole step
    assert env.step_count == 2.5


def test_entering_a_slippery_tile_costs_a_whole_step():
    env = hand_built_env(agent_pos=HERE, agent_dir=EAST, tiles={(5, 4): "blue"}, dynamics={"blue": ("slippery",)})
    step(env, FORWARD)
    assert env.step_count == 1 and agent_state(env) == ((5, 4), EAST)


def test_slippery_success_reward_is_larger():
    plain = hand_built_env(agent_pos=HERE, agent_dir=EAST, target=(6, 4), max_steps=10)
    slippery = on_tile(("slippery",), target=(6, 4), max_steps=10)
    r_plain, term_plain, _ = step(plain, FORWARD)
    r_slip, term_slip, _ = step(slippery, FORWARD)
    assert term_plain and term_slip
    assert r_plain == pytest.approx(1 - 0.9 * 1 / 10)
    assert r_slip == pytest.approx(1 - 0.9 * 0.5 / 10)


def test_slippery_time_limit_comes_later():
    plain = hand_built_env(agent_pos=HERE, agent_dir=EAST, max_steps=3)
    assert [step(plain, LEFT)[2] for _ in range(3)] == [False, False, True]
    slippery = on_tile(("slippery",), max_steps=3)
    assert [step(slippery, LEFT)[2] for _ in range(6)] == [False] * 5 + [True]


# ---------------------------------------------------------------------------- sticky
def test_sticky_forward_is_a_noop_for_the_first_two_steps_in_the_cell():
    env = hand_built_env(agent_pos=(3, 4), agent_dir=EAST, tiles={HERE: "blue"}, dynamics={"blue": ("sticky",)})
    step(env, FORWARD)  # entering is free
    assert agent_state(env) == (HERE, EAST)
    for _ in range(STICKY_STEPS):
        assert step(env, FORWARD) == (0, False, False)
        assert agent_state(env) == (HERE, EAST)
    step(env, FORWARD)
    assert agent_state(env) == ((5, 4), EAST)
    assert env.step_count == 4


def test_sticky_turning_works_and_counts_as_time_spent():
    env = on_tile(("sticky",))
    step(env, LEFT)
    assert agent_state(env) == (HERE, NORTH)
    step(env, RIGHT)
    assert agent_state(env) == (HERE, EAST)
    step(env, FORWARD)  # two steps spent: free to leave
    assert agent_state(env) == ((5, 4), EAST)


@pytest.mark.parametrize("waiting_action", [PICKUP, DROP, TOGGLE, DONE])
def test_sticky_any_action_counts_as_time_spent(waiting_action: int):
    env = on_tile(("sticky",))
    step(env, waiting_action)
    step(env, FORWARD)
    assert agent_state(env) == (HERE, EAST)
    step(env, FORWARD)
    assert agent_state(env) == ((5, 4), EAST)


# ---------------------------------------------------------------------------- fliplr
def test_fliplr_swaps_left_and_right_only_on_the_tile():
    env = on_tile(("fliplr",))
    step(env, LEFT)
    assert agent_state(env) == (HERE, SOUTH)
    step(env, RIGHT)
    step(env, RIGHT)
    assert agent_state(env) == (HERE, NORTH)
    step(env, FORWARD)  # forward is unaffected
    assert agent_state(env) == ((4, 3), NORTH)
    step(env, LEFT)  # on plain floor again
    assert agent_state(env) == ((4, 3), WEST)


# ---------------------------------------------------------------------------- flipud
def test_flipud_forward_turns_around_and_moves():
    env = on_tile(("flipud",))
    assert step(env, FORWARD) == (0, False, False)
    assert agent_state(env) == ((3, 4), WEST)
    step(env, FORWARD)  # off the tile: ordinary forward
    assert agent_state(env) == ((2, 4), WEST)


def test_flipud_blocked_behind_only_turns():
    env = on_tile(("flipud",), walls=[(3, 4)])
    step(env, FORWARD)
    assert agent_state(env) == (HERE, WEST)
    step(env, FORWARD)  # turns back, and the cell east of it is free
    assert agent_state(env) == ((5, 4), EAST)


def test_flipud_leaves_turns_alone():
    env = on_tile(("flipud",))
    step(env, LEFT)
    assert agent_state(env) == (HERE, NORTH)
    step(env, RIGHT)
    step(env, RIGHT)
    assert agent_state(env) == (HERE, SOUTH)


# ---------------------------------------------------------------------------- magic
def test_magic_pushes_down_on_every_second_step():
    env = on_tile(("magic",))
    step(env, LEFT)
    assert agent_state(env) == (HERE, NORTH)
    step(env, LEFT)
    assert agent_state(env) == ((4, 5), WEST)  # turned, then pushed one cell +y
    step(env, LEFT)
    step(env, LEFT)  # plain floor: no push
    assert agent_state(env) == ((4, 5), EAST)


@pytest.mark.parametrize("second_action", [PICKUP, DROP, TOGGLE, DONE, RIGHT])
def test_magic_pushes_whatever_the_second_action(second_action: int):
    env = on_tile(("magic",))
    step(env, LEFT)
    step(env, second_action)
    assert agent_state(env)[0] == (4, 5)


def test_magic_pushes_after_a_blocked_forward():
    env = on_tile(("magic",), walls=[(5, 4)])
    step(env, FORWARD)
    assert agent_state(env) == (HERE, EAST)
    step(env, FORWARD)
    assert agent_state(env) == ((4, 5), EAST)


def test_magic_no_push_when_the_agent_walks_off():
    env = on_tile(("magic",))
    step(env, LEFT)
    step(env, FORWARD)  # its own move on the second step: no push on top
    assert agent_state(env) == ((4, 3), NORTH)


def test_magic_blocked_below_does_not_push():
    env = on_tile(("magic",), walls=[(4, 5)])
    for _ in range(4):
        step(env, LEFT)
        assert agent_state(env)[0] == HERE


def test_magic_counts_consecutive_steps_on_the_same_cell():
    env = on_tile(("magic",), tiles={(5, 4): "blue"})
    step(env, FORWARD)  # first step on (4, 4): moves to the next magic cell, count restarts
    assert agent_state(env) == ((5, 4), EAST)
    step(env, LEFT)
    assert agent_state(env) == ((5, 4), NORTH)
    step(env, LEFT)
    assert agent_state(env) == ((5, 5), WEST)


def test_magic_push_onto_magic_restarts_the_count():
    env = on_tile(("magic",), tiles={(4, 5): "blue"})
    step(env, LEFT)
    step(env, RIGHT)
    assert agent_state(env)[0] == (4, 5)
    step(env, LEFT)
    assert agent_state(env)[0] == (4, 5)
    step(env, RIGHT)
    assert agent_state(env)[0] == (4, 6)


def test_magic_push_sees_the_object_just_dropped():
    """Dropping a key into the cell below on the second step blocks that step's push."""
    waiting = on_tile(("magic",), agent_dir=SOUTH)
    waiting.carrying = Key("yellow")
    step(waiting, DONE)
    step(waiting, DONE)
    assert agent_state(waiting) == ((4, 5), SOUTH)
    dropping = on_tile(("magic",), agent_dir=SOUTH)
    dropping.carrying = Key("yellow")
    step(dropping, DONE)
    step(dropping, DROP)
    assert dropping.grid.get(4, 5) is not None and dropping.grid.get(4, 5).type == "key"
    assert agent_state(dropping) == (HERE, SOUTH)


# ---------------------------------------------------------------------------- object actions on tiles
@pytest.mark.parametrize("props", [("slippery",), ("sticky",), ("fliplr",), ("flipud",)])
def test_object_actions_work_on_tiles(props: tuple[str, ...]):
    key = Key("yellow")
    env = on_tile(props, objects={(5, 4): key})
    step(env, PICKUP)
    assert env.carrying is key and env.grid.get(5, 4) is None
    step(env, DROP)
    assert env.carrying is None and env.grid.get(5, 4) is key
    assert agent_state(env) == (HERE, EAST)
    door = Door("yellow", is_open=False)
    env = on_tile(props, objects={(5, 4): door})
    step(env, TOGGLE)
    assert door.is_open and agent_state(env) == (HERE, EAST)


# ---------------------------------------------------------------------------- compositions
def test_sticky_and_magic_no_push_while_stuck():
    env = on_tile(("sticky", "magic"))
    for _ in range(3):
        step(env, LEFT)
        assert agent_state(env)[0] == HERE  # steps 1-2: stuck; step 3: odd count
    step(env, LEFT)
    assert agent_state(env)[0] == (4, 5)


def test_sticky_and_flipud_stuck_forward_does_not_turn():
    env = on_tile(("sticky", "flipud"))
    step(env, FORWARD)
    step(env, FORWARD)
    assert agent_state(env) == (HERE, EAST)
    step(env, FORWARD)
    assert agent_state(env) == ((3, 4), WEST)


def test_sticky_and_fliplr_turns_swapped_while_stuck():
    env = on_tile(("sticky", "fliplr"))
    step(env, LEFT)
    assert agent_state(env) == (HERE, SOUTH)
    step(env, FORWARD)
    assert agent_state(env) == (HERE, SOUTH)
    step(env, FORWARD)
    assert agent_state(env) == ((4, 5), SOUTH)


def test_fliplr_and_slippery():
    env = on_tile(("slippery", "fliplr"))
    step(env, LEFT)
    assert agent_state(env) == (HERE, SOUTH) and env.step_count == 0.5
    step(env, FORWARD)
    assert agent_state(env) == ((4, 5), SOUTH) and env.step_count == 1.0


def test_fliplr_and_flipud():
    env = on_tile(("fliplr", "flipud"))
    step(env, RIGHT)
    assert agent_state(env) == (HERE, NORTH)
    step(env, FORWARD)
    assert agent_state(env) == ((4, 5), SOUTH)


def test_slippery_and_magic():
    env = on_tile(("slippery", "magic"))
    step(env, LEFT)
    step(env, LEFT)
    assert agent_state(env)[0] == (4, 5) and env.step_count == 1.0


def test_flipud_into_a_trap_behind():
    env = on_tile(("flipud",), tiles={(3, 4): "grey"}, dynamics={"grey": ("trap",)})
    assert step(env, FORWARD) == (0, True, False)
    assert agent_state(env) == ((3, 4), WEST)


def test_flipud_walks_away_from_a_trap_in_front():
    env = on_tile(("flipud",), tiles={(5, 4): "grey"}, dynamics={"grey": ("trap",)})
    assert step(env, FORWARD) == (0, False, False)
    assert agent_state(env) == ((3, 4), WEST)


def test_trap_entered_by_a_magic_push():
    env = on_tile(("magic",), tiles={(4, 5): "grey"}, dynamics={"grey": ("trap",)})
    assert step(env, LEFT) == (0, False, False)
    assert step(env, LEFT) == (0, True, False)
    assert agent_state(env)[0] == (4, 5)


def test_trap_and_slippery_colour_ends_the_episode_on_entry():
    env = hand_built_env(
        agent_pos=HERE, agent_dir=EAST, tiles={(5, 4): "grey"}, dynamics={"grey": ("trap", "slippery")}
    )
    assert step(env, FORWARD) == (0, True, False)
    assert env.step_count == 1


def test_target_reached_by_a_magic_push_is_a_success():
    """The verifier sees the position after the push: facing the ball from below-left counts."""
    env = on_tile(("magic",), target=(5, 5))
    step(env, LEFT)  # faces north
    reward, terminated, _ = step(env, RIGHT)  # faces east, pushed to (4, 5): the ball is in front
    assert terminated and reward == pytest.approx(1 - 0.9 * 2 / 100)


# ---------------------------------------------------------------------------- resolve_motion itself
def _props(table: dict[tuple[int, int], tuple[str, ...]]):
    return lambda x, y: frozenset(table.get((x, y), ()))


def _open_except(blocked: set[tuple[int, int]]):
    return lambda x, y: (x, y) not in blocked


def test_resolve_motion_reports_the_actual_action_and_flags():
    m = resolve_motion((1, 1), EAST, LEFT, 0, 0, _props({(1, 1): ("fliplr", "slippery")}), _open_except(set()))
    assert m.action == RIGHT and m.dir == SOUTH and m.half_step and not m.entered_trap and m.pos == (1, 1)
    m = resolve_motion((1, 1), EAST, FORWARD, 0, 0, _props({(2, 1): ("trap",)}), _open_except(set()))
    assert m.pos == (2, 1) and m.entered_trap and m.steps_in_cell == 0 and not m.half_step


def test_resolve_motion_counters():
    props = _props({(1, 1): ("magic",)})
    m = resolve_motion((1, 1), EAST, DONE, 5, 0, props, _open_except({(1, 2)}))
    assert (m.pos, m.steps_in_cell, m.magic_count) == ((1, 1), 6, 1)
    m = resolve_motion((1, 1), EAST, DONE, 6, 1, props, _open_except(set()))
    assert (m.pos, m.steps_in_cell, m.magic_count) == ((1, 2), 0, 0)
    m = resolve_motion((1, 1), EAST, LEFT, 3, 7, _props({}), _open_except(set()))
    assert (m.pos, m.dir, m.steps_in_cell, m.magic_count) == ((1, 1), NORTH, 4, 0)


def test_resolve_motion_never_enters_a_blocked_cell():
    walls = {(2, 1), (0, 1), (1, 2)}
    for props in [(), ("flipud",), ("magic",), ("fliplr",)]:
        for action in (FORWARD, LEFT, RIGHT, DONE):
            for magic_count in (0, 1):
                here = _props({(1, 1): props})
                m = resolve_motion((1, 1), EAST, action, 2, magic_count, here, _open_except(walls))
                assert m.pos == (1, 1)


# ---------------------------------------------------------------------------- the two engines' rules
def _every_case_in_random_worlds(seed: int):
    """Every property set x action x counter value, each in a 5x5 world with random traps and walls around (2, 2)."""
    rng = np.random.default_rng(seed)
    names = [p.name for p in TILE_PROPERTIES]
    worlds = []
    for here_mask, action, steps_in_cell, magic_count in itertools.product(
        range(2 ** len(names)), range(7), range(STICKY_STEPS + 1), range(3)
    ):
        masks = np.where(rng.random((5, 5)) < 0.3, PROPERTY_BIT["trap"], 0)
        masks[2, 2] = here_mask  # the agent stands on the cell: its own properties only
        enterable = rng.random((5, 5)) < 0.7
        enterable[2, 2] = True
        worlds.append((masks, enterable, int(rng.integers(4)), action, steps_in_cell, magic_count))
    return names, worlds


def test_tensor_rule_matches_the_single_rule_on_every_property_combination():
    """``resolve_motion_tensors`` (batched engine) == ``resolve_motion`` (single env, oracle), case by case."""
    names, worlds = _every_case_in_random_worlds(seed=0)
    assert len(worlds) == 2 ** len(names) * 7 * (STICKY_STEPS + 1) * 3
    masks = torch.as_tensor(np.stack([w[0].reshape(-1) for w in worlds]))  # flat cell = x * 5 + y
    enter = torch.as_tensor(np.stack([w[1].reshape(-1) for w in worlds]))
    tensor = resolve_motion_tensors(
        torch.full((len(worlds),), 12),
        torch.tensor([w[2] for w in worlds]),
        torch.tensor([w[3] for w in worlds]),
        torch.tensor([w[4] for w in worlds]),
        torch.tensor([w[5] for w in worlds]),
        lambda flat: masks.gather(1, flat.unsqueeze(1)).squeeze(1),
        lambda flat: enter.gather(1, flat.unsqueeze(1)).squeeze(1),
        torch.tensor([5, 1, -5, -1]),
        1,
    )
    for i, (mask, enterable, direction, action, steps_in_cell, magic_count) in enumerate(worlds):
        single = resolve_motion(
            (2, 2),
            direction,
            action,
            steps_in_cell,
            magic_count,
            lambda x, y, mask=mask: frozenset(n for b, n in enumerate(names) if mask[x, y] >> b & 1),
            lambda x, y, enterable=enterable: bool(enterable[x, y]),
        )
        got = (
            divmod(int(tensor.pos[i]), 5),
            int(tensor.dir[i]),
            int(tensor.steps_in_cell[i]),
            int(tensor.magic_count[i]),
            int(tensor.action[i]),
            bool(tensor.half_step[i]),
            bool(tensor.entered_trap[i]),
        )
        assert got == tuple(single), f"case {i}: properties {mask[2, 2]:#b}, action {action}: {got} != {single}"


def test_a_wrong_tensor_rule_is_caught_by_the_twin(monkeypatch):
    """The batched twin really checks: an engine that forgets fliplr fails the fliplr case."""
    import babyaipp.envs.batched as batched

    def without_fliplr(*args):
        motion = resolve_motion_tensors(*args)
        direction, action = args[1], args[2]
        unswapped = torch.where(action == LEFT, direction - 1, torch.where(action == RIGHT, direction + 1, motion.dir))
        return motion._replace(dir=unswapped % 4)

    monkeypatch.setattr(batched, "resolve_motion_tensors", without_fliplr)
    with pytest.raises(AssertionError, match="differs|direction"):
        test_fliplr_swaps_left_and_right_only_on_the_tile()


def test_search_counters_agree_between_engines():
    """The counters planners search over, for every property set and counter value, in both forms."""
    names = [p.name for p in TILE_PROPERTIES]
    cases = list(itertools.product(range(2 ** len(names)), range(5), range(5)))
    masks, sics, mcs = (torch.tensor(column) for column in zip(*cases))
    sic, mc = search_counters_tensors(masks, sics, mcs)
    for i, (mask, steps_in_cell, magic_count) in enumerate(cases):
        props = frozenset(n for b, n in enumerate(names) if mask >> b & 1)
        assert (int(sic[i]), int(mc[i])) == search_counters(props, steps_in_cell, magic_count)
