"""``gym.make_vec("BabyAIPP/...", num_envs=N)``: the batched engine as a Gymnasium ``VectorEnv``.

Every BabyAI++ id registers :func:`make_batched_vector` as its ``vector_entry_point``, so
``gym.make_vec(id, num_envs=N)`` returns a :class:`BatchedVectorEnv` whose observations are those
of ``TokenObsWrapper(gym.make(id))`` stacked over N (numpy by default, as Gymnasium expects).

* Seeding: ``reset(seed=s)`` starts sub-env ``i`` on the level of ``gym.make(id).reset(seed=s + i)``
  (the pool holds the levels of seeds ``s .. s + pool_size - 1``; later episodes draw pool rows
  with a generator seeded by ``s``). ``reset()`` without a seed restarts every sub-env on a pool
  level without regenerating the pool.
* Autoreset: Gymnasium's default ``AutoresetMode.NEXT_STEP`` (the step after a sub-env ends
  ignores its action and returns the first observation of a new level with reward 0 and no
  termination); ``autoreset_mode=AutoresetMode.SAME_STEP`` returns the new level's observation in
  the ending step, with ``infos["final_obs"]`` / ``infos["final_info"]`` for the ended sub-envs
  (only in steps where one ends, as Gymnasium's vector envs do); ``AutoresetMode.DISABLED``
  leaves ended sub-envs to ``reset(options={"reset_mask": m})``.
* ``get_attr`` / ``call`` / ``render`` work for what the sub-envs share and for per-episode values
  the engine holds; bad actions, seeds and ``num_envs`` raise one-line errors (docs/batched.md).
* ``device="cuda"`` (or ``tensors=True``) returns observations, rewards, dones and infos as torch
  tensors on the engine's device, with no host copy, for trainers that stay on the device.
* ``infos``: ``held_out`` (the episode's floor has held-out colour/property pairs) and
  ``level_seed`` (the seed that replays the level in the single env, ``-1`` if loaded), for each
  sub-env starting an episode, with Gymnasium's ``_key`` masks.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from babyaipp.envs.batched import BatchedBabyAIPP
from babyaipp.envs.batched_state import CODE_MASK, COLOUR_SHIFT, FLOOR_SHIFT, PAD, STATE_SHIFT, TYPE_BITS
from babyaipp.envs.dynamics import PROPERTIES
from babyaipp.envs.physics import ACTION_NAMES
from babyaipp.envs.registration import env_id as make_env_id
from babyaipp.envs.registration import parse_env_id
from babyaipp.envs.tiles import NO_TILE
from babyaipp.envs.wrappers import TokenObsWrapper
from babyaipp.errors import BabyAIPPError, ConfigError, check_choice, check_int
from babyaipp.utils import resolve_device

AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED)
INFO_KEYS = ("held_out", "level_seed")
#: Seeds are stored as int64 with ``seed + pool_size`` room above them.
MAX_SEED = 2**63 - 1
#: Attributes every sub-env shares (those of the template env ``engine.single``): ``get_attr``/``call``
#: return them once per sub-env. Per-episode state lives in tensors; see :meth:`BatchedVectorEnv.get_attr`.
SHARED_ATTRIBUTES = frozenset(
    {
        "spec",
        "metadata",
        "render_mode",
        "action_space",
        "observation_space",
        "difficulty",
        "split",
        "text_mode",
        "properties_per_colour",
        "floor_layout",
        "room_size",
        "num_rows",
        "num_cols",
        "width",
        "height",
        "agent_view_size",
        "max_steps",
    }
)
#: Per-sub-env values read from the engine's state.
STATE_ATTRIBUTES = ("level_seed", "held_out", "step_count")


class ResetNeededError(BabyAIPPError, gym.error.ResetNeeded):
    """``step`` was called before ``reset``, or on a finished sub-env with autoreset disabled."""


class BatchedVectorEnv(VectorEnv):
    """N BabyAI++ episodes stepped by :class:`BatchedBabyAIPP`; see the module docstring."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"]}

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        *,
        device: str = "cpu",
        tensors: bool | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        pool_size: int | None = None,
        seed: int = 0,
        workers: int = 0,
        refresh: bool = False,
        **env_kwargs: Any,
    ):
        num_envs = check_int("num_envs", num_envs, 1)
        seed = check_int("seed", seed, 0, MAX_SEED)
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            check_choice("autoreset mode", autoreset_mode, [m.value for m in AUTORESET_MODES])
            raise
        if device != "cpu":
            device = resolve_device(device) if device in ("auto", "cuda") else device
        self.engine = BatchedBabyAIPP(
            env_id,
            num_envs,
            device=device,
            pool_size=pool_size,
            seed=seed,
            auto_reset=False,
            workers=workers,
            refresh=refresh,
            **env_kwargs,
        )
        self.env_id, self.num_envs, self.device = env_id, int(num_envs), self.engine.device
        self.tensors = self.device.type != "cpu" if tensors is None else bool(tensors)
        if self.tensors:
            _refuse_numpy_only_wrappers()
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.autoreset_mode = mode
        self.single_observation_space = TokenObsWrapper(self.engine.single).observation_space
        self.single_action_space = self.engine.single.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._autoreset = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._has_reset = False
        self.render_mode = env_kwargs.get("render_mode")

    # ----------------------------------------------------------------- conversion
    def _out(self, value: torch.Tensor) -> torch.Tensor | np.ndarray:
        return value if self.tensors else value.cpu().numpy()

    def _obs_out(self, obs: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {k: self._out(v) for k, v in obs.items()}

    def _start_infos(self, started: torch.Tensor) -> dict[str, Any]:
        """``held_out`` / ``level_seed`` of the sub-envs that start an episode, with ``_key`` masks."""
        state = self.engine.state
        values = {"held_out": state["held_out"] > 0, "level_seed": state["level_seed"].clone()}
        infos: dict[str, Any] = {}
        for key in INFO_KEYS:
            infos[key] = self._out(torch.where(started, values[key], torch.zeros_like(values[key])))
            infos[f"_{key}"] = self._out(started.clone())
        return infos

    # ----------------------------------------------------------------- Gymnasium API
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Start every sub-env (or those in ``options["reset_mask"]``) on a new level; see the module docstring.

        ``seed`` is an int (sub-env ``i`` gets ``seed + i``) or a list of ``num_envs`` ints, each in
        ``[0, 2**63 - 1 - pool_size]`` (seeds are stored as int64).
        """
        mask = None if options is None else options.get("reset_mask")
        if mask is not None:
            mask = self._reset_mask(mask)
        seeds = None
        if isinstance(seed, (list, tuple, np.ndarray)):
            if len(seed) != self.num_envs:
                raise ConfigError(f"reset(seed=[...]) needs num_envs={self.num_envs} seeds, got {len(seed)}")
            seeds = [check_int("seed", v, 0, MAX_SEED - self.num_envs) for v in seed]
            seed = None
        elif seed is not None:
            seed = check_int("seed", seed, 0, MAX_SEED - self.engine.pool_size)
        if seed is not None or seeds is not None or not self._has_reset:
            self.engine.reset(seed=seed, seeds=seeds)
            self._has_reset = True
            started = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
            if mask is not None:  # a partial reset with a seed still (re)builds the pool first
                started = mask
        else:
            started = torch.ones(self.num_envs, dtype=torch.bool, device=self.device) if mask is None else mask
            self.engine.restart(started)
        self._autoreset = self._autoreset & ~started
        return self._obs_out(self.engine.observation()), self._start_infos(started)

    def _reset_mask(self, mask: Any) -> torch.Tensor:
        """``options["reset_mask"]`` as a bool tensor, checked as Gymnasium's vector envs check it."""
        array = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if array.shape != (self.num_envs,) or array.dtype != np.bool_:
            raise ConfigError(
                f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), "
                f"got dtype {array.dtype} and shape {array.shape}"
            )
        return torch.as_tensor(array, device=self.device)

    def _check_actions(self, actions: Any) -> torch.Tensor:
        """Integer actions of shape ``(num_envs,)`` in ``[0, 7)``, as the single env accepts them.

        The range is checked on CPU only: on other devices it would cost a host sync per step.
        """
        actions = actions if isinstance(actions, torch.Tensor) else torch.as_tensor(np.asarray(actions))
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise ConfigError(
                f"actions must be integers (got dtype {str(actions.dtype).removeprefix('torch.')}); "
                f"valid actions: 0..{len(ACTION_NAMES) - 1} ({', '.join(ACTION_NAMES)})"
            )
        if tuple(actions.shape) != (self.num_envs,):
            raise ConfigError(f"actions must have shape ({self.num_envs},), got {tuple(actions.shape)}")
        if actions.device.type == "cpu":
            bad = (actions < 0) | (actions >= len(ACTION_NAMES))
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise ConfigError(
                    f"action {int(actions[i])} of sub-env {i} is out of range; "
                    f"valid actions: 0..{len(ACTION_NAMES) - 1} ({', '.join(ACTION_NAMES)})"
                )
        return actions.to(self.device)

    def step(self, actions: Any):
        if not self._has_reset:
            raise ResetNeededError("call reset() before step() on a BabyAI++ vector env")
        actions = self._check_actions(actions)
        if self.autoreset_mode == AutoresetMode.DISABLED and bool(self._autoreset.any()):
            ended = self._autoreset.nonzero().squeeze(1).tolist()
            raise ResetNeededError(
                f"sub-envs {ended} have ended and autoreset_mode is DISABLED: "
                "call reset(options={'reset_mask': mask}) for them before step()"
            )
        reward, terminated, truncated = self.engine.advance(actions)
        infos: dict[str, Any] = {}
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            started = self._autoreset
            # Sub-envs that ended last step: their action was ignored (the step above ran on the
            # finished state, which the restart overwrites); they report reward 0, no ending.
            self.engine.restart(started)
            reward = torch.where(started, 0.0, reward)
            terminated, truncated = terminated & ~started, truncated & ~started
            obs = self.engine.observation()
            self._autoreset = terminated | truncated
        elif self.autoreset_mode == AutoresetMode.DISABLED:
            started = torch.zeros_like(terminated)
            obs = self.engine.observation()
            self._autoreset = terminated | truncated
        else:
            started = terminated | truncated
            if self.tensors:
                final = self.engine.observation()
                infos["final_obs"], infos["_final_obs"] = final, started.clone()
                infos["final_info"], infos["_final_info"] = self._end_infos(started), started.clone()
            elif bool(started.any()):  # as Gymnasium's vector envs: only in a step where some sub-env ends
                rows = started.nonzero().squeeze(1)
                final = {k: v.cpu().numpy() for k, v in self.engine.observation(rows).items()}
                final_obs = np.full(self.num_envs, None, dtype=object)
                for j, i in enumerate(rows.tolist()):
                    final_obs[i] = {k: v[j] for k, v in final.items()}
                ended = started.cpu().numpy()
                infos["final_obs"], infos["_final_obs"] = final_obs, ended.copy()
                infos["final_info"], infos["_final_info"] = self._end_infos(started), ended.copy()
            self.engine.restart(started)
            obs = self.engine.observation()
        if self.tensors or bool(started.any()):
            infos.update(self._start_infos(started))
        return self._obs_out(obs), self._out(reward), self._out(terminated), self._out(truncated), infos

    def _end_infos(self, ended: torch.Tensor) -> dict[str, Any]:
        """``final_info``: the ``held_out`` / ``level_seed`` of the episodes that just ended."""
        return self._start_infos(ended)

    # ----------------------------------------------------------------- sub-env access
    def get_attr(self, name: str) -> tuple[Any, ...]:
        """One value per sub-env, as Gymnasium's vector envs give.

        The sub-envs are rows of tensors, not env objects, so only attributes they all share
        (:data:`SHARED_ATTRIBUTES`, read from the template env) and the per-episode values
        :data:`STATE_ATTRIBUTES` are available; anything else is refused with the list.
        """
        if name in STATE_ATTRIBUTES:
            if not self._has_reset:
                raise ResetNeededError(f"call reset() before get_attr({name!r})")
            state = self.engine.state
            values = {
                "level_seed": state["level_seed"],
                "held_out": state["held_out"] > 0,
                "step_count": state["half_steps"].double() / 2,
            }[name]
            return tuple(v.item() for v in values.cpu())
        if name in SHARED_ATTRIBUTES:
            value = getattr(self.engine.single.unwrapped, name, None)
            return (value,) * self.num_envs
        choices = sorted(SHARED_ATTRIBUTES) + list(STATE_ATTRIBUTES) + ["render"]
        raise ConfigError(
            f"sub-env attribute {name!r} is not available from the batched engine (its sub-envs are rows of "
            f"tensors); available: {', '.join(choices)}; for any other attribute use "
            "gym.make_vec(id, num_envs, vectorization_mode='sync')"
        )

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """``render`` per sub-env, or the value of an attribute :meth:`get_attr` gives."""
        if name == "render":
            return self.render(*args, **kwargs)
        return self.get_attr(name)

    def set_attr(self, name: str, values: Any) -> None:
        raise ConfigError(
            f"set_attr({name!r}) is not supported by the batched engine (its sub-envs share one template env); "
            "pass keywords to gym.make_vec instead, or use vectorization_mode='sync'"
        )

    def render(self) -> tuple[np.ndarray, ...]:
        """An RGB frame of every sub-env's current state (needs ``render_mode="rgb_array"`` at make_vec)."""
        if self.render_mode != "rgb_array":
            raise ConfigError(
                f"render() needs gym.make_vec(id, num_envs, render_mode='rgb_array'); this env has "
                f"render_mode={self.render_mode!r} (the batched engine renders frames, not windows)"
            )
        if not self._has_reset:
            raise ResetNeededError("call reset() before render()")
        return tuple(self._render_row(i) for i in range(self.num_envs))

    def _render_row(self, i: int) -> np.ndarray:
        """Load sub-env ``i``'s grid, floor and pose into the template env and let minigrid draw it."""
        from minigrid.core.constants import IDX_TO_COLOR
        from minigrid.core.grid import Grid
        from minigrid.core.world_object import WorldObj

        env, state, geometry = self.engine.single.unwrapped, self.engine.state, self.engine.geometry
        w, h, hp = geometry.width, geometry.height, geometry.padded_height
        words = state["cells"][i].cpu().numpy().reshape(-1, hp)[PAD : PAD + w, PAD : PAD + h].astype(np.int64)
        encoding = np.stack([words & TYPE_BITS, (words >> COLOUR_SHIFT) & 7, (words >> STATE_SHIFT) & 3], -1)
        env.grid, _ = Grid.decode(encoding.astype(np.uint8))
        floor = (words >> FLOOR_SHIFT) & 7
        env._set_floor(np.where(floor == 7, NO_TILE, floor).astype(np.int8))
        props = state["props"][i].cpu().tolist()
        env._set_dynamics(
            {
                IDX_TO_COLOR[c]: tuple(p for b, p in enumerate(PROPERTIES) if bits >> b & 1)
                for c, bits in enumerate(props)
                if bits and c in IDX_TO_COLOR
            }
        )
        pos = int(state["agent_pos"][i])
        env.agent_pos, env.agent_dir = (pos // hp - PAD, pos % hp - PAD), int(state["agent_dir"][i])
        carried = int(state["carried"][i]) & CODE_MASK
        kind = carried & TYPE_BITS
        env.carrying = None if kind in (0, 1) else WorldObj.decode(kind, (carried >> COLOUR_SHIFT) & 7, 0)
        return env.render()

    def close_extras(self, **kwargs: Any) -> None:
        self.engine.close()

    def __repr__(self) -> str:
        return f"BatchedVectorEnv({self.env_id}, num_envs={self.num_envs}, device={self.device})"


def _refuse_numpy_only_wrappers() -> None:
    """Make Gymnasium's ``RecordEpisodeStatistics`` refuse this env's tensor outputs with one line.

    It adds the step's rewards into numpy arrays, which fails deep inside it with a ``TypeError``
    about concatenation when they are torch tensors. Other envs are unaffected.
    """
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    original = RecordEpisodeStatistics.__init__
    if getattr(original, "_refuses_tensors", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
        inner = env.unwrapped
        if isinstance(inner, BatchedVectorEnv) and inner.tensors:
            raise ConfigError(
                "gymnasium's RecordEpisodeStatistics works on numpy arrays, and this vector env returns torch "
                "tensors (tensors=True or a GPU device): make it with tensors=False, or sum the rewards over "
                "the tensors yourself"
            )
        original(self, env, *args, **kwargs)

    __init__._refuses_tensors = True  # type: ignore[attr-defined]
    RecordEpisodeStatistics.__init__ = __init__


def make_batched_vector(
    num_envs: int = 1, *, task: str, difficulty: str, split: str, **kwargs: Any
) -> BatchedVectorEnv:
    """``vector_entry_point`` of every BabyAI++ id (Gymnasium passes the spec's task/difficulty/split)."""
    kwargs.pop("max_episode_steps", None)  # the levels carry their own step budget
    return BatchedVectorEnv(make_env_id(task, difficulty, split), num_envs, **kwargs)


def make_vec(id: str, num_envs: int = 1, **kwargs: Any) -> BatchedVectorEnv:
    """``gym.make_vec`` for a BabyAI++ id, with the same clear id errors as ``babyaipp.envs.make``."""
    parse_env_id(id)
    return gym.make_vec(id.removeprefix("babyaipp:"), num_envs=num_envs, **kwargs)
