"""The oracle: a planner that knows the episode's dynamics and acts optimally enough to solve it.

It breaks BabyAI's instruction into subgoals (go to / pick up / put next to / open, in the order
``then``, ``after you`` and ``and`` require) and reaches each with a breadth-first search over
(cell, direction, sticky counter, magic parity) whose transitions are the environment's own
:func:`~babyaipp.envs.physics.resolve_motion`, so trap cells (and magic pushes into them) are never
entered, fliplr turns are swapped, flipud forwards are planned backwards, sticky tiles are waited
out. A closed door on the path costs a ``toggle`` then a ``forward``. Because the environment is
deterministic the plan is executed as computed; the oracle replans if the state ever differs from
the prediction. It is the package's proof that levels are solvable, a reference score, and the
source of demonstrations.

The same search drives the non-reading reference planners of
:mod:`babyaipp.envs.reference_planners`, which plan with a belief over the mappings instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from minigrid.envs.babyai.core.verifier import GoToInstr, OpenInstr, PickupInstr, PutNextInstr

from babyaipp.envs.instructions import leaves_in_order
from babyaipp.envs.physics import (
    DIR_TO_VEC,
    DONE,
    DROP,
    FORWARD,
    LEFT,
    PICKUP,
    RIGHT,
    TOGGLE,
    resolve_motion,
    search_counters,
)

State = tuple[int, int, int, int, int]  # x, y, dir, steps_in_cell (capped), magic parity
PropsAt = Callable[[int, int], "frozenset[str] | tuple[str, ...]"]


class NoPlanError(RuntimeError):
    """The subgoal cannot be reached (should not happen on generated levels)."""


@dataclass
class _Subgoal:
    kind: str  # "goto", "pickup", "putnext", "open"
    instr: Any


class Oracle:
    """Acts in a BabyAI++ env (wrapped or not): call :meth:`reset` after ``env.reset``, then :meth:`act`."""

    def __init__(self, env: Any):
        self.env = env
        self._queue: list[Any] = []
        self._plan: deque[tuple[int, State | None]] = deque()
        self._stage = 0  # step within the current subgoal (e.g. pickup before drop)

    @property
    def base(self) -> Any:
        return self.env.unwrapped

    def reset(self) -> None:
        self._queue = leaves_in_order(self.base.instrs)
        self._plan.clear()
        self._stage = 0

    # ----------------------------------------------------------------- acting
    def act(self) -> int:
        """The next action (the env must have been stepped with the previous one)."""
        return self._follow_plan()

    def _follow_plan(self) -> int:
        env = self.base
        while self._plan:
            action, expected = self._plan[0]
            if expected is not None and self._state() != expected:
                self._abandon_plan()  # the world did not do what we predicted: replan
                break
            self._plan.popleft()
            if action == TOGGLE and _front_is_open_door(env):
                continue  # opened earlier on this path
            return action
        return self._next_subgoal_action()

    def _next_subgoal_action(self) -> int:
        env = self.base
        for _ in range(8):
            if not self._queue:
                return DONE
            instr = self._queue[0]
            if isinstance(instr, GoToInstr):
                targets = _positions(instr.desc.obj_set)
                if self._facing(targets) and self._stage == 1:
                    self._advance()
                    continue
                if self._facing(targets):
                    self._stage = 1
                    return DONE  # a no-op that lets the verifier see we face the target
                return self._plan_to_face(targets, on_arrival=lambda: setattr(self, "_stage", 1))
            if isinstance(instr, PickupInstr):
                if env.carrying is not None and env.carrying in instr.desc.obj_set:
                    self._advance()
                    continue
                targets = _positions(instr.desc.obj_set)
                if env.carrying is not None:
                    return self._drop_somewhere()
                return self._plan_to_face(targets, then=PICKUP)
            if isinstance(instr, PutNextInstr):
                move_objs = instr.desc_move.obj_set
                if self._stage == 2:
                    self._advance()
                    continue
                if env.carrying is None or env.carrying not in move_objs:
                    if env.carrying is not None:
                        return self._drop_somewhere()
                    return self._plan_to_face(_positions(move_objs), then=PICKUP)
                fixed = _positions(instr.desc_fixed.obj_set)
                spots = {
                    (x + dx, y + dy) for x, y in fixed for dx, dy in DIR_TO_VEC if env.grid.get(x + dx, y + dy) is None
                }
                return self._plan_to_face(spots, then=DROP, on_arrival=lambda: setattr(self, "_stage", 2))
            if isinstance(instr, OpenInstr):
                doors = [d for d in instr.desc.obj_set if not d.is_open]
                if not doors or self._stage == 1:
                    self._advance()
                    continue
                locked = [d for d in doors if d.is_locked]
                if locked and not _carries_key_for(env, locked):
                    keys = [
                        o
                        for o in env.grid.grid
                        if o is not None and o.type == "key" and o.color in {d.color for d in locked}
                    ]
                    if env.carrying is not None:
                        return self._drop_somewhere()
                    return self._plan_to_face(_positions(keys), then=PICKUP)
                return self._plan_to_face(_positions(doors), then=TOGGLE, on_arrival=lambda: setattr(self, "_stage", 1))
            raise NoPlanError(f"oracle cannot handle instruction {type(instr).__name__}")
        return DONE

    _stage_before_plan = 0

    def _abandon_plan(self) -> None:
        """Drop the rest of the plan, and the subgoal stage its arrival would have reached (a
        plan's ``on_arrival`` marks the stage when the plan is made, e.g. 'dropped next to the
        target': the subgoal is not done if the plan is not)."""
        if self._plan:
            self._stage = self._stage_before_plan
        self._plan.clear()

    def _advance(self) -> None:
        self._queue.pop(0)
        self._stage = 0
        self._plan.clear()

    def _drop_somewhere(self) -> int:
        spots = {
            (x, y)
            for x in range(1, self.base.width - 1)
            for y in range(1, self.base.height - 1)
            if self.base.grid.get(x, y) is None
        }
        spots.discard(tuple(int(v) for v in self.base.agent_pos))
        return self._plan_to_face(spots, then=DROP)

    # ----------------------------------------------------------------- planning
    def _state(self) -> State:
        env = self.base
        x, y = (int(v) for v in env.agent_pos)
        return normalise_state(env.properties_at, x, y, int(env.agent_dir), env.steps_in_cell, env.magic_count)

    def _plan_actions(self, targets: set[tuple[int, int]]) -> list[tuple[int, State | None]]:
        """The action plan to face one of ``targets``; the oracle plans with the true dynamics."""
        return plan_to_face(self.base, targets)

    def _facing(self, targets: set[tuple[int, int]]) -> bool:
        fx, fy = (int(v) for v in self.base.front_pos)
        return (fx, fy) in targets

    def _plan_to_face(
        self, targets: Iterable[tuple[int, int]], then: int | None = None, on_arrival: Callable[[], None] | None = None
    ) -> int:
        targets = set(targets)
        actions = self._plan_actions(targets)
        if then is not None:
            actions.append((then, None))
        self._stage_before_plan = self._stage
        if on_arrival:
            on_arrival()
        if not actions:
            return DONE
        self._plan.extend(actions)
        return self._follow_plan()


def _positions(objs: Iterable[Any]) -> set[tuple[int, int]]:
    return {(int(o.cur_pos[0]), int(o.cur_pos[1])) for o in objs if o.cur_pos is not None and o.cur_pos[0] >= 0}


def _front_is_open_door(env: Any) -> bool:
    cell = env.grid.get(*env.front_pos)
    return cell is not None and cell.type == "door" and cell.is_open


def _carries_key_for(env: Any, doors: list[Any]) -> bool:
    c = env.carrying
    return c is not None and c.type == "key" and any(c.color == d.color for d in doors)


def normalise_state(props_at: PropsAt, x: int, y: int, d: int, steps_in_cell: int, magic_count: int) -> State:
    """The search state of the agent: counters capped to what the tile under it can tell apart."""
    sic, mc = search_counters(props_at(x, y), steps_in_cell, magic_count)
    return (x, y, d, sic, mc)


def _search(
    env: Any,
    targets: set[tuple[int, int]] | None,
    any_door: bool = False,
    props_at: PropsAt | None = None,
    start: State | None = None,
    keep_way_back: bool = False,
    stand_on: tuple[int, int] | None = None,
) -> tuple[dict[State, tuple[State, tuple[int, ...]] | None], State | None]:
    """Breadth-first search over (cell, direction, counters) with the tile physics.

    Stops at the first state facing a cell of ``targets`` (``None``: explore everything). Closed
    doors are passed with a toggle; locked doors only with their key in hand, or always when
    ``any_door`` (the solvability check, where keys are fetched first). Trap cells are never entered.
    ``props_at`` gives the tile properties to plan with (default: the episode's own, as the oracle
    knows them); a reference planner passes its belief. ``start`` defaults to the agent's state.

    ``stand_on``: stop instead at the first state standing on that cell.

    With ``keep_way_back`` a goal state is accepted only if the search can come back from it to
    stand on the start cell again: magic pushes move the agent one way (down), so the first goal found may lie in a
    pocket from which the next subgoal (a door after its key, say) cannot be reached. If no goal
    keeps the way back, the first goal found is returned.
    """
    grid = env.grid
    carrying = env.carrying
    props_at = env.properties_at if props_at is None else props_at

    def passable(x: int, y: int) -> bool:
        cell = grid.get(x, y)
        if cell is None or cell.can_overlap():
            return True
        if cell.type == "door":
            has_key = carrying is not None and carrying.type == "key" and carrying.color == cell.color
            return any_door or not cell.is_locked or has_key
        return False

    def is_closed_door(x: int, y: int) -> bool:
        cell = grid.get(x, y)
        return cell is not None and cell.type == "door" and not cell.is_open

    if start is None:
        x0, y0 = (int(v) for v in env.agent_pos)
        start = normalise_state(props_at, x0, y0, int(env.agent_dir), env.steps_in_cell, env.magic_count)
    parents: dict[State, tuple[State, tuple[int, ...]] | None] = {start: None}
    queue = deque([start])
    first_goal: State | None = None
    pushed_goal: State | None = None
    while queue:
        s = queue.popleft()
        x, y, d, sic, mc = s
        dx, dy = DIR_TO_VEC[d]
        if stand_on is not None and (x, y) == stand_on:
            return parents, s
        if targets is not None and (x + dx, y + dy) in targets and mc and "magic" in props_at(x, y):
            # On a magic tile after an odd number of steps there, the next action in place (the
            # pickup, drop or toggle this plan leads to) is pushed down, possibly onto a trap:
            # kept only as a last resort, the search goes on to a state where acting is safe.
            pushed_goal = pushed_goal or s
        elif targets is not None and (x + dx, y + dy) in targets:
            if not keep_way_back:
                return parents, s
            first_goal = first_goal or s
            _, found = _search(env, None, any_door, props_at, start=s, stand_on=(start[0], start[1]))
            if found is not None:
                return parents, s
        for a in (FORWARD, LEFT, RIGHT):
            m = resolve_motion((x, y), d, a, sic, mc, props_at, passable)
            if m.entered_trap:
                continue
            macro: tuple[int, ...] = (a,)
            if m.pos != (x, y) and is_closed_door(*m.pos):
                macro = (TOGGLE, a)
            ns = normalise_state(props_at, m.pos[0], m.pos[1], m.dir, m.steps_in_cell, m.magic_count)
            if ns not in parents:
                parents[ns] = (s, macro)
                queue.append(ns)
    return parents, first_goal or pushed_goal


def round_trip_cells(env: Any) -> set[tuple[int, int]]:
    """Cells the agent can come to face from its current state *and* come back from, to stand
    where it starts again, with the full tile physics (doors passable, traps never entered).

    A magic push is a one-way move, so a target can be faceable only from a pocket the agent
    cannot leave; a task with several subgoals (a sequence, a key then its door) needs every
    target to be a round trip from the start, which this checks with one forward search over
    (cell, direction, counters) and one backward search over its recorded moves.
    """
    grid = env.grid
    # the floor is fixed during the search: its properties and passability are read once per cell
    # (the level generator runs this on many dense layouts)
    props = [[env.properties_at(x, y) for y in range(grid.height)] for x in range(grid.width)]
    cells = grid.grid
    open_cell = [c is None or c.can_overlap() or c.type == "door" for c in cells]
    width = grid.width

    def props_at(x: int, y: int) -> frozenset[str]:
        return props[x][y]

    def passable(x: int, y: int) -> bool:
        return open_cell[x + y * width]

    x0, y0 = (int(v) for v in env.agent_pos)
    start = normalise_state(props_at, x0, y0, int(env.agent_dir), env.steps_in_cell, env.magic_count)
    predecessors: dict[State, list[State]] = {start: []}
    queue = deque([start])
    while queue:
        s = queue.popleft()
        x, y, d, sic, mc = s
        for a in (FORWARD, LEFT, RIGHT):
            m = resolve_motion((x, y), d, a, sic, mc, props_at, passable)
            if m.entered_trap:
                continue
            ns = normalise_state(props_at, m.pos[0], m.pos[1], m.dir, m.steps_in_cell, m.magic_count)
            if ns not in predecessors:
                predecessors[ns] = []
                queue.append(ns)
            predecessors[ns].append(s)
    back = deque(s for s in predecessors if s[:2] == (x0, y0))
    returns = set(back)
    while back:
        for p in predecessors[back.popleft()]:
            if p not in returns:
                returns.add(p)
                back.append(p)
    return {(x + DIR_TO_VEC[d][0], y + DIR_TO_VEC[d][1]) for x, y, d, _, _ in returns}


def faceable_cells(env: Any) -> set[tuple[int, int]]:
    """Every cell the agent can come to face from its current state, with the full tile physics."""
    parents, _ = _search(env, None, any_door=True)
    return {(x + DIR_TO_VEC[d][0], y + DIR_TO_VEC[d][1]) for x, y, d, _, _ in parents}


def plan_to_face(
    env: Any,
    targets: set[tuple[int, int]],
    props_at: PropsAt | None = None,
    magic_count: int | None = None,
) -> list[tuple[int, State | None]]:
    """Shortest action sequence (in actions) after which the agent faces a cell of ``targets``.

    Each entry is (action, expected state before that action). Closed doors are passed with a
    toggle; locked doors only with their key in hand. Raises :class:`NoPlanError` if unreachable.
    ``props_at`` / ``magic_count``: the tile properties and the agent's magic counter to plan with
    (default: the episode's true ones). Where a tile may be magic, plans that strand the agent
    (no way back to where it stands) are avoided when another plan exists.
    """
    props_at = env.properties_at if props_at is None else props_at
    x0, y0 = (int(v) for v in env.agent_pos)
    mc = env.magic_count if magic_count is None else magic_count
    start = normalise_state(props_at, x0, y0, int(env.agent_dir), env.steps_in_cell, mc)
    parents, goal = _search(env, targets, props_at=props_at, start=start, keep_way_back=_magic_in_play(env, props_at))
    if goal is None:
        raise NoPlanError(f"no trap-free path to face any of {sorted(targets)}")
    steps: list[tuple[int, State | None]] = []
    s = goal
    while parents[s] is not None:
        prev, macro = parents[s]
        if len(macro) == 2:  # toggle happens in front of the door: state unchanged by it
            steps.append((macro[1], None))
            steps.append((macro[0], prev))
        else:
            steps.append((macro[0], prev))
        s = prev
    steps.reverse()
    return steps


def _magic_in_play(env: Any, props_at: PropsAt) -> bool:
    """Whether any tile of the floor has (or is believed to have) the magic property."""
    floor = env.floor
    colours, first = np.unique(floor, return_index=True)
    cells = [np.unravel_index(i, floor.shape) for c, i in zip(colours, first) if c >= 0]
    return any("magic" in props_at(int(x), int(y)) for x, y in cells)
