"""``BabyAIPPMixin``: the BabyAI++ layer (floor dynamics + description) over a minigrid BabyAI level.

A task class is ``class GoToRedBallPP(BabyAIPPMixin, GoToRedBall)``: minigrid's level generator
builds rooms, objects and the instruction; the mixin then draws the episode's colour -> property
mapping, paints the floor layer, writes the description, and replaces ``step`` with one that
applies the tile physics (:mod:`babyaipp.envs.physics`) before BabyAI's instruction verifier.
"""

from __future__ import annotations

import copy
import string
from types import MappingProxyType
from typing import Any

import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_TO_IDX, IDX_TO_COLOR
from minigrid.core.grid import Grid
from minigrid.core.roomgrid import Room, RoomGrid
from minigrid.core.world_object import WorldObj
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling

from babyaipp.defaults import DEFAULT_TEXT
from babyaipp.envs import dynamics as dyn
from babyaipp.envs.fast_generation import FastGeneration
from babyaipp.envs.instructions import descriptions, leaves_in_order, node_kind
from babyaipp.envs.level import instr_from_dict
from babyaipp.envs.oracle import faceable_cells, round_trip_cells
from babyaipp.envs.physics import ACTION_NAMES, DROP, PICKUP, TOGGLE, resolve_motion
from babyaipp.envs.text import TEXT_MODES, describe
from babyaipp.envs.tiles import (
    EMPTY_IDX,
    FLOOR_IDX,
    FLOORS,
    NO_TILE,
    ONE_TILE_LEVEL,
    PlacementError,
    place_dense_tiles,
    place_tiles,
    reachable_targets,
    stacked_grid,
    tiles_of,
    traps_cut_off_targets,
)
from babyaipp.envs.validation import GenerationBudget, check_level, validate_env_keywords
from babyaipp.envs.view import egocentric_image, egocentric_offsets
from babyaipp.errors import BabyAIPPError, ConfigError, InvalidChoiceError, check_choice

DESCRIPTION_MAX_CHARS = 256
_NO_PROPS: frozenset[str] = frozenset()
_PLACEMENT_TRIES = 50
_LEVEL_TRIES = 100
#: Levels a dense reset may redraw because the instruction could be done without reading (on plain
#: floor; on Hard, on plain floor and one colour); after that it keeps the level (in rooms too
#: cramped for tiles between start and target).
DENSE_REDRAWS = 50
TILE_FREE_REDRAW = "the instruction can be done without reading"


class BabyAIPPMixin(FastGeneration):
    """Adds per-episode floor dynamics and their description to a minigrid ``RoomGridLevel``.

    Keyword arguments (all also accepted by ``gym.make``):

    * ``difficulty``: ``"Easy"`` or ``"Hard"`` (properties, colours and held-out pairs in play).
    * ``split``: ``"Train"`` (no held-out pair), ``"Test"`` (any), ``"TargetPairOnly"`` (at least one).
    * ``text``: description mode, one of ``full``, ``partial``, ``lorem``, ``none``.
    * ``properties_per_colour``: 1 or 2 for Hard (default 2); Easy always uses 1.
    * ``floor``: tile layout, ``"sparse"`` (the paper's densities, default) or ``"dense"`` (almost
      every free cell tiled, so reaching a target means reading which colour is safe).
    * any keyword of the underlying minigrid level (``room_size``, ``num_dists``, ``max_steps``,
      ``render_mode``, ...).
    """

    def __init__(
        self,
        *,
        difficulty: str = "Easy",
        split: str = "Train",
        text: str = DEFAULT_TEXT,
        properties_per_colour: int | None = None,
        floor: str = "sparse",
        **kwargs: Any,
    ):
        self.floor_layout = check_choice("floor", floor, FLOORS)
        validate_env_keywords({**kwargs, "properties_per_colour": properties_per_colour})
        check_choice("text mode", text, TEXT_MODES)
        ppc = dyn.DEFAULT_PROPERTIES_PER_COLOUR[check_choice("difficulty", difficulty, dyn.DIFFICULTIES)]
        ppc = ppc if properties_per_colour is None else properties_per_colour
        dyn.validate(difficulty, split, ppc)
        self.difficulty, self.split, self.text_mode, self.properties_per_colour = difficulty, split, text, ppc
        self._dynamics: dict[str, tuple[str, ...]] = {}
        self._props_by_idx: list[frozenset[str]] = [_NO_PROPS] * len(IDX_TO_COLOR)
        self.floor = np.zeros((0, 0), dtype=np.int8)
        self._padded_floor = self.floor
        self.description = ""
        self.steps_in_cell = 0
        self.magic_count = 0
        super().__init__(**kwargs)
        self.observation_space = spaces.Dict(
            {
                **self.observation_space.spaces,
                "description": spaces.Text(
                    max_length=DESCRIPTION_MAX_CHARS, min_length=0, charset=string.ascii_lowercase + " ."
                ),
            }
        )

    # ----------------------------------------------------------------- public read-only state
    @property
    def dynamics(self) -> MappingProxyType:
        """The episode's colour -> property names (read-only)."""
        return MappingProxyType(self._dynamics)

    @property
    def held_out_pairs(self) -> list[tuple[str, str]]:
        """The held-out (colour, property) pairs on this episode's floor."""
        return dyn.held_out_pairs_in(self._dynamics, self.difficulty)

    def tile_at(self, x: int, y: int) -> str | None:
        """Colour of the dynamic tile at cell (x, y), or ``None`` for plain floor."""
        idx = int(self.floor[x, y])
        return None if idx == NO_TILE else IDX_TO_COLOR[idx]

    def properties_at(self, x: int, y: int) -> frozenset[str]:
        """Properties of the tile at (x, y) this episode (empty for plain floor)."""
        idx = int(self.floor[x, y])
        return _NO_PROPS if idx == NO_TILE else self._props_by_idx[idx]

    def can_enter(self, x: int, y: int) -> bool:
        cell = self.grid.get(x, y)
        return cell is None or cell.can_overlap()

    # ----------------------------------------------------------------- generation
    def _gen_grid(self, width: int, height: int) -> None:
        # RoomGridLevel._gen_grid without its prints ("Sampling rejected"), plus the floor layer.
        if getattr(self, "_pending_level", None) is not None:
            self._load_level(check_level(self._pending_level))
            return
        placement_failures = 0
        self._dense_redraws = 0
        budget = GenerationBudget(self)  # minigrid retries forever; infeasible settings must fail
        while True:
            try:
                with budget.attempt():
                    RoomGrid._gen_grid(self, width, height)
                    self.gen_mission()
                    self.validate_instrs(self.instrs)
                self._gen_dynamics()
            except (RecursionError, RejectSampling) as err:
                budget.failed(err)
                continue
            except PlacementError as err:
                if str(err) == TILE_FREE_REDRAW:
                    continue  # bounded by DENSE_REDRAWS
                placement_failures += 1
                if placement_failures >= _LEVEL_TRIES:
                    raise BabyAIPPError(
                        f"could not place the floor tiles in {_LEVEL_TRIES} generated levels ({err}); the rooms "
                        f"are too small (room_size={self.room_size}): tiles need free cells away from the "
                        "agent's start and the doors, use a larger room_size"
                    ) from None
                continue
            break
        self.surface = self.instrs.surface(self)
        self.mission = self.surface

    def _gen_dynamics(self) -> None:
        rng = self.np_random
        mapping = dyn.sample_mapping(rng, self.difficulty, self.split, self.properties_per_colour)
        trap_colours = [COLOR_TO_IDX[c] for c, props in mapping.items() if "trap" in props]
        start = tuple(int(v) for v in self.agent_pos)
        targets = reachable_targets(self.grid, start)  # objects and doors on the plain floor
        self._set_dynamics(mapping)
        if self.floor_layout == "dense":
            self._place_dense_floor(rng, start, targets)
        else:
            for _ in range(_PLACEMENT_TRIES):
                self._set_floor(place_tiles(rng, self.grid, start, mapping))
                if not traps_cut_off_targets(self.grid, start, self.floor, trap_colours, targets) and (
                    self._solvable_with_physics(targets)
                ):
                    break
            else:
                raise PlacementError("traps wall off the goal in every placement tried")
        self.description = describe(rng, mapping, self.text_mode)

    def _place_dense_floor(self, rng: np.random.Generator, start: tuple[int, int], targets: set) -> None:
        """Tile the floor densely around routes to what the instruction needs (see ``place_dense_tiles``).

        Routes go to the objects the instruction names (and the keys of locked doors), not to every
        object: routes of several colours sharing the way to a distractor would leave plain
        corridors, and distractors only stand in the way. The layout reads the colours in play,
        never the mapping. Solvability: the route avoiding the trap colour reaches every needed
        object by construction, which the trap-avoiding cell search confirms (enough, as
        ``_solvable_with_physics`` explains, unless a colour is flipud+magic); with a flipud+magic
        colour, or any magic colour where the instruction names several objects, the full physics
        search must bring the agent to every needed object and back.
        """
        locked = np.zeros((self.width, self.height), dtype=bool)
        for x, y in targets:
            cell = self.grid.get(x, y)
            locked[x, y] = cell.type == "door" and cell.is_locked
        # what the instruction needs and the agent reaches before it holds any key
        groups = self._instruction_groups()
        needed = set().union(*groups) & (reachable_targets(self.grid, start, locked) if locked.any() else targets)
        colours = dyn.DIFFICULTY_COLOURS[self.difficulty]
        trap_colours = [COLOR_TO_IDX[c] for c, props in self._dynamics.items() if "trap" in props]
        reachable_groups = [group & needed for group in groups if group & needed]
        kept_plain = self._pickup_cells() if "magic" in dyn.DIFFICULTY_PROPERTIES[self.difficulty] else set()
        for _ in range(_PLACEMENT_TRIES):
            may_redraw = self._dense_redraws < DENSE_REDRAWS
            try:
                floor = place_dense_tiles(
                    rng, self.grid, start, colours, needed, reachable_groups, may_redraw, kept_plain
                )
            except PlacementError as err:
                if str(err) != ONE_TILE_LEVEL:
                    raise
                self._dense_redraws += 1  # no layout can make this level need two colours
                raise PlacementError(TILE_FREE_REDRAW) from None
            self.floor = floor  # the checks read it; the padded view copy waits for the kept layout
            if self._dense_redraws < DENSE_REDRAWS and self._doable_without_reading(start, groups):
                # The instruction can be done without reading: draw another level (a choice
                # made on the layout alone, never on the mapping).
                self._dense_redraws += 1
                raise PlacementError(TILE_FREE_REDRAW)
            traps = tiles_of(self.floor, trap_colours)
            if needed <= reachable_targets(self.grid, start, traps) and self._solvable_with_physics(
                needed, round_trip=True, several_subgoals=len(groups) > 1
            ):
                self._set_floor(floor)
                return
        raise PlacementError("no dense layout left the needed objects reachable")

    def _instruction_groups(self) -> list[set[tuple[int, int]]]:
        """One set of cells per object description of the instruction (any one of them will do),
        plus one per locked door colour (its keys)."""
        groups = [self._matching_cells(desc) for leaf in leaves_in_order(self.instrs) for desc in descriptions(leaf)]
        return groups + self._locked_door_keys()

    def _matching_cells(self, desc: Any) -> set[tuple[int, int]]:
        """The cells of the objects an object description matches."""
        _, positions = copy.copy(desc).find_matching_objs(self)  # a copy: matching fills its object list
        return {(int(x), int(y)) for x, y in positions}

    def _locked_door_keys(self) -> list[set[tuple[int, int]]]:
        """The cells of the keys of each locked door colour (sorted by colour)."""
        locked = {c.color for c in self.grid.grid if c is not None and c.type == "door" and c.is_locked}
        width = self.grid.width
        return [
            {
                (i % width, i // width)
                for i, c in enumerate(self.grid.grid)
                if c is not None and c.type == "key" and c.color == colour
            }
            for colour in sorted(locked)
        ]

    def _pickup_cells(self) -> set[tuple[int, int]]:
        """Free cells next to an object the instruction makes the agent pick up (a pickup's object,
        a put-next's moved object, the keys of locked doors).

        A pickup is an action in place, and on a magic tile entered with a turn it is the second
        step there, which pushes the agent down, perhaps onto a trap; with the dense floor's
        scattered colours every cell facing the object can be such a tile. Kept plain (a rule on
        the layout, never the mapping), a pickup is always safe.
        """
        objects = set().union(
            *(
                self._matching_cells(descriptions(leaf)[0])  # a put-next's first description is the moved object
                for leaf in leaves_in_order(self.instrs)
                if node_kind(leaf) in ("pickup", "putnext")
            ),
            *self._locked_door_keys(),
        )
        return {
            (x + dx, y + dy)
            for x, y in objects
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))
            if self.grid.get(x + dx, y + dy) is None
        }

    def _doable_without_reading(self, start: tuple[int, int], groups: list[set[tuple[int, int]]]) -> bool:
        """Whether every object description of the instruction (``groups``) can be reached without
        reading: on plain floor alone or, with three colours (Hard), on plain floor and one colour."""
        plain = reachable_targets(self.grid, start, self.floor >= 0)
        if all(group & plain for group in groups):
            return True
        colours = dyn.DIFFICULTY_COLOURS[self.difficulty]
        if len(colours) < 3:
            return False
        # With three colours, plain cells plus any single colour must not do either: a
        # non-reader then has to guess a safe pair of colours.
        for colour in colours:
            idx = COLOR_TO_IDX[colour]
            one = reachable_targets(self.grid, start, (self.floor >= 0) & (self.floor != idx))
            if all(group & one for group in groups):
                return True
        return False

    def _set_dynamics(self, mapping: dict[str, tuple[str, ...]]) -> None:
        """Install an episode's colour -> properties mapping and restart the tile counters."""
        self._dynamics = mapping
        self._props_by_idx = [_NO_PROPS] * len(IDX_TO_COLOR)
        for colour, props in mapping.items():
            self._props_by_idx[COLOR_TO_IDX[colour]] = frozenset(props)
        self.steps_in_cell = 0
        self.magic_count = 0

    def _set_floor(self, floor: np.ndarray) -> None:
        """Install the floor layer (and its padded copy, which the view overlay gathers from)."""
        self.floor = floor
        self._padded_floor = np.pad(floor, self.agent_view_size, constant_values=NO_TILE)

    def _solvable_with_physics(
        self, targets: set[tuple[int, int]], round_trip: bool = False, several_subgoals: bool = False
    ) -> bool:
        """The full search over (cell, direction, counters), only where the cell search is not enough.

        Without magic the trap-avoiding cell search decides solvability (see
        :func:`~babyaipp.envs.tiles.traps_cut_off_targets`). A flipud+magic tile is different: going
        straight across it takes two turns on it, and the second is pushed down, so such a tile can
        act as a wall (over a trap, say). Then the oracle's physics search must face every object
        and door in ``targets`` (those reachable on the plain floor). ``round_trip``:
        where a colour is flipud+magic (pushes past it are one-way moves), every target must also
        let the agent come back to its start, so that tasks with several subgoals stay solvable.
        ``several_subgoals`` (dense floor, an instruction with more than one object to reach): any
        magic colour asks for the round trip, since on the dense floor's scattered colours a magic
        push (with slippery, say) can leave the agent in a pocket it faces one target from but
        cannot leave for the next (measured: 1 of 30 GoToSeqDense-Hard levels before this check).
        """
        flip_magic = any("flipud" in p and "magic" in p for p in self._dynamics.values())
        magic = any("magic" in p for p in self._dynamics.values())
        if round_trip and (flip_magic or (several_subgoals and magic)):
            return targets <= round_trip_cells(self)
        if not flip_magic:
            return True
        return targets <= faceable_cells(self)

    def _load_level(self, level: Any) -> None:
        """Set the grid, rooms, agent, instruction and floor layer from a ``Level`` (no RNG drawn)."""
        shape = (level.width, level.height, level.room_size, level.num_rows, level.num_cols)
        if shape != (self.width, self.height, self.room_size, self.num_rows, self.num_cols):
            raise ConfigError(
                f"level of size {shape[:2]} with {shape[3]}x{shape[4]} rooms of size {shape[2]} cannot be replayed "
                f"in an env of size {(self.width, self.height)} with {self.num_rows}x{self.num_cols} rooms "
                f"of size {self.room_size}"
            )
        self.grid, _ = Grid.decode(np.asarray(level.grid, dtype=np.uint8))
        for i in range(self.width):
            for j in range(self.height):
                cell = self.grid.get(i, j)
                if cell is not None:  # Grid.decode leaves positions unset; the verifier reads them
                    cell.init_pos = cell.cur_pos = (i, j)
        step = self.room_size - 1
        self.room_grid = [
            [Room((i * step, j * step), (self.room_size, self.room_size)) for i in range(self.num_cols)]
            for j in range(self.num_rows)
        ]
        for j, row in enumerate(self.room_grid):
            for i, room in enumerate(row):
                room.neighbors = [
                    self.room_grid[j][i + 1] if i + 1 < self.num_cols else None,
                    self.room_grid[j + 1][i] if j + 1 < self.num_rows else None,
                    self.room_grid[j][i - 1] if i > 0 else None,
                    self.room_grid[j - 1][i] if j > 0 else None,
                ]
        self.agent_pos, self.agent_dir = tuple(int(v) for v in level.agent_pos), int(level.agent_dir)
        self.instrs = instr_from_dict(level.instrs)
        self.surface = self.mission = level.mission
        self._set_floor(np.asarray(level.floor, dtype=np.int8).copy())
        self._set_dynamics({c: tuple(p) for c, p in level.dynamics.items()})
        self.description = level.description

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        # ``options={"level": Level}`` replays a captured start state instead of generating one
        # (babyaipp.envs.level); ``_gen_grid`` picks it up, then the verifier resets as usual.
        level = (options or {}).get("level")
        self._pending_level = level
        try:
            obs, info = super().reset(seed=seed, options=options)
        finally:
            self._pending_level = None
        if level is not None:
            self.max_steps, self.step_count = int(level.max_steps), level.step_count
            if level.carrying is not None:
                self.carrying = WorldObj.decode(*level.carrying)
                self.carrying.cur_pos = np.array([-1, -1])
                obs = self.gen_obs()
        info = dict(info)
        info["dynamics"] = dict(self._dynamics)
        info["held_out_pairs"] = self.held_out_pairs
        return obs, info

    # ----------------------------------------------------------------- dynamics
    def step(self, action: Any):
        try:
            index = int(action)
        except (TypeError, ValueError):
            raise InvalidChoiceError("action", action, _ACTION_CHOICES) from None
        if index != action or not 0 <= index < len(ACTION_NAMES):  # 2.5 is not action 2
            raise InvalidChoiceError("action", action, _ACTION_CHOICES)
        action = index
        self.step_count += 1
        reward, terminated, truncated = 0.0, False, False

        # Object actions first (fliplr only swaps turns, so they are unaffected), so that a magic
        # push sees the grid as the action left it.
        fwd_pos = tuple(int(v) for v in self.front_pos)
        fwd_cell = self.grid.get(*fwd_pos)
        if action == PICKUP:
            if fwd_cell is not None and fwd_cell.can_pickup() and self.carrying is None:
                self.carrying = fwd_cell
                self.carrying.cur_pos = np.array([-1, -1])
                self.grid.set(*fwd_pos, None)
        elif action == DROP:
            if fwd_cell is None and self.carrying is not None:
                self.grid.set(*fwd_pos, self.carrying)
                self.carrying.cur_pos = fwd_pos
                self.carrying = None
        elif action == TOGGLE and fwd_cell is not None:
            fwd_cell.toggle(self, fwd_pos)

        motion = resolve_motion(
            (int(self.agent_pos[0]), int(self.agent_pos[1])),
            int(self.agent_dir),
            action,
            self.steps_in_cell,
            self.magic_count,
            self.properties_at,
            self.can_enter,
        )
        if motion.half_step:
            self.step_count -= 0.5
        self.agent_pos, self.agent_dir = motion.pos, motion.dir
        self.steps_in_cell, self.magic_count = motion.steps_in_cell, motion.magic_count

        if action == DROP:
            self.update_objs_poss()
        if motion.entered_trap:
            terminated = True
        else:
            status = self.instrs.verify(motion.action)
            if status == "success":
                terminated, reward = True, self._reward()
            elif status == "failure":
                terminated = True
        if self.step_count >= self.max_steps:
            truncated = True
        if self.render_mode == "human":
            self.render()
        return self.gen_obs(), reward, terminated, truncated, {}

    # ----------------------------------------------------------------- observation
    def gen_obs(self) -> dict[str, Any]:
        # minigrid's observation (image, direction, mission), its image made without a sub-grid
        obs = {"image": egocentric_image(self), "direction": self.agent_dir, "mission": self.mission}
        self._overlay_floor(obs["image"])
        obs["description"] = self.description
        return obs

    def _overlay_floor(self, image: np.ndarray) -> None:
        """Show visible, empty tile cells as minigrid floor cells of their colour."""
        if not self._dynamics:
            return
        view = self.agent_view_size
        dx, dy = egocentric_offsets(view)
        x, y = int(self.agent_pos[0]) + view, int(self.agent_pos[1]) + view
        floor_view = self._padded_floor[x + dx[self.agent_dir], y + dy[self.agent_dir]]
        mask = (floor_view != NO_TILE) & (image[..., 0] == EMPTY_IDX)
        mask[view // 2, view - 1] = False  # the agent's own cell is never visible
        image[mask, 0] = FLOOR_IDX
        image[mask, 1] = floor_view[mask]
        image[mask, 2] = 0

    # ----------------------------------------------------------------- rendering
    def get_full_render(self, highlight: bool, tile_size: int) -> np.ndarray:
        return self._with_floor_grid(super().get_full_render, highlight, tile_size)

    def get_pov_render(self, tile_size: int) -> np.ndarray:
        return self._with_floor_grid(super().get_pov_render, tile_size)

    def _with_floor_grid(self, render, *args):
        grid = self.grid
        self.grid = stacked_grid(grid, self.floor) if self._dynamics else grid
        try:
            return render(*args)
        finally:
            self.grid = grid


_ACTION_CHOICES = [f"{i} ({name})" for i, name in enumerate(ACTION_NAMES)]
