"""The one instruction walker: node kinds, descriptions, and the order minigrid's verifier completes leaves.

Its order is checked against minigrid's own verifier (a leaf order the walker gives must be one
the verifier accepts), and its users (level capture, the batched engine's slots, the oracle's
subgoal queue, level generation's object groups) are checked to read the tree through it.
"""

from __future__ import annotations

import pytest
from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    AndInstr,
    BeforeInstr,
    GoToInstr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)

import babyaipp.envs as envs
from babyaipp.envs.batched_state import flatten_instr
from babyaipp.envs.instructions import descriptions, leaves_in_order, node_kind, verification_groups
from babyaipp.envs.level import instr_from_dict, instr_to_dict
from babyaipp.envs.oracle import Oracle
from babyaipp.errors import ConfigError

from .conftest import quiet_make

BALL, BOX, KEY, DOOR = (ObjDesc(t, "red") for t in ("ball", "box", "key", "door"))


def _leaves():
    return GoToInstr(BALL), PickupInstr(BOX), OpenInstr(DOOR), PutNextInstr(KEY, BALL)


def test_node_kinds_and_descriptions():
    goto, pickup, open_, putnext = _leaves()
    assert [node_kind(n) for n in (goto, pickup, open_, putnext)] == ["goto", "pickup", "open", "putnext"]
    assert [node_kind(n(goto, pickup)) for n in (AndInstr, BeforeInstr, AfterInstr)] == ["and", "before", "after"]
    assert descriptions(goto) == (BALL,) and descriptions(putnext) == (KEY, BALL)
    with pytest.raises(ConfigError, match="unsupported instruction of type str; valid kinds: goto, "):
        node_kind("go to the ball")


def test_groups_follow_the_verifier_order():
    goto, pickup, open_, putnext = _leaves()
    assert verification_groups(goto) == [[goto]]
    assert verification_groups(AndInstr(goto, pickup)) == [[goto, pickup]]
    assert verification_groups(BeforeInstr(goto, AndInstr(pickup, open_))) == [[goto], [pickup, open_]]
    assert verification_groups(AfterInstr(AndInstr(goto, pickup), putnext)) == [[putnext], [goto, pickup]]
    assert leaves_in_order(AfterInstr(AndInstr(goto, pickup), putnext)) == [putnext, goto, pickup]


@pytest.mark.parametrize("outer, inner", [(BeforeInstr, BeforeInstr), (AndInstr, AfterInstr), (AndInstr, AndInstr)])
def test_nesting_deeper_than_babyais_grammar_is_refused(outer, inner):
    """minigrid asserts its grammar when building a tree (not under ``python -O``); the walker refuses too."""
    goto, pickup, open_, _ = _leaves()
    tree = outer(goto, pickup)
    tree.instr_a = inner(goto, open_)
    with pytest.raises(ConfigError, match="nest at most one level deep"):
        verification_groups(tree)


def test_users_read_the_same_order():
    goto, pickup, open_, putnext = _leaves()
    tree = AfterInstr(AndInstr(goto, pickup), putnext)
    assert flatten_instr(tree) == ([putnext, None, goto, pickup], True)
    assert flatten_instr(AndInstr(goto, open_)) == ([goto, open_, None, None], False)
    again = instr_from_dict(instr_to_dict(tree))
    assert [node_kind(leaf) for leaf in leaves_in_order(again)] == ["putnext", "goto", "pickup"]
    assert instr_to_dict(putnext) == {
        "kind": "putnext",
        "move": {"type": "key", "color": "red", "loc": None},
        "fixed": {"type": "ball", "color": "red", "loc": None},
        "strict": False,
    }


@pytest.mark.parametrize("task", ["GoToSeq", "PutNext", "Unlock", "PickupLoc"])
def test_oracle_queue_is_the_walkers_order(task):
    env = quiet_make(envs.env_id(task, "Easy", "Test"))
    for seed in range(3):
        env.reset(seed=seed)
        oracle = Oracle(env)
        oracle.reset()
        assert oracle._queue == leaves_in_order(env.unwrapped.instrs)
