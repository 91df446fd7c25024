"""The oracle solves sampled levels (so generated levels are solvable) and plans through the physics."""

from __future__ import annotations

import copy

import pytest

import babyaipp.envs as envs
from babyaipp.envs.oracle import NoPlanError, Oracle, faceable_cells, plan_to_face
from babyaipp.envs.physics import FORWARD, LEFT, RIGHT
from babyaipp.envs.wrappers import TokenObsWrapper

from .conftest import EAST, NORTH, hand_built_env, quiet_make

NAVIGATION = [t for t, spec in envs.TASKS.items() if spec.navigation]
OTHER = [t for t, spec in envs.TASKS.items() if not spec.navigation]
FIRST_SEED = 100_000  # far from the seeds other tests use


def play(env, oracle: Oracle, seed: int, strict: bool = False) -> tuple[bool, bool, int]:
    """One oracle episode: (success, ended on a trap, steps).

    An episode the oracle finds no trap-free plan for counts as a failure (``strict``: raises).
    """
    env.reset(seed=seed)
    oracle.reset()
    steps = 0
    while True:
        try:
            action = oracle.act()
        except NoPlanError:
            if strict:
                raise
            return False, False, steps
        _, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        if terminated or truncated:
            base = env.unwrapped
            on_trap = "trap" in base.properties_at(*(int(v) for v in base.agent_pos))
            return reward > 0, on_trap, steps


def success_rate(env_id: str, episodes: int, **kwargs) -> tuple[float, int]:
    env = quiet_make(env_id, **kwargs)
    oracle = Oracle(env)
    results = [play(env, oracle, FIRST_SEED + i) for i in range(episodes)]
    return sum(r[0] for r in results) / episodes, sum(r[1] for r in results)


def _check_navigation(task: str, difficulty: str, split: str, episodes: int, **kwargs) -> None:
    rate, trap_deaths = success_rate(envs.env_id(task, difficulty, split), episodes, **kwargs)
    assert rate >= 0.99, f"{task}-{difficulty}-{split}: oracle success {rate:.1%}"
    assert trap_deaths == 0


@pytest.mark.parametrize("difficulty", ["Easy", "Hard"])
@pytest.mark.parametrize("task", NAVIGATION)
def test_oracle_solves_navigation_tasks(task: str, difficulty: str):
    _check_navigation(task, difficulty, "Test", episodes=100)


@pytest.mark.parametrize("difficulty", ["Easy", "Hard"])
@pytest.mark.parametrize("task", OTHER)
def test_oracle_solves_other_tasks_at_a_high_rate(task: str, difficulty: str):
    rate, trap_deaths = success_rate(envs.env_id(task, difficulty, "Test"), 40)
    # Not 1.0 on 40 episodes: the oracle's subgoal order is greedy. The two known causes of
    # failures are fixed (a fixed PutNext object boxed in by others: such levels are redrawn; a
    # one-way magic push away from the next subgoal: the oracle keeps a way back); the slow test
    # below checks 2000 seeds per family at >= 99.5%.
    assert rate >= 0.95, f"{task}-{difficulty}: oracle success {rate:.1%}"
    assert trap_deaths == 0


@pytest.mark.slow
@pytest.mark.parametrize("split", ["Test", "TargetPairOnly"])
@pytest.mark.parametrize("difficulty", ["Easy", "Hard"])
@pytest.mark.parametrize("task", NAVIGATION)
def test_oracle_solves_navigation_tasks_many_episodes(task: str, difficulty: str, split: str):
    _check_navigation(task, difficulty, split, episodes=500)


@pytest.mark.slow
@pytest.mark.parametrize("task", NAVIGATION)
def test_oracle_solves_hard_with_one_property_per_colour(task: str):
    _check_navigation(task, "Hard", "Test", episodes=200, properties_per_colour=1)


#: Episodes whose level was unsolvable before generation checked flipud+magic tiles with the physics
#: (a flipud+magic tile over a trap walled off the goal; found with the oracle). Kept as regressions.
UNSOLVABLE_EPISODES = [
    ("BabyAIPP/GoToRedBall-Hard-Test-v0", 962),
    ("BabyAIPP/GoToRedBall-Hard-Test-v0", 100_169),
    ("BabyAIPP/GoToLocal-Hard-Test-v0", 192),
    ("BabyAIPP/GoToLocal-Hard-Test-v0", 781),
]


@pytest.mark.parametrize("env_id, seed", UNSOLVABLE_EPISODES)
def test_generated_levels_are_solvable_on_known_bad_seeds(env_id: str, seed: int):
    env = quiet_make(env_id)
    success, _, _ = play(env, Oracle(env), seed, strict=True)
    assert success


@pytest.mark.slow
@pytest.mark.parametrize("task", ["GoToRedBall", "GoToLocal", "GoTo"])
def test_generated_levels_are_solvable_many_episodes(task: str):
    """Single-goal tasks: the oracle's first search is over the full physics state, so NoPlanError = unsolvable."""
    env = quiet_make(envs.env_id(task, "Hard", "Test"))
    oracle = Oracle(env)
    for seed in range(1500):
        play(env, oracle, seed, strict=True)


def _key_reachable_without_locked_doors(env) -> bool:
    """Can the agent come to face a key of a locked target door without passing any locked door?"""
    grid = env.grid
    start = (int(env.agent_pos[0]), int(env.agent_pos[1]))
    seen, frontier, faced = {start}, [start], set()
    while frontier:
        x, y = frontier.pop()
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            cell_pos = (x + dx, y + dy)
            cell = grid.get(*cell_pos)
            faced.add(cell_pos)
            passable = cell is None or (cell.type == "door" and not cell.is_locked)
            if passable and cell_pos not in seen:
                seen.add(cell_pos)
                frontier.append(cell_pos)
    colours = {d.color for d in env.instrs.desc.obj_set if d.is_locked}
    keys = {
        (x, y)
        for x in range(grid.width)
        for y in range(grid.height)
        if (c := grid.get(x, y)) is not None and c.type == "key" and c.color in colours
    }
    return not colours or bool(keys & faced)


@pytest.mark.parametrize("difficulty", ["Easy", "Hard"])
def test_unlock_key_is_reachable_without_the_locked_door(difficulty: str):
    env = quiet_make(envs.env_id("Unlock", difficulty, "Test")).unwrapped
    unreachable = []
    for seed in (63, 141, 161, 165, 178):  # seeds where minigrid's generator does it
        env.reset(seed=seed)
        if not _key_reachable_without_locked_doors(env):
            unreachable.append(seed)
    assert unreachable == []


def test_flipud_magic_tile_over_a_trap_is_impassable():
    """A corridor whose only way east is a flipud+magic tile with a trap below it.

    Entering the tile facing east, forward would reverse the agent; facing west first takes two
    turns, and the second step on the magic tile pushes the agent into the trap. A search over cells
    that only avoids traps calls this solvable, which is why generation must search with the physics.
    """
    env = hand_built_env(
        agent_pos=(2, 4),
        agent_dir=EAST,
        tiles={(4, 4): "blue", (4, 5): "grey"},
        dynamics={"blue": ("flipud", "magic"), "grey": ("trap",)},
        walls=[(x, 3) for x in range(1, 9)] + [(x, 5) for x in range(1, 9) if x != 4] + [(4, 6)],
        target=(8, 4),
    )
    with pytest.raises(NoPlanError):
        plan_to_face(env, {(8, 4)})
    # The same by hand: east onto the tile, then each way of turning around ends in the trap.
    for turns in ([LEFT, LEFT], [RIGHT, RIGHT], [LEFT, FORWARD]):
        trial = copy.deepcopy(env)
        trial.step(FORWARD)
        trial.step(FORWARD)
        outcomes = [trial.step(a)[2] for a in turns]
        assert outcomes[-1], f"{turns}: expected the push into the trap"
    assert (8, 4) not in faceable_cells(env)


def test_oracle_acts_through_a_wrapper():
    env = TokenObsWrapper(quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0"))
    oracle = Oracle(env)
    assert all(play(env, oracle, FIRST_SEED + i)[0] for i in range(10))


# ---------------------------------------------------------------------------- hand-built puzzles
def run_oracle(env, limit: int = 60) -> tuple[float, bool, list[int]]:
    oracle = Oracle(env)
    oracle.reset()
    actions = []
    for _ in range(limit):
        action = oracle.act()
        actions.append(action)
        _, reward, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            return reward, terminated, actions
    return 0.0, False, actions


def corridor_walls(y: int = 4) -> list[tuple[int, int]]:
    """Walls above and below row ``y`` so the interior is a one-cell-wide corridor."""
    return [(x, y - 1) for x in range(1, 9)] + [(x, y + 1) for x in range(1, 9)]


def test_oracle_walks_around_a_wall_of_traps():
    traps = {(6, y): "grey" for y in range(1, 8)}  # column x=6 is traps except (6, 8)
    env = hand_built_env(agent_pos=(2, 4), agent_dir=EAST, tiles=traps, dynamics={"grey": ("trap",)}, target=(8, 4))
    reward, terminated, _ = run_oracle(env)
    assert terminated and reward > 0  # a trap would have ended it with reward 0


def test_oracle_crosses_a_reversing_tile_backwards_in_the_fewest_actions():
    env = hand_built_env(
        agent_pos=(2, 4),
        agent_dir=EAST,
        tiles={(4, 4): "blue"},
        dynamics={"blue": ("flipud",)},
        walls=corridor_walls(),
        target=(8, 4),
    )
    reward, terminated, actions = run_oracle(env)
    assert terminated and reward > 0
    # F F onto the tile, turn around (two turns), F is reversed into (5, 4), F F faces the ball.
    assert len(actions) == 7
    assert actions[0:2] == [FORWARD, FORWARD] and actions[4:] == [FORWARD] * 3


def test_oracle_waits_out_a_sticky_tile_and_uses_mirrored_turns():
    env = hand_built_env(
        agent_pos=(2, 4),
        agent_dir=EAST,
        tiles={(4, 4): "blue", (5, 4): "green"},
        dynamics={"blue": ("sticky",), "green": ("fliplr",)},
        walls=[(x, 5) for x in range(1, 9)] + [(x, 3) for x in range(1, 9) if x != 5],
        target=(5, 1),
    )
    reward, terminated, actions = run_oracle(env)
    assert terminated and reward > 0
    # F F onto sticky, two wasted steps, F onto the mirrored tile, RIGHT (acts as left) to face
    # north, F F faces the ball at (5, 1).
    assert len(actions) == 8
    assert actions[5] == RIGHT and env.agent_dir == NORTH


def test_oracle_never_lingers_on_magic_above_a_trap():
    env = hand_built_env(
        agent_pos=(2, 4),
        agent_dir=EAST,
        tiles={(4, 4): "blue", (4, 5): "grey"},
        dynamics={"blue": ("magic",), "grey": ("trap",)},
        walls=[(x, 3) for x in range(1, 9)] + [(x, 5) for x in range(1, 9) if x != 4] + [(4, 6)],
        target=(8, 4),
    )
    reward, terminated, _ = run_oracle(env)
    assert terminated and reward > 0


#: Episodes the oracle once failed on although the level was solvable. Unlock-Hard seed 15: a
#: one-way move (a magic push past a flipud+magic tile) on the way to the key left no way back to
#: the door; the oracle now keeps a way back to where it stood whenever magic is in play.
#: PutNext-Hard seed 87: the yellow key to put the ball next to had no empty neighbour (the
#: level is now redrawn, see ``levels._RoomToPutNext``).
STRANDED_EPISODES = [("BabyAIPP/Unlock-Hard-Train-v0", 15), ("BabyAIPP/PutNext-Hard-Train-v0", 87)]


@pytest.mark.parametrize("env_id, seed", STRANDED_EPISODES)
def test_oracle_keeps_a_way_back(env_id: str, seed: int):
    env = quiet_make(env_id)
    success, _, _ = play(env, Oracle(env), seed, strict=True)
    assert success


def _family_rate(task: str, difficulty: str, seeds: range) -> tuple[float, list[int]]:
    env = quiet_make(envs.env_id(task, difficulty, "Train"))
    oracle = Oracle(env)
    failed = [seed for seed in seeds if not play(env, oracle, seed)[0]]
    return 1 - len(failed) / len(seeds), failed


@pytest.mark.parametrize("task", list(envs.TASKS))
def test_oracle_on_every_family_few_seeds(task: str):
    """Fast sibling of the thousands-of-seeds check below: 30 Hard Train seeds per family."""
    rate, failed = _family_rate(task, "Hard", range(30))
    assert rate >= (1.0 if envs.TASKS[task].navigation else 0.95), f"{task}: failed seeds {failed}"


@pytest.mark.slow
@pytest.mark.parametrize("difficulty", ["Easy", "Hard"])
@pytest.mark.parametrize("task", list(envs.TASKS))
def test_oracle_on_every_family_thousands_of_seeds(task: str, difficulty: str):
    rate, failed = _family_rate(task, difficulty, range(2000))
    # Dense PutNext/PickupLoc: about 1 level in 150-300 has a needed object that can be reached
    # only after moving another one (the dense routes are laid on the floor as generated); the
    # oracle does not clear a way. Known, documented in docs/environments.md.
    known_gap = task in ("PutNextDense", "PutNextLocalDense", "PickupLocDense")
    floor = 0.99 if known_gap else 0.995
    assert rate >= floor, f"{task}-{difficulty}: oracle success {rate:.2%}, failed seeds {failed[:20]}"
