"""Fresh BabyAI++ episodes drawn on the batched engine's device, from a pool of minigrid layouts.

minigrid's generator (walls, doors, objects, agent start, instruction) runs once, on the CPU, for
the engine's pool seeds. Everything BabyAI++ adds to a level is then drawn on the device with the
engine's ``torch.Generator``, for thousands of levels at once: the colour -> property mapping
(uniform over the split's admissible mappings, as :func:`babyaipp.envs.dynamics.sample_mapping`),
the floor under the placement rules of the env's layout (sparse: :mod:`babyaipp.envs.device_floor`,
dense: :mod:`babyaipp.envs.device_dense`), the solvability check (traps never cut the agent off
from what it must reach; the full physics search where a colour is flipud and magic, and on the
dense floor also where a colour is magic and the instruction names several objects) with the
single env's bounded retries and (dense) its redraw of levels whose instruction can be done
without reading (on plain floor, or with three colours on plain floor and one colour), and the
description tokens in the text mode of the env. Levels are drawn a stock at a time and each
is played once.

``BatchedBabyAIPP(..., device_levels=True)`` uses it for every reset and auto-reset. Any drawn
level can be exported as a :class:`~babyaipp.envs.level.Level` (:meth:`DeviceLevels.level`) and
replays exactly in the single env.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from minigrid.core.constants import COLOR_TO_IDX

from babyaipp.envs import dynamics as dyn
from babyaipp.envs.batched_state import FLOOR_FIELD, FLOOR_SHIFT, PAD
from babyaipp.envs.device_dense import dense_layout_masks, faces_all_round_trip, place_dense
from babyaipp.envs.device_floor import PLAIN, faces_all, layout_masks, place_sparse, reachable_targets
from babyaipp.envs.level import Level
from babyaipp.envs.properties import PROPERTY_BIT, property_mask
from babyaipp.envs.text import LOREM_WORDS, decode, sentence, tokenize
from babyaipp.envs.wrappers import MAX_SENTENCES, SENTENCE_LENGTH
from babyaipp.errors import BabyAIPPError, ConfigError

#: The single env's bounds: placements tried per level, then levels (layout and mapping) per row.
PLACEMENT_TRIES = 50
LEVEL_TRIES = 100
#: Dense floor: levels a row may redraw because the instruction can be done without reading.
DENSE_REDRAWS = 50
#: Levels drawn at once when the stock runs out, at least (twice the batch if larger): the draw's
#: cost is mostly a loop over cells, the same for 1 or 4096 levels, so it pays to draw many.
DEFAULT_STOCK = 1024
#: Placements a redraw round makes at least: the few levels left pending try several at once.
TAIL_ROWS = 32
#: Levels drawn in one pass of the tensor code (a larger stock is drawn in several).
DRAW_CHUNK = 16384
#: Levels whose physics search (a colour both flipud and magic) runs at once.
PHYSICS_CHUNK = 2048


@dataclass
class MappingTable:
    """The admissible mappings of one (difficulty, split, properties per colour), as tensors.

    Row ``k`` is ``split_mappings(...)[k]``; ``colours`` are the colour indices in mapping order.
    """

    mappings: tuple
    colours: tuple[int, ...]
    props: torch.Tensor  # (K, 8) property bits per colour index, as the engine's ``props``
    coverage: torch.Tensor  # (K, C) float64 fraction of the free floor each colour covers
    sparse: torch.Tensor  # (K, C) the colour keeps the sparse neighbour rule
    held_out: torch.Tensor  # (K,) held-out pairs in the mapping
    flip_magic: torch.Tensor  # (K,) some colour is flipud and magic (the physics search decides)
    magic: torch.Tensor  # (K,) some colour is magic (dense, several objects to reach: the search decides)
    sentences: torch.Tensor  # (K, C, SENTENCE_LENGTH) token ids of each colour's sentence
    n_props: torch.Tensor  # (K, C) properties per colour (the lorem sentences' shape)


def mapping_table(difficulty: str, split: str, properties_per_colour: int, device: torch.device) -> MappingTable:
    """Tables of every mapping a split draws from, built from the same lists the single env uses."""
    mappings = dyn.split_mappings(difficulty, split, properties_per_colour)
    colour_names = dyn.DIFFICULTY_COLOURS[difficulty]
    props = np.zeros((len(mappings), 8), dtype=np.int64)
    cover = np.zeros((len(mappings), len(colour_names)), dtype=np.float64)
    sparse = np.zeros(cover.shape, dtype=bool)
    n_props = np.zeros(cover.shape, dtype=np.int64)
    sentences = np.zeros((*cover.shape, SENTENCE_LENGTH), dtype=np.int64)
    for k, mapping in enumerate(mappings):
        for c, (colour, names) in enumerate(mapping):
            if colour != colour_names[c]:
                raise ConfigError(f"mapping colours {[m[0] for m in mapping]} are not in the order {colour_names}")
            props[k, COLOR_TO_IDX[colour]] = property_mask(names)
            cover[k, c] = dyn.coverage(names)
            sparse[k, c] = bool(dyn.SPARSE_PROPERTIES.intersection(names))
            n_props[k, c] = len(names)
            sentences[k, c] = tokenize(sentence(colour, names), SENTENCE_LENGTH)
    held = [len(dyn.held_out_pairs_in(dict(m), difficulty)) for m in mappings]
    flip_magic = [any("flipud" in p and "magic" in p for _, p in m) for m in mappings]
    magic = [any("magic" in p for _, p in m) for m in mappings]
    return MappingTable(
        mappings=mappings,
        colours=tuple(COLOR_TO_IDX[c] for c in colour_names),
        props=torch.as_tensor(props, device=device),
        coverage=torch.as_tensor(cover, device=device),
        sparse=torch.as_tensor(sparse, device=device),
        held_out=torch.as_tensor(held, dtype=torch.long, device=device),
        flip_magic=torch.as_tensor(flip_magic, dtype=torch.bool, device=device),
        magic=torch.as_tensor(magic, dtype=torch.bool, device=device),
        sentences=torch.as_tensor(sentences, device=device),
        n_props=torch.as_tensor(n_props, device=device),
    )


def _word_ids(*words: str) -> list[int]:
    return tokenize(" ".join(words), len(words)).tolist()


class DeviceLevels:
    """Draws levels for a :class:`~babyaipp.envs.batched.BatchedBabyAIPP` on its device; see the module docstring.

    ``engine`` gives the device, the generator, the geometry and the single env (its difficulty,
    split, properties per colour and text mode). :meth:`start` takes the engine's encoded pool as
    the layouts; :meth:`take` hands out fresh levels in order, drawing a new stock of
    ``stock_size`` levels (default: the larger of :data:`DEFAULT_STOCK` and twice the batch; set
    it before the engine's ``reset``) whenever the current one runs out.
    """

    def __init__(self, engine: Any, stock_size: int | None = None):
        base = engine.single.unwrapped
        self.dense = base.floor_layout == "dense"
        if engine.refresh:
            raise ConfigError("device_levels and refresh=True both renew levels; choose one")
        self.engine = engine
        self.device = engine.device
        self.hp = engine.geometry.padded_height
        self.difficulty, self.text_mode = base.difficulty, base.text_mode
        self.table = mapping_table(base.difficulty, base.split, base.properties_per_colour, self.device)
        self.stock_size = max(int(stock_size or max(2 * engine.num_envs, DEFAULT_STOCK)), engine.num_envs)
        self.layouts: dict[str, torch.Tensor] = {}
        self.stock: dict[str, torch.Tensor] = {}
        self.stock_layout = torch.zeros(0, dtype=torch.long, device=self.device)
        self.stock_mapping = torch.zeros(0, dtype=torch.long, device=self.device)
        self.cursor = 0
        self.levels_drawn = 0
        self.redraws = 0  # levels whose placement was redrawn (solvability or no room)
        # Dense placement works on colour slots (mapping order); this turns them into colour indices.
        self._slot_colour = torch.full((PLAIN + 1,), PLAIN, dtype=torch.long, device=self.device)
        self._slot_colour[: len(self.table.colours)] = torch.tensor(self.table.colours, device=self.device)
        words = _word_ids("floors", "are", "and", *LOREM_WORDS)
        self._floors, self._are, self._and = words[:3]
        self._lorem = torch.tensor(words[3:], device=self.device)

    # ----------------------------------------------------------------- layouts
    def start(self, pool: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Use the encoded levels of ``pool`` as layouts (their floors dropped); return a fresh stock.

        The first ``num_envs`` rows of the stock are the batch's first episodes.
        """
        layouts = dict(pool)
        layouts["cells"] = pool["cells"] | FLOOR_FIELD  # every cell plain
        self._use_layouts(layouts, pool["level_seed"].clone())
        self.stock = {}
        self._refill()
        self.cursor = self.engine.num_envs
        return self.stock

    def _use_layouts(self, layouts: dict[str, torch.Tensor], seeds: torch.Tensor) -> None:
        """Take ``layouts`` (floors plain) and the masks every draw reads from them."""
        masks = layout_masks(layouts["cells"], layouts["agent_pos"], self.hp)
        self.layout_seeds = seeds
        self.masks = masks
        self.n_free = masks["free"].sum(1)
        self.plain_targets = reachable_targets(masks, layouts["agent_pos"], self.hp)
        if self.dense:  # routes go to what the instruction needs, not to every object
            pickups_plain = "magic" in dyn.DIFFICULTY_PROPERTIES[self.difficulty]
            self.masks.update(dense_layout_masks(layouts, masks, self.hp, pickups_plain))
        self.layouts = layouts

    # ----------------------------------------------------------------- snapshots (exact resume)
    def snapshot(self) -> dict[str, Any]:
        """What the next draws depend on besides the stock (the engine's pool) and the generator
        (the engine's), as tensors and ints; the masks follow from the layouts."""
        return {
            "layouts": {k: v.cpu().clone() for k, v in self.layouts.items()},
            "layout_seeds": self.layout_seeds.cpu().clone(),
            "stock_layout": self.stock_layout.cpu().clone(),
            "stock_mapping": self.stock_mapping.cpu().clone(),
            "cursor": int(self.cursor),
            "levels_drawn": int(self.levels_drawn),
            "redraws": int(self.redraws),
        }

    def restore(self, snapshot: dict[str, Any], stock: dict[str, torch.Tensor]) -> None:
        """Put the draws back where :meth:`snapshot` found them; ``stock`` is the engine's restored
        pool (refilled in place from now on)."""
        dev = self.device
        self._use_layouts({k: v.to(dev) for k, v in snapshot["layouts"].items()}, snapshot["layout_seeds"].to(dev))
        self.stock = stock
        self.stock_size = int(stock["cells"].shape[0])
        self.stock_layout = snapshot["stock_layout"].to(dev)
        self.stock_mapping = snapshot["stock_mapping"].to(dev)
        self.cursor, self.levels_drawn, self.redraws = (int(snapshot[k]) for k in ("cursor", "levels_drawn", "redraws"))

    def _refill(self) -> None:
        """Replace the stock by ``stock_size`` fresh levels (in place: the engine holds the dict)."""
        rows, layout, mapping = self.draw(self.stock_size)
        self.stock.clear()
        self.stock.update(rows)
        self.stock_layout, self.stock_mapping = layout, mapping
        self.cursor = 0

    def take(self, mask: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Stock rows for the slots of ``mask``: ``(stock, pick)``, ``pick[i]`` the row of slot ``i``.

        Each level is handed out once. The number of slots is read on the host (one sync per
        call) so that a new stock is drawn exactly when the current one runs out.
        """
        count = int(mask.sum())
        if self.cursor + count > self.stock_size:
            self._refill()
        pick = self.cursor + torch.cumsum(mask.long(), 0) - 1
        self.cursor += count
        return self.stock, pick.clamp(0, self.stock_size - 1)

    # ----------------------------------------------------------------- drawing
    def draw(self, count: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """``count`` fresh levels as engine rows, with the layout and mapping index of each."""
        if count > DRAW_CHUNK:  # bounds the memory of the per-cell work
            parts = [self.draw(min(DRAW_CHUNK, count - i)) for i in range(0, count, DRAW_CHUNK)]
            rows = {key: torch.cat([part[0][key] for part in parts]) for key in parts[0][0]}
            return rows, torch.cat([part[1] for part in parts]), torch.cat([part[2] for part in parts])
        generator, table = self.engine.generator, self.table
        n_layouts, n_mappings = len(self.layout_seeds), len(table.mappings)
        dev = self.device

        def new_levels(size: int) -> tuple[torch.Tensor, torch.Tensor]:
            return (
                torch.randint(n_layouts, (size,), generator=generator, device=dev),
                torch.randint(n_mappings, (size,), generator=generator, device=dev),
            )

        layout, mapping = new_levels(count)
        floor = torch.full((count, self.layouts["cells"].shape[1]), PLAIN, dtype=torch.long, device=dev)
        tries = torch.zeros(count, dtype=torch.long, device=dev)
        levels_tried = torch.zeros(count, dtype=torch.long, device=dev)
        dense_redraws = torch.zeros(count, dtype=torch.long, device=dev)
        pending = torch.arange(count, device=dev)
        while pending.numel():
            # Few pending levels (those left after the first round) try several placements each at
            # once: the first try that ends the level's turn counts, with the tries before it, as
            # tries in turn would; so the rounds' fixed cost is not paid once per try.
            copies = max(1, min(-(-TAIL_ROWS // pending.numel()), PLACEMENT_TRIES))
            n, tried = pending.numel(), pending.repeat_interleave(copies)
            lay, mp = layout[tried], mapping[tried]
            may_redraw = dense_redraws[tried] < DENSE_REDRAWS
            placed, ok, tile_free = self._place(lay, mp, may_redraw)
            # Dense: a level whose instruction can be done without reading draws another level (50
            # times per level).
            tile_free &= may_redraw
            good = ok & ~tile_free & self._solvable(placed, lay, mp)
            try_number = tries[tried] + 1 + torch.arange(copies, device=dev).repeat(n)
            ends = (good | ~ok | tile_free | (try_number >= PLACEMENT_TRIES)).view(n, copies)
            first = torch.where(ends.any(1), ends.long().argmax(1), copies - 1)  # the try that counts
            pick = torch.arange(n, device=dev) * copies + first
            good, ok, tile_free = good[pick], ok[pick], tile_free[pick]
            floor[pending[good]] = placed[pick[good]]
            tries[pending] += first + 1
            dense_redraws[pending[tile_free & ok]] += 1
            # No room for a colour, or every placement tried walls off a target: a new level.
            again = ~good & ends.any(1)
            renew = pending[again]
            if renew.numel():
                levels_tried[pending[again & ~(tile_free & ok)]] += 1
                if bool((levels_tried[renew] >= LEVEL_TRIES).any()):
                    raise BabyAIPPError(
                        f"could not place the floor tiles in {LEVEL_TRIES} levels drawn from the layouts; "
                        "the rooms are too small for tiles away from the start and the doors"
                    )
                layout[renew], mapping[renew] = new_levels(renew.numel())
                tries[renew] = 0
            self.redraws += int(first.sum() + (~good).sum())
            pending = pending[~good]
        self.levels_drawn += count
        return self._rows(layout, mapping, floor), layout, mapping

    def _place(
        self, layout: torch.Tensor, mapping: torch.Tensor, may_redraw: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A floor (colour index or PLAIN per cell) for each level, whether it was placed, and
        (dense) whether the instruction can be done without reading (``_doable_without_reading``):
        on plain floor or, with three colours, on plain floor and one colour. A three-colour level
        one tile away (``one_tile``) that ``may_redraw`` is not placed: every layout would do."""
        table, masks = self.table, self.masks
        if not self.dense:
            floor, ok = place_sparse(
                self.engine.generator,
                masks["candidate"][layout],
                self.n_free[layout],
                table.colours,
                table.coverage[mapping],
                table.sparse[mapping],
                self.hp,
            )
            return floor, ok, torch.zeros_like(ok)
        k = len(table.colours)
        pairs = k >= 3
        rows, width = len(layout), self.layouts["cells"].shape[1]
        floor = torch.full((rows, width), PLAIN, dtype=torch.long, device=self.device)
        ok = torch.ones(rows, dtype=torch.bool, device=self.device)
        tile_free = torch.ones(rows, dtype=torch.bool, device=self.device)
        one_tile = masks["one_tile"][layout] & pairs
        todo = (~(one_tile & may_redraw)).nonzero().squeeze(1)
        lay = layout[todo]
        start = self.layouts["agent_pos"][lay]
        groups = None
        if pairs:  # a level one tile away takes its first layout (the single env's, when it may not redraw)
            groups = masks["pair_groups"][lay] & ~one_tile[todo].view(-1, 1, 1)
        slots, ok[todo] = place_dense(
            self.engine.generator,
            masks["candidate4"][lay],
            masks["route_walkable"][lay],
            masks["needed"][lay],
            start,
            k,
            self.hp,
            groups,
        )
        floor[todo] = self._slot_colour[slots]
        tile_free[todo] = self.doable_without_reading(floor[todo], lay)
        return floor, ok, tile_free

    def doable_without_reading(self, floor: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
        """Per dense level (``floor``: colour index or PLAIN per cell), whether an object of every
        object description of the instruction lies next to a cell reached on plain floor or, with
        three colours, on plain floor and the cells of one colour (``_doable_without_reading``)."""
        colours = self.table.colours
        tiled = floor != PLAIN
        blocked = [tiled] + ([tiled & (floor != c) for c in colours] if len(colours) >= 3 else [])
        count, rows = len(blocked), len(layout)
        masks = {key: self.masks[key][layout].repeat_interleave(count, 0) for key in ("walkable", "target")}
        start = self.layouts["agent_pos"][layout].repeat_interleave(count)
        reached = reachable_targets(masks, start, self.hp, blocked=torch.stack(blocked, 1).flatten(0, 1))
        reached = reached.view(rows, count, -1)
        groups, valid = self.masks["groups"][layout], self.masks["group_valid"][layout]
        doable = torch.zeros(rows, dtype=torch.bool, device=self.device)
        for v in range(count):
            doable |= ((groups & reached[:, v].unsqueeze(1)).any(2) | ~valid).all(1)
        return doable

    def _solvable(self, floor: torch.Tensor, layout: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
        """Whether every target reachable on plain floor (dense: every needed object) stays reachable
        (with a flipud+magic colour: faceable, and on the dense floor a round trip, which a dense
        level whose instruction has several groups also needs with any magic colour)."""
        props_here = self.table.props[mapping].gather(1, floor)
        masks = {k: self.masks[k][layout] for k in ("walkable", "target")}
        start = self.layouts["agent_pos"][layout]
        wanted = self.masks["needed"][layout] if self.dense else self.plain_targets[layout]
        search = faces_all_round_trip if self.dense else faces_all
        traps = (props_here & PROPERTY_BIT["trap"]) > 0
        found = reachable_targets(masks, start, self.hp, blocked=traps)
        ok = ~(wanted & ~found).any(1)
        searched = self.table.flip_magic[mapping]
        if self.dense:  # several objects to reach: a magic push may strand the agent in a pocket
            searched = searched | (self.table.magic[mapping] & self.masks["several_groups"][layout])
        physics = (ok & searched).nonzero().squeeze(1)
        for chunk in physics.split(PHYSICS_CHUNK):  # bounds the search's memory (~100 bytes per state and row)
            ok[chunk] = search(
                props_here[chunk],
                masks["walkable"][chunk],
                start[chunk],
                self.layouts["agent_dir"][layout[chunk]],
                wanted[chunk],
                self.hp,
            )
        return ok

    def _rows(self, layout: torch.Tensor, mapping: torch.Tensor, floor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Engine rows: the layouts' fields, with the drawn floor, properties and description."""
        rows = {k: v[layout] for k, v in self.layouts.items()}
        rows["cells"] = (rows["cells"] & ~FLOOR_FIELD) | (floor << FLOOR_SHIFT)
        rows["props"] = self.table.props[mapping]
        rows["held_out"] = self.table.held_out[mapping]
        rows["level_seed"] = torch.full_like(rows["level_seed"], -1)  # no seed replays a device level
        rows["description"] = self._description(mapping)
        width = self.engine.num_objects
        if rows["obj_pos"].shape[1] < width:  # the engine widened its object axis since
            extra = width - rows["obj_pos"].shape[1]
            rows["obj_pos"] = torch.nn.functional.pad(rows["obj_pos"], (0, extra), value=-1)
            for key in ("track_a", "track_b"):
                rows[key] = torch.nn.functional.pad(rows[key], (0, extra), value=False)
        return rows

    def _description(self, mapping: torch.Tensor) -> torch.Tensor:
        """Description tokens in the env's text mode (``text.describe``'s order and subset rules)."""
        count, colours = len(mapping), len(self.table.colours)
        generator, dev = self.engine.generator, self.device
        out = torch.zeros(count, MAX_SENTENCES, SENTENCE_LENGTH, dtype=torch.long, device=dev)
        if self.text_mode == "none":
            return out
        order = torch.rand(count, colours, generator=generator, device=dev).argsort(1)  # a uniform permutation
        keep = torch.full((count,), colours, device=dev)
        if self.text_mode == "partial":
            keep = torch.randint(1, colours + 1, (count,), generator=generator, device=dev)
        if self.text_mode == "lorem":
            n_props = self.table.n_props[mapping].gather(1, order)
            words = self._lorem[torch.randint(len(LOREM_WORDS), (count, colours, 3), generator=generator, device=dev)]
            sent = torch.zeros(count, colours, SENTENCE_LENGTH, dtype=torch.long, device=dev)
            sent[..., 0], sent[..., 3] = words[..., 0], words[..., 1]  # "<w0> floors are <w1> [and <w2>]"
            sent[..., 1], sent[..., 2] = self._floors, self._are
            two = n_props >= 2
            sent[..., 4] = torch.where(two, self._and, 0)
            sent[..., 5] = torch.where(two, words[..., 2], 0)
        else:
            sent = self.table.sentences[mapping].gather(1, order.unsqueeze(2).expand(-1, -1, SENTENCE_LENGTH))
        shown = torch.arange(colours, device=dev).unsqueeze(0) < keep.unsqueeze(1)
        out[:, :colours] = torch.where(shown.unsqueeze(2), sent, 0)
        return out

    # ----------------------------------------------------------------- export
    def level(self, row: int) -> Level:
        """Stock row ``row`` (e.g. ``engine.last_pick[i]`` of a restarted slot) as a ``Level``.

        The layout is regenerated by the single env from its seed; floor, mapping and description
        are the drawn ones, so ``env.reset(options={"level": level})`` replays the episode exactly.
        """
        if not 0 <= row < len(self.stock_layout):
            raise ConfigError(f"stock row {row} out of range 0..{len(self.stock_layout) - 1}")
        single = self.engine.single
        single.reset(seed=int(self.layout_seeds[self.stock_layout[row]]))
        level = Level.from_env(single)
        geometry = self.engine.geometry
        cells = self.stock["cells"][row].view(geometry.width + 2 * PAD, self.hp).cpu().numpy()
        floor = (cells[PAD : PAD + geometry.width, PAD : PAD + geometry.height] >> FLOOR_SHIFT) & 7
        level.floor = np.where(floor == PLAIN, -1, floor).astype(np.int8)
        level.dynamics = {c: tuple(p) for c, p in self.table.mappings[int(self.stock_mapping[row])]}
        tokens = self.stock["description"][row].cpu().numpy()
        level.description = " ".join(decode(sent) + "." for sent in tokens if sent.any())
        return level
