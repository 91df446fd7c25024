"""Reference planners that never read: the oracle's subgoals and search, planned with a belief.

:class:`ReferencePlanner` (``memoriser``, ``cautious``) and :class:`ColourBlindPlanner`
(``walker``) see the layout, the instruction and their own moves, never the episode's mapping nor
the description; :class:`MappingBelief` is what they know of the mapping instead (see
docs/environments.md, "Non-reading references").
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, IDX_TO_COLOR

from babyaipp.envs import dynamics as dyn
from babyaipp.envs.oracle import NoPlanError, Oracle, PropsAt, State, normalise_state, plan_to_face
from babyaipp.envs.physics import resolve_motion
from babyaipp.errors import check_choice

#: Prior weight of a mapping outside the memoriser's Train split: small enough never to compete
#: with a Train mapping, large enough to keep the posterior proper once every Train mapping has
#: been ruled out by what the agent saw (it then falls back on any admissible mapping).
OUTSIDE_PRIOR = 1e-9
#: The non-reading reference planners and the prior over mappings each plans with.
REFERENCE_PRIORS: dict[str, str] = {"memoriser": "Train", "cautious": "uniform"}


class MappingBelief:
    """A posterior over the difficulty's colour -> properties mappings, for planners that never read.

    The prior is the ``Train`` split's distribution (``prior="Train"``: uniform over the mappings
    Train draws, what a perfect memoriser of Train knows) or uniform over every admissible mapping
    (``prior="uniform"``: no knowledge at all). :meth:`observe` drops the mappings that would not
    have produced a move the agent made (a fliplr turn, a flipud step, a magic push, a sticky wait,
    or surviving a tile), which is what an agent with memory can learn without reading.
    """

    def __init__(self, difficulty: str, properties_per_colour: int, prior: str = "Train"):
        dyn.validate(difficulty, "Train", properties_per_colour)
        self.colours: tuple[str, ...] = dyn.DIFFICULTY_COLOURS[difficulty]
        train = set(dyn.split_mappings(difficulty, "Train", properties_per_colour))
        mappings = dyn.all_mappings(difficulty, properties_per_colour)
        self.mappings: list[dict[str, frozenset[str]]] = [{c: frozenset(p) for c, p in m} for m in mappings]
        check_choice("prior", prior, ("Train", "uniform"))
        if prior == "Train":
            self.prior = np.array([1.0 if m in train else OUTSIDE_PRIOR for m in mappings])
        else:
            self.prior = np.ones(len(mappings))
        self.weights = self.prior.copy()

    def reset(self) -> None:
        self.weights = self.prior.copy()

    def _alive(self) -> np.ndarray:
        return self.weights > 0

    def trap_risk(self, colours: Iterable[str]) -> float:
        """Posterior probability that at least one of ``colours`` is a trap."""
        colours = tuple(colours)
        hit = np.array([any("trap" in m[c] for c in colours) for m in self.mappings])
        return float(self.weights[hit].sum() / self.weights.sum())

    def likely_properties(self, colour: str) -> frozenset[str]:
        """The most probable properties of ``colour`` given that it is not a trap (plain if it must be)."""
        scores: dict[frozenset[str], float] = {}
        for m, w in zip(self.mappings, self.weights):
            if w > 0 and "trap" not in m[colour]:
                scores[m[colour]] = scores.get(m[colour], 0.0) + w
        if not scores:
            return frozenset()
        # ties broken by the table order of the properties, so the choice is deterministic
        return max(scores, key=lambda p: (scores[p], [-dyn.PROPERTIES.index(q) for q in sorted(p)]))

    def observe(
        self,
        before: tuple[tuple[int, int], int, int],
        action: int,
        after: tuple[tuple[int, int], int],
        colour_at: Callable[[int, int], str | None],
        can_enter: Callable[[int, int], bool],
    ) -> bool:
        """Keep the mappings that explain one step: ``before`` = (pos, dir, steps in cell), ``after``
        = (pos, dir), the agent alive. Returns whether the belief changed."""
        (pos, direction, steps_in_cell), (new_pos, new_dir) = before, after
        changed = False
        for i, m in enumerate(self.mappings):
            if self.weights[i] == 0:
                continue

            def props_at(x: int, y: int, m: dict[str, frozenset[str]] = m) -> frozenset[str]:
                c = colour_at(x, y)
                return m[c] if c in m else frozenset()

            # On a magic tile the magic counter equals the steps spent in the cell (both restart
            # on a move), so the agent's own count stands for it.
            magic = steps_in_cell if "magic" in props_at(*pos) else 0
            motion = resolve_motion(pos, direction, action, steps_in_cell, magic, props_at, can_enter)
            if motion.entered_trap or motion.pos != new_pos or motion.dir != new_dir:
                self.weights[i] = 0.0
                changed = True
        if not self._alive().any():  # nothing explains it (cannot happen with the true mapping kept)
            self.weights = self.prior.copy()
        return changed


class ReferencePlanner(Oracle):
    """A planner that does not read: the oracle's subgoals and search, planned with a belief.

    It knows the layout (grid, objects, which cell has which colour), the instruction and its own
    moves; it never sees the episode's colour -> properties mapping, nor the description. For every
    subgoal it picks the set of colours to walk on with the least posterior risk of holding a trap
    (the empty set first: a tile-free path always wins when it exists and the planner is unsure of
    every colour), the shortest plan among equally risky sets, and plans with each allowed colour's
    most likely non-trap properties. It replans whenever a move surprises it, after updating its
    belief.

    * ``memoriser`` (``prior="Train"``): a perfect memoriser of the Train split. On held-out pairs it
      walks onto the colour Train never made a trap.
    * ``cautious`` (``prior="uniform"``): every mapping equally likely, so every colour is equally
      risky: it avoids tiles when it can, else crosses as few colours as it can.
    """

    def __init__(self, env: Any, prior: str = "Train"):
        super().__init__(env)
        base = env.unwrapped
        self.belief = MappingBelief(base.difficulty, base.properties_per_colour, prior)
        self._last: tuple[tuple[tuple[int, int], int, int], int] | None = None
        self._current_belief: PropsAt | None = None  # the tile properties the current plan assumed

    def reset(self) -> None:
        super().reset()
        self.belief.reset()
        self._last = None

    def _colour_at(self, x: int, y: int) -> str | None:
        idx = int(self.base.floor[x, y])
        return None if idx < 0 else IDX_TO_COLOR[idx]

    def act(self) -> int:
        env = self.base
        here = (int(env.agent_pos[0]), int(env.agent_pos[1]))
        if self._last is not None:
            before, action = self._last
            if self.belief.observe(before, action, (here, int(env.agent_dir)), self._colour_at, env.can_enter):
                self._abandon_plan()  # what it believed has changed: plan again
        action = super().act()
        self._last = ((here, int(env.agent_dir), int(env.steps_in_cell)), action)
        return action

    def _believed(self, allowed: Sequence[str]) -> PropsAt:
        """Tile properties to plan with when walking only on ``allowed`` colours."""
        by_idx: dict[int, frozenset[str]] = {COLOR_TO_IDX[c]: frozenset({"trap"}) for c in self.belief.colours}
        for c in allowed:
            by_idx[COLOR_TO_IDX[c]] = self.belief.likely_properties(c)
        floor = self.base.floor
        plain: frozenset[str] = frozenset()

        def props_at(x: int, y: int) -> frozenset[str]:
            idx = int(floor[x, y])
            return plain if idx < 0 else by_idx.get(idx, plain)

        return props_at

    def _state(self) -> State:
        env = self.base
        x, y = (int(v) for v in env.agent_pos)
        props_at = self._current_belief or self._believed(())
        magic = env.steps_in_cell if "magic" in props_at(x, y) else 0
        return normalise_state(props_at, x, y, int(env.agent_dir), env.steps_in_cell, magic)

    def _plan_actions(self, targets: set[tuple[int, int]]) -> list[tuple[int, State | None]]:
        env = self.base
        here = (int(env.agent_pos[0]), int(env.agent_pos[1]))
        standing = self._colour_at(*here)
        colours = self.belief.colours
        # The tile it stands on is walked on whatever it chooses (it survived entering it).
        subsets = {
            tuple(c for c in colours if c in chosen or c == standing)
            for k in range(len(colours) + 1)
            for chosen in itertools.combinations(colours, k)
        }
        risks = {s: round(self.belief.trap_risk(s), 6) for s in subsets}  # equal up to the outside prior
        ranked = sorted(subsets, key=lambda s: (risks[s], len(s), s))
        best: tuple[list[tuple[int, State | None]], PropsAt] | None = None
        best_risk = None
        for allowed in ranked:
            risk = risks[allowed]
            if best_risk is not None and risk > best_risk:
                break
            props_at = self._believed(allowed)
            magic = env.steps_in_cell if "magic" in props_at(*here) else 0
            try:
                plan = plan_to_face(env, targets, props_at=props_at, magic_count=magic)
            except NoPlanError:
                continue
            if best is None or len(plan) < len(best[0]):
                best, best_risk = (plan, props_at), risk
        if best is None:
            raise NoPlanError(f"no path to face any of {sorted(targets)} under any choice of colours")
        self._current_belief = best[1]
        return best[0]


class ColourBlindPlanner(ReferencePlanner):
    """Walks the shortest path as if every tile were plain floor, taking a tile-free path when it
    is as short: the policy that ignores colours altogether (a floor layout on which it succeeds
    does not ask anyone to read)."""

    def _plan_actions(self, targets: set[tuple[int, int]]) -> list[tuple[int, State | None]]:
        env = self.base
        plain: frozenset[str] = frozenset()
        blind: PropsAt = lambda x, y: plain  # noqa: E731
        floor = env.floor
        tiles_blocked: PropsAt = lambda x, y: frozenset({"trap"}) if floor[x, y] >= 0 else plain  # noqa: E731
        shortest = plan_to_face(env, targets, props_at=blind, magic_count=0)
        here = (int(env.agent_pos[0]), int(env.agent_pos[1]))
        if floor[here] < 0:
            try:
                tile_free = plan_to_face(env, targets, props_at=tiles_blocked, magic_count=0)
                if len(tile_free) <= len(shortest):
                    shortest = tile_free
            except NoPlanError:
                pass
        self._current_belief = blind
        return shortest


#: Every planner by name: the oracle reads the mapping; the others never do.
PLANNERS: tuple[str, ...] = ("oracle", *REFERENCE_PRIORS, "walker")


def make_reference_planner(name: str, env: Any) -> Oracle:
    """``oracle`` (reads the mapping), ``memoriser``, ``cautious`` or ``walker`` (never read it) for ``env``."""
    check_choice("planner", name, PLANNERS)
    if name == "oracle":
        return Oracle(env)
    if name == "walker":
        return ColourBlindPlanner(env, prior="uniform")
    return ReferencePlanner(env, prior=REFERENCE_PRIORS[name])
