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
  the ending step, with ``infos["final_obs"]`` holding the last one.
* ``device="cuda"`` (or ``tensors=True``) returns observations, rewards, dones and infos as torch
  tensors on the engine's device, with no host copy, for trainers that stay on the device.
* ``infos``: ``held_out`` (the episode's floor has held-out colour/property pairs) and
  ``level_seed`` (the seed that replays the level in the single env, ``-1`` if loaded), for each
  sub-env starting an episode, with Gymnasium's ``_key`` masks.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from babyaipp.envs.batched import BatchedBabyAIPP
from babyaipp.envs.registration import env_id as make_env_id
from babyaipp.envs.wrappers import TokenObsWrapper
from babyaipp.errors import check_choice

AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
INFO_KEYS = ("held_out", "level_seed")


class BatchedVectorEnv(VectorEnv):
    """N BabyAI++ episodes stepped by :class:`BatchedBabyAIPP`; see the module docstring."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

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
        mode = AutoresetMode(autoreset_mode)
        check_choice("autoreset mode", mode.value, [m.value for m in AUTORESET_MODES])
        if device != "cpu":
            from babyaipp.utils import resolve_device

            device = resolve_device(device) if device in ("auto", "cuda") else device
        self.engine = BatchedBabyAIPP(
            env_id, num_envs, device=device, pool_size=pool_size, seed=seed, auto_reset=False,
            workers=workers, refresh=refresh, **env_kwargs,
        )  # fmt: skip
        self.env_id, self.num_envs, self.device = env_id, int(num_envs), self.engine.device
        self.tensors = self.device.type != "cpu" if tensors is None else bool(tensors)
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.autoreset_mode = mode
        self.single_observation_space = TokenObsWrapper(self.engine.single).observation_space
        self.single_action_space = self.engine.single.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._autoreset = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._has_reset = False

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
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start every sub-env (or those in ``options["reset_mask"]``) on a new level; see the module docstring."""
        mask = None if options is None else options.get("reset_mask")
        if seed is not None or not self._has_reset:
            self.engine.reset(seed=seed)
            self._has_reset = True
            started = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
            if mask is not None:  # a partial reset with a seed still (re)builds the pool first
                started = torch.as_tensor(np.asarray(mask), device=self.device).bool()
        else:
            started = (
                torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
                if mask is None
                else torch.as_tensor(np.asarray(mask), device=self.device).bool()
            )
            self.engine.restart(started)
        self._autoreset = self._autoreset & ~started
        return self._obs_out(self.engine.observation()), self._start_infos(started)

    def step(self, actions: Any):
        actions = torch.as_tensor(np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions)
        reward, terminated, truncated = self.engine.advance(actions.to(self.device))
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
        else:
            started = terminated | truncated
            if self.tensors:
                final = self.engine.observation()
                infos["final_obs"], infos["_final_obs"] = final, started.clone()
            else:
                rows = started.nonzero().squeeze(1)
                final = {k: v.numpy() for k, v in self.engine.observation(rows).items()}
                final_obs = np.full(self.num_envs, None, dtype=object)
                for j, i in enumerate(rows.tolist()):
                    final_obs[i] = {k: v[j] for k, v in final.items()}
                infos["final_obs"], infos["_final_obs"] = final_obs, started.numpy().copy()
            self.engine.restart(started)
            obs = self.engine.observation()
        if self.tensors or bool(started.any()):
            infos.update(self._start_infos(started))
        return self._obs_out(obs), self._out(reward), self._out(terminated), self._out(truncated), infos

    def close_extras(self, **kwargs: Any) -> None:
        self.engine.close()

    def __repr__(self) -> str:
        return f"BatchedVectorEnv({self.env_id}, num_envs={self.num_envs}, device={self.device})"


def make_batched_vector(
    num_envs: int = 1, *, task: str, difficulty: str, split: str, **kwargs: Any
) -> BatchedVectorEnv:
    """``vector_entry_point`` of every BabyAI++ id (Gymnasium passes the spec's task/difficulty/split)."""
    kwargs.pop("max_episode_steps", None)  # the levels carry their own step budget
    return BatchedVectorEnv(make_env_id(task, difficulty, split), num_envs, **kwargs)


def make_vec(id: str, num_envs: int = 1, **kwargs: Any) -> BatchedVectorEnv:
    """``gym.make_vec`` for a BabyAI++ id, with the same clear id errors as ``babyaipp.envs.make``."""
    from babyaipp.envs.registration import parse_env_id

    parse_env_id(id)
    return gym.make_vec(id.removeprefix("babyaipp:"), num_envs=num_envs, **kwargs)
