"""The non-reading reference planners: they never use the episode's mapping, and do what they say."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import babyaipp.envs as envs
from babyaipp.envs import dynamics as dyn
from babyaipp.envs.oracle import NoPlanError, Oracle, plan_to_face
from babyaipp.envs.reference_planners import MappingBelief, ReferencePlanner, make_reference_planner
from babyaipp.errors import InvalidChoiceError

from .conftest import quiet_make

FIRST_SEED = 300_000  # far from the seeds other tests use


def play(env, planner: Oracle, seed: int, max_actions: int = 2000) -> tuple[bool, list[tuple[int, int]]]:
    """One episode: (success, the cells the agent stood on after each step)."""
    env.reset(seed=seed)
    planner.reset()
    cells = []
    for _ in range(max_actions):
        try:
            action = planner.act()
        except NoPlanError:
            return False, cells
        _, reward, terminated, truncated, _ = env.step(action)
        base = env.unwrapped
        cells.append((int(base.agent_pos[0]), int(base.agent_pos[1])))
        if terminated or truncated:
            return reward > 0, cells
    return False, cells


class _MappingRead(Exception):
    pass


@contextlib.contextmanager
def mapping_hidden(env):
    """Every way of reading the episode's mapping raises inside the block."""
    base = env.unwrapped
    klass = type(base)
    assert "dynamics" not in klass.__dict__  # defined on the mixin; shadowed on the class here
    saved = base._dynamics, base._props_by_idx

    def refuse(*args, **kwargs):
        raise _MappingRead

    base.properties_at = refuse
    klass.dynamics = property(refuse)
    base._dynamics = base._props_by_idx = None  # any use of the private copies fails too
    try:
        yield
    finally:
        del base.properties_at
        delattr(klass, "dynamics")
        base._dynamics, base._props_by_idx = saved


@pytest.mark.parametrize("name", ["memoriser", "cautious"])
def test_planner_never_reads_the_mapping(name: str):
    """Whole episodes where the planner's every decision is taken with the mapping hidden."""
    for seed in range(FIRST_SEED, FIRST_SEED + 5):
        for family in ("GoToRedBall-Hard", "GoToLocalDense-Easy"):
            env = quiet_make(f"BabyAIPP/{family}-TargetPairOnly-v0")
            planner = make_reference_planner(name, env)
            env.reset(seed=seed)
            planner.reset()
            for _ in range(300):
                with mapping_hidden(env):
                    action = planner.act()
                _, _, terminated, truncated, _ = env.step(action)  # the env itself may read it
                if terminated or truncated:
                    break


@pytest.mark.parametrize("name", ["memoriser", "cautious"])
def test_plan_unchanged_when_the_mapping_is_swapped(name: str):
    """Same level, another mapping installed: the planner's first plan is the same action sequence."""
    env = quiet_make("BabyAIPP/GoToRedBallDense-Easy-TargetPairOnly-v0")
    base = env.unwrapped
    changed_any = 0
    for seed in range(FIRST_SEED, FIRST_SEED + 20):
        env.reset(seed=seed)
        planner = make_reference_planner(name, env)
        planner.reset()
        first = [planner.act()] + [a for a, _ in planner._plan]
        for mapping in dyn.all_mappings("Easy", 1):
            mapping = dict(mapping)
            if mapping == dict(base.dynamics):
                continue
            base._set_dynamics(mapping)
            planner.reset()
            again = [planner.act()] + [a for a, _ in planner._plan]
            assert again == first, f"seed {seed}: plan changed with mapping {mapping}"
            changed_any += 1
    assert changed_any > 0


def test_memoriser_solves_train_levels():
    """Where the Train statistics are right (the Train split), the memoriser does what the oracle does."""
    env = quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0")
    planner = make_reference_planner("memoriser", env)
    wins = sum(play(env, planner, FIRST_SEED + i)[0] for i in range(150))
    assert wins / 150 >= 0.99


def test_cautious_never_enters_a_tile_when_a_tile_free_path_exists():
    env = quiet_make("BabyAIPP/GoToRedBall-Hard-Test-v0")
    base = env.unwrapped
    planner = make_reference_planner("cautious", env)
    checked = 0
    for seed in range(FIRST_SEED, FIRST_SEED + 120):
        env.reset(seed=seed)
        targets = {(int(o.cur_pos[0]), int(o.cur_pos[1])) for o in base.instrs.desc.obj_set}
        tiles_as_traps = lambda x, y: frozenset({"trap"}) if base.floor[x, y] >= 0 else frozenset()  # noqa: E731
        try:
            plan_to_face(base, targets, props_at=tiles_as_traps, magic_count=0)
        except NoPlanError:
            continue  # every path crosses a tile: not this test's case
        checked += 1
        _, cells = play(env, planner, seed)
        assert all(base.floor[x, y] < 0 for x, y in cells), f"seed {seed}: stepped on a tile"
    assert checked >= 50  # about 57% of Hard levels have a tile-free path


def test_memoriser_avoids_the_colour_train_makes_a_trap():
    """Easy Train: blue is the trap in 2 of 3 mappings, green never; the memoriser's risk says so."""
    belief = MappingBelief("Easy", 1, prior="Train")
    assert belief.trap_risk(["green"]) == pytest.approx(0, abs=1e-6)  # only mappings outside Train
    assert belief.trap_risk(["blue"]) == pytest.approx(2 / 3)
    uniform = MappingBelief("Easy", 1, prior="uniform")
    assert uniform.trap_risk(["green"]) == pytest.approx(uniform.trap_risk(["blue"])) == pytest.approx(1 / 3)


def test_belief_learns_from_a_surprising_turn():
    """Standing on green, 'left' turned the agent right: only mappings with green fliplr remain."""
    belief = MappingBelief("Easy", 1, prior="Train")
    colour_at = lambda x, y: "green" if (x, y) == (3, 3) else None  # noqa: E731
    before = ((3, 3), 0, 0)
    changed = belief.observe(before, 0, ((3, 3), 1), colour_at, lambda x, y: True)
    assert changed
    alive = [m for m, w in zip(belief.mappings, belief.weights) if w > 0]
    assert alive and all("fliplr" in m["green"] for m in alive)
    assert belief.trap_risk(["blue"]) == pytest.approx(1.0)  # Train's only mapping with green fliplr has blue trap


def test_unknown_planner_is_a_one_line_error():
    env = quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0")
    with pytest.raises(InvalidChoiceError, match="memoriser"):
        make_reference_planner("memoriser2", env)


@pytest.mark.parametrize("family", ["GoToRedBallDense", "GoToLocalDense"])
def test_memoriser_fails_held_out_pairs_on_dense_floors(family: str):
    """On dense floors the memoriser is well below the oracle on TargetPairOnly, and close to it on Train."""
    rates = {}
    for split in ("Train", "TargetPairOnly"):
        env = quiet_make(envs.env_id(family, "Easy", split))
        planner = make_reference_planner("memoriser", env)
        rates[split] = np.mean([play(env, planner, FIRST_SEED + i)[0] for i in range(150)])
    oracle_env = quiet_make(envs.env_id(family, "Easy", "TargetPairOnly"))
    oracle_rate = np.mean([play(oracle_env, Oracle(oracle_env), FIRST_SEED + i)[0] for i in range(150)])
    assert oracle_rate >= 0.99
    assert rates["Train"] >= 0.97
    assert rates["TargetPairOnly"] <= oracle_rate - MEMORISER_MARGIN, rates


#: Oracle minus memoriser on dense Easy TargetPairOnly, asserted on 150 levels: measured 0.5-0.6
#: on 500 levels (docs/environments.md, headroom table); 0.35 leaves room for sampling noise.
MEMORISER_MARGIN = 0.35


def _hard_held_out_success(name: str, family: str, levels: int) -> float:
    env = quiet_make(envs.env_id(family, "Hard", "TargetPairOnly"))
    planner = make_reference_planner(name, env)
    return float(np.mean([play(env, planner, FIRST_SEED + i)[0] for i in range(levels)]))


@pytest.mark.parametrize("family", ["GoToRedBallDense", "GoToLocalDense"])
def test_non_readers_fail_held_out_pairs_on_hard_dense_floors(monkeypatch, family: str):
    """Hard dense TargetPairOnly: memoriser and cautious at most 0.45 (measured 0.28-0.36 on 150
    levels, 0.30-0.32 on 500), because every way to the target needs two of the three colours.

    Without the Hard rule's redraws (of layouts and levels) both rise (measured 0.46-0.54): the
    rule, not the density alone, is what a non-reader pays for.
    """
    rates = [_hard_held_out_success(name, family, 150) for name in ("memoriser", "cautious")]
    assert max(rates) <= 0.45, rates
    monkeypatch.setattr("babyaipp.envs.core.DENSE_REDRAWS", 0)
    monkeypatch.setattr("babyaipp.envs.tiles.PAIR_REDRAWS", 0)
    ablated = [_hard_held_out_success(name, family, 150) for name in ("memoriser", "cautious")]
    assert np.mean(ablated) >= np.mean(rates) + 0.1, (rates, ablated)


def test_reference_planner_is_an_oracle_subclass():
    """One planner: the references reuse the oracle's subgoals and search."""
    assert issubclass(ReferencePlanner, Oracle)


@pytest.mark.parametrize("family", ["PutNextLocal", "Unlock"])
def test_memoriser_finishes_multi_stage_subgoals_after_replanning(family: str):
    """A surprise (a fliplr turn) mid-plan makes the planner replan; the subgoal's stage must not
    count as reached (before the fix, PutNextLocal-Easy Train: 0.70, as if the drop had happened)."""
    env = quiet_make(envs.env_id(family, "Easy", "Train"))
    planner = make_reference_planner("memoriser", env)
    wins = sum(play(env, planner, FIRST_SEED + i)[0] for i in range(60))
    assert wins / 60 >= 0.95
