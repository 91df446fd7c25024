"""The batched BabyAI++ engine: N episodes as torch tensors, stepped with tensor operations only.

``BatchedBabyAIPP(env_id, num_envs)`` keeps every episode's grid (one int32-style word per cell,
see :mod:`babyaipp.envs.batched_state`), floor properties, agent pose, carried object, counters,
verifier state and tokens on one device, and advances all N with a fixed sequence of gathers,
scatters and element-wise ops; no per-episode Python runs in :meth:`step`. Levels (layout,
floor, dynamics, mission, description) come from the single env's generator through a
:class:`LevelPool`, so both engines play the same levels, and any :class:`~babyaipp.envs.level.Level`
can be loaded with :meth:`load`. The result of a step is exactly the single env's, which
``tests/envs/test_batched.py`` checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from babyaipp.envs.batched_instr import refreshed_positions, verify
from babyaipp.envs.batched_obs import Observer
from babyaipp.envs.batched_state import (
    CODE_MASK,
    DOOR_CLOSED,
    DOOR_LOCKED,
    DOOR_OPEN,
    EMPTY_CODE,
    FLOOR_FIELD,
    FLOOR_SHIFT,
    ID_MASK,
    ID_SHIFT,
    STATE_SHIFT,
    T_BOX,
    T_DOOR,
    T_KEY,
    TYPE_BITS,
    Geometry,
    build_tables,
    encode_env,
    stack_encoded,
)
from babyaipp.envs.device_levels import DeviceLevels
from babyaipp.envs.level import Level
from babyaipp.envs.physics import DROP, PICKUP, TOGGLE, resolve_motion_tensors
from babyaipp.envs.pool import CHUNK, LevelGenerator, quiet_make
from babyaipp.envs.threads import use_engine_threads
from babyaipp.errors import check_int, check_range

#: Per-episode fields copied from a pool row at reset (the rest are counters reset to zero).
LEVEL_FIELDS = (
    "cells",
    "agent_pos",
    "agent_dir",
    "carried",
    "props",
    "max_steps",
    "obj_pos",
    "kind",
    "track_a",
    "track_b",
    "mission",
    "description",
    "held_out",
    "level_seed",
)
_COLOUR_FIELD = 7 << 4
#: Off the CPU, restarts are counted on the device and read by the host this often (for refresh).
REFRESH_SYNC_STEPS = 32


class LevelPool:
    """Encoded start states of many levels, stacked as tensors, that resets draw rows from.

    Row ``k`` is the single env reset with the ``k``-th pool seed (``seed + k`` by default), so the
    first episode of batch slot ``i`` is exactly ``gym.make(id).reset(seed=seed + i)``. Made by a
    :class:`~babyaipp.envs.pool.LevelGenerator` (in this process or in worker processes).
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.size = int(tensors["cells"].shape[0])


class BatchedBabyAIPP:
    """N BabyAI++ episodes of one env id on one device; see the module docstring.

    Observations are a dict of tensors: ``image`` (N, 7, 7, 3) uint8, ``direction`` (N,) int64,
    ``mission`` (N, 32) and ``description`` (N, 3, 8) int64 tokens, as ``TokenObsWrapper`` gives.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        device: str | torch.device = "cpu",
        pool_size: int | None = None,
        seed: int = 0,
        auto_reset: bool = True,
        workers: int = 0,
        refresh: bool = False,
        start_method: str = "forkserver",
        refresh_seed: int | None = None,
        compile: bool = False,
        device_levels: bool = False,
        **env_kwargs: Any,
    ):
        check_int("num_envs", num_envs, 1)
        if refresh and workers < 1:
            check_range("workers (needed by refresh=True)", workers, 1)
        self.env_id, self.num_envs, self.auto_reset = env_id, int(num_envs), auto_reset
        self.device = torch.device(device)
        self.single = quiet_make(env_id, **env_kwargs)
        base = self.single.unwrapped
        self.geometry = Geometry(base.width, base.height)
        self.hp = self.geometry.padded_height
        tables = build_tables()
        self.can_enter = torch.as_tensor(tables["can_enter"], device=self.device)
        self.pickable = torch.as_tensor(tables["pickable"], device=self.device)
        self.observer = Observer(self.hp, tables["see_behind"], tables["decode"], self.device)
        self.dir_delta = torch.tensor([self.hp, 1, -self.hp, -1], device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.pool_size = max(self.num_envs, pool_size or self.num_envs)
        self.num_objects = 0
        self.state: dict[str, torch.Tensor] = {}
        self.pool: LevelPool | None = None
        self._seed = seed
        self.last_pick = torch.full((self.num_envs,), -1, device=self.device)
        self.generator_procs = LevelGenerator(
            env_id, env_kwargs, self.geometry, workers=workers, start_method=start_method, single=self.single
        )
        self.refresh = refresh
        self.refresh_seed = refresh_seed
        self._pending: list[Future] = []  # chunks of fresh levels being made for the pool
        self._next_seed = 0  # next seed a refresh chunk starts at
        self._ring = 0  # next pool row a refreshed level replaces
        self._ended = 0  # episodes ended since the last chunk was swapped in
        self._ended_device = torch.zeros((), dtype=torch.long, device=self.device)
        self._calls_since_sync = 0
        self.levels_refreshed = 0
        # Reset by copying only the finished rows (one host check per step: the CPU default) or by a
        # torch.where over all rows (no host sync: other devices). Tests run both on CPU.
        self.copy_rows = self.device.type == "cpu"
        # The tensor work of a step, optionally fused by torch.compile (see docs/performance.md).
        self.compiled = bool(compile)
        self._advance_fn = torch.compile(self._advance_tensors) if compile else self._advance_tensors
        self._image_fn = torch.compile(self.observer.image) if compile else self.observer.image
        # device_levels: the pool's levels serve as layouts and every episode gets a floor, mapping and
        # description drawn on the device (babyaipp/envs/device_levels.py), each level played once.
        self.device_levels = None
        if device_levels:
            self.device_levels = DeviceLevels(self)
        use_engine_threads(self)  # one CPU thread per call unless the user set threads (babyaipp/envs/threads.py)

    # ----------------------------------------------------------------- levels
    def _stack(self, encoded: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        need = max(len(e["obj_pos"]) for e in encoded)
        if need > self.num_objects:
            self._grow_objects(need)
        arrays = stack_encoded(encoded, self.num_objects)
        return {
            k: torch.as_tensor(v.astype(np.int64) if v.dtype.kind in "iu" else v, device=self.device)
            for k, v in arrays.items()
        }

    def _grow_objects(self, count: int) -> None:
        """Widen the object axis (ids) of the state and pool to hold ``count`` ids."""
        count = max(count, 8 * ((count + 7) // 8))
        extra = count - self.num_objects
        self.num_objects = count
        for holder in (self.state, self.pool.tensors if self.pool else {}):
            for key in ("obj_pos", "snap"):
                if key in holder:
                    holder[key] = torch.nn.functional.pad(holder[key], (0, extra), value=-1)
            for key in ("track_a", "track_b"):
                if key in holder:
                    holder[key] = torch.nn.functional.pad(holder[key], (0, extra), value=False)

    def reset(self, seed: int | None = None, seeds: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Fill the pool and start slot i on pool row i.

        The pool holds the levels of ``seeds`` (``pool_size`` of them) or else of ``seed ..
        seed + pool_size - 1``; draws for later episodes come from a generator seeded with
        ``seed`` (or ``seeds[0]``). With ``refresh`` the workers then make the levels of the seeds
        after the pool's (or ``refresh_seed, refresh_seed + 1, ...``), which replace pool rows in
        turn as episodes end (see :meth:`poll_pool`).
        """
        if seeds is not None:
            seeds = [int(v) for v in seeds]
            check_range("len(seeds)", len(seeds), self.num_envs)
            self.pool_size, self._seed = len(seeds), seeds[0]
        else:
            if seed is not None:
                self._seed = int(seed)
            seeds = list(range(self._seed, self._seed + self.pool_size))
        self.generator.manual_seed(self._seed)
        for future in self._pending:
            future.cancel()
        self._pending, self._ring, self._ended, self._calls_since_sync = [], 0, 0, 0
        self._ended_device.zero_()
        self._next_seed = max(seeds) + 1 if self.refresh_seed is None else self.refresh_seed
        encoded = self.generator_procs.generate(seeds)
        self.num_objects, self.pool, self.state = 0, None, {}
        self.pool = LevelPool(self._stack(encoded))
        if self.device_levels is not None:
            self.pool = LevelPool(self.device_levels.start(self.pool.tensors))
        first = torch.arange(self.num_envs, device=self.device)
        self.last_pick = first.clone()
        self.state = {k: v[first].clone() for k, v in self.pool.tensors.items()}
        self._zero_counters(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self.observation()

    def load(self, env_indices: list[int], levels: list[Level]) -> dict[str, torch.Tensor]:
        """Start slots ``env_indices`` on the given levels (replayed through the single env)."""
        encoded = []
        for level in levels:
            self.single.reset(options={"level": level})
            encoded.append(encode_env(self.single, self.geometry))
        rows = self._stack(encoded)
        if not self.state:
            n = self.num_envs
            self.state = {k: v[:1].expand(n, *v.shape[1:]).clone() for k, v in rows.items()}
            self._zero_counters(torch.ones(n, dtype=torch.bool, device=self.device))
        idx = torch.as_tensor(env_indices, device=self.device)
        for key, value in rows.items():
            self.state[key][idx] = value
        mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        mask[idx] = True
        self._zero_counters(mask)
        return self.observation()

    def _zero_counters(self, mask: torch.Tensor) -> None:
        s, n, dev = self.state, self.num_envs, self.device
        for key, shape, dtype in (
            ("half_steps", (n,), torch.long),
            ("steps_in_cell", (n,), torch.long),
            ("magic_count", (n,), torch.long),
            ("pre", (n, 4), torch.long),
            ("done_slots", (n, 4), torch.bool),
        ):
            if key not in s:
                s[key] = torch.zeros(shape, dtype=dtype, device=dev)
            else:
                s[key][mask] = 0
        snap = s.get("snap")
        s["snap"] = (
            s["obj_pos"].clone()
            if snap is None or snap.shape != s["obj_pos"].shape
            else torch.where(mask.unsqueeze(1), s["obj_pos"], snap)
        )

    # ----------------------------------------------------------------- pool refresh
    def _request_levels(self) -> None:
        """Keep ``workers + 1`` chunks in flight (seeds after the pool's, or from ``refresh_seed``, in order)."""
        while len(self._pending) < self.generator_procs.workers + 1:
            seeds = list(range(self._next_seed, self._next_seed + CHUNK))
            self._next_seed += CHUNK
            self._pending.extend(self.generator_procs.submit(seeds))

    def poll_pool(self) -> int:
        """Swap in one fresh chunk for every ``CHUNK`` episodes ended; returns the levels swapped.

        Chunks enter in seed order, each replacing the next pool rows (a ring), so the pool holds
        the newest ``pool_size`` levels and, on average, each finished episode brings one new level
        in. When a chunk is due it is waited for, so which step it lands on depends only on the
        episodes played, never on the workers' speed: a run with refresh is reproducible. The
        workers make the next chunks while the batch steps, so the wait is rare.
        """
        if self.refresh and not self._pending and self._ended >= CHUNK // 2:
            self._request_levels()  # the workers start once episodes end, so short runs never wait on them
        swapped = 0
        while self.refresh and self._ended >= CHUNK:
            self._ended -= CHUNK
            encoded = self._pending.pop(0).result()
            rows = self._stack(encoded)
            assert self.pool is not None
            index = (self._ring + torch.arange(len(encoded), device=self.device)) % self.pool.size
            for key, value in rows.items():
                self.pool.tensors[key][index] = value
            self._ring = (self._ring + len(encoded)) % self.pool.size
            swapped += len(encoded)
            self._request_levels()
        self.levels_refreshed += swapped
        return swapped

    def close(self) -> None:
        """Stop the worker processes (if any)."""
        for future in self._pending:
            future.cancel()
        self._pending = []
        self.generator_procs.close()

    def restart(self, mask: torch.Tensor) -> None:
        """Start the masked slots on pool levels (what auto-reset does); counters zeroed."""
        self._reset_from_pool(mask)

    def _reset_from_pool(self, mask: torch.Tensor) -> None:
        """Start the masked slots on random pool levels.

        On CPU only the finished rows are copied (one host check per step); on other devices every
        row is selected with ``torch.where`` so the step never waits for the host.
        """
        assert self.pool is not None
        source = self.pool.tensors
        if self.device_levels is not None:
            source, pick = self.device_levels.take(mask)
        else:
            pick = torch.randint(self.pool.size, (self.num_envs,), generator=self.generator, device=self.device)
        self.last_pick = torch.where(mask, pick, -1)  # which pool level each restarted slot drew
        if self.copy_rows:
            rows = mask.nonzero().squeeze(1)
            self._ended += rows.numel()
            if rows.numel() == 0:
                return
            chosen = pick[rows]
            for key in LEVEL_FIELDS:
                self.state[key][rows] = source[key][chosen]
        else:
            if self.refresh:  # counted on the device, read every REFRESH_SYNC_STEPS calls (no per-step sync)
                self._ended_device = self._ended_device + mask.sum()
                self._calls_since_sync += 1
                if self._calls_since_sync >= REFRESH_SYNC_STEPS:
                    self._ended += int(self._ended_device.item())
                    self._ended_device.zero_()
                    self._calls_since_sync = 0
            for key in LEVEL_FIELDS:
                src = source[key][pick]
                m = mask.view(-1, *([1] * (src.dim() - 1)))
                self.state[key] = torch.where(m, src, self.state[key])
        self._zero_counters(mask)

    # ----------------------------------------------------------------- stepping
    def observation(self, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The observation of every slot, or of the slots ``rows`` only (in that order)."""
        s, image_fn = self.state, self._image_fn
        if rows is not None:  # a varying number of rows: eager, so no recompiles
            s = {k: s[k][rows] for k in ("cells", "agent_pos", "agent_dir", "carried", "mission", "description")}
            image_fn = self.observer.image
        image = image_fn(s["cells"], s["agent_pos"], s["agent_dir"], s["carried"])
        return {
            "image": image,
            "direction": s["agent_dir"].clone(),
            "mission": s["mission"].clone(),
            "description": s["description"].clone(),
        }

    def step(self, actions: torch.Tensor | np.ndarray):
        """Advance all episodes by one action each: ``(obs, reward, terminated, truncated)``.

        Rewards are float64 (``1 - 0.9 * steps / max_steps`` on success, as the single env computes
        it). With ``auto_reset`` the finished slots restart on pool levels before ``obs`` is built.
        """
        reward, terminated, truncated = self.advance(actions)
        if self.auto_reset:
            self._reset_from_pool(terminated | truncated)
        return self.observation(), reward, terminated, truncated

    def advance(self, actions: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The state update of :meth:`step` without reset or observation: ``(reward, terminated, truncated)``."""
        if self.refresh:
            self.poll_pool()
        action = torch.as_tensor(actions, device=self.device).long()
        s = self.state
        success, trapped = self._advance_fn(s, action)
        # The reward is computed outside the (optionally compiled) tensor code, in the single env's
        # order of float64 operations, so a fused multiply-add cannot change its last bit.
        steps = s["half_steps"].double() / 2
        reward = torch.where(success, 1 - 0.9 * (steps / s["max_steps"].double()), 0.0)
        terminated = success | trapped
        truncated = s["half_steps"] >= 2 * s["max_steps"]
        return reward, terminated, truncated

    def _advance_tensors(self, s: dict[str, torch.Tensor], action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the state ``s`` in place for one action each: ``(success, trapped)``."""
        cells, pos, direction, carried = s["cells"], s["agent_pos"], s["agent_dir"], s["carried"]

        # Object actions on the cell in front (before the move; fliplr only swaps turns).
        fwd = pos + self.dir_delta[direction]
        fwd_word = cells.gather(1, fwd.unsqueeze(1)).squeeze(1)
        fwd_code = fwd_word & CODE_MASK
        fwd_type = fwd_word & TYPE_BITS
        fwd_state = (fwd_word >> STATE_SHIFT) & 3
        floor_bits = fwd_word & FLOOR_FIELD
        empty_hands = (carried & CODE_MASK) == EMPTY_CODE
        pick = (action == PICKUP) & self.pickable[fwd_code] & empty_hands
        drop = (action == DROP) & (fwd_code == EMPTY_CODE) & ~empty_hands
        toggle = action == TOGGLE
        door = toggle & (fwd_type == T_DOOR)
        key_fits = ((carried & TYPE_BITS) == T_KEY) & ((carried & _COLOUR_FIELD) == (fwd_word & _COLOUR_FIELD))
        unlock = door & (fwd_state == DOOR_LOCKED) & key_fits
        flip = door & (fwd_state != DOOR_LOCKED)
        new_state = torch.where(unlock, DOOR_OPEN, torch.where(fwd_state == DOOR_OPEN, DOOR_CLOSED, DOOR_OPEN))
        door_word = (fwd_word & ~(3 << STATE_SHIFT)) | (new_state << STATE_SHIFT)
        cleared = pick | (toggle & (fwd_type == T_BOX))
        new_fwd = torch.where(cleared, floor_bits | EMPTY_CODE, fwd_word)
        new_fwd = torch.where(drop, floor_bits | carried, new_fwd)
        new_fwd = torch.where(unlock | flip, door_word, new_fwd)
        cells.scatter_(1, fwd.unsqueeze(1), new_fwd.unsqueeze(1))
        moved_id = torch.where(
            pick, (fwd_word >> ID_SHIFT) & ID_MASK, torch.where(drop, (carried >> ID_SHIFT) & ID_MASK, 0)
        )
        s["obj_pos"].scatter_(1, moved_id.unsqueeze(1), torch.where(drop, fwd, -1).unsqueeze(1))
        s["obj_pos"][:, 0] = -1
        carried = torch.where(pick, fwd_word & ~FLOOR_FIELD, torch.where(drop, EMPTY_CODE, carried))
        s["carried"] = carried

        # Movement and the tile physics (babyaipp.envs.physics, where every property's rule lives).
        props = s["props"]

        def props_at(flat: torch.Tensor) -> torch.Tensor:
            return props.gather(1, (cells.gather(1, flat.unsqueeze(1)) >> FLOOR_SHIFT) & 7).squeeze(1)

        def can_enter(flat: torch.Tensor) -> torch.Tensor:
            return self.can_enter[cells.gather(1, flat.unsqueeze(1)).squeeze(1) & CODE_MASK]

        motion = resolve_motion_tensors(
            pos, direction, action, s["steps_in_cell"], s["magic_count"], props_at, can_enter, self.dir_delta, 1
        )
        new_pos, new_dir, turn, trapped = motion.pos, motion.dir, motion.action, motion.entered_trap
        s["steps_in_cell"], s["magic_count"] = motion.steps_in_cell, motion.magic_count
        s["half_steps"] = s["half_steps"] + 2 - motion.half_step.long()
        s["agent_pos"], s["agent_dir"] = new_pos, new_dir

        # Instruction verification (minigrid refreshes object positions on every drop first).
        is_drop = (action == DROP).unsqueeze(1)
        s["snap"] = torch.where(is_drop, refreshed_positions(cells, s["obj_pos"]), s["snap"])
        front = new_pos + self.dir_delta[new_dir]
        success, done_slots, pre = verify(s, turn, front, self.hp)
        checked = ~trapped
        s["done_slots"] = torch.where(checked.unsqueeze(1), done_slots, s["done_slots"])
        s["pre"] = torch.where(checked.unsqueeze(1), pre, s["pre"])
        return success & checked, trapped
