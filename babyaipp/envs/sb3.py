"""A stable-baselines3 ``VecEnv`` over the batched engine, so SB3 trainers step N levels at once.

SB3 expects same-step autoreset: a finished sub-env's observation in ``step_wait`` is already the
first one of its next episode, and the last one is in ``infos[i]["terminal_observation"]``
(with ``"TimeLimit.truncated"`` for time-outs, which SB3's PPO bootstraps from). Episode returns
and lengths come from wrapping it in ``VecMonitor``, as for a ``DummyVecEnv``. A finished sub-env's
info also holds ``"is_success"`` (the episode ended with reward > 0, BabyAI's success), from which
SB3 logs ``rollout/success_rate`` to TensorBoard; :class:`SuccessInfo` does the same for single envs.

Seeding follows SB3: ``seed(s)`` (or setting ``_seeds``) makes the next ``reset()`` start sub-env
``i`` on the level of ``gym.make(id).reset(seed=s + i)``; the rest of the pool continues from the
following seeds (cycling inside ``seed_range`` when one is given, so a training run's levels stay
in its own seed block). Later episodes draw pool levels with a generator seeded by the first seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from babyaipp.envs.batched import BatchedBabyAIPP, LevelPool
from babyaipp.envs.pool import CHUNK
from babyaipp.envs.wrappers import TokenObsWrapper
from babyaipp.errors import ConfigError


def pool_seeds(first: Sequence[int], pool_size: int, seed_range: tuple[int, int] | None = None) -> list[int]:
    """``first`` (one seed per sub-env) extended to ``pool_size`` distinct seeds.

    The extension continues after ``first[-1]``; with ``seed_range = (lo, hi)`` it wraps around
    inside ``[lo, hi]`` and must fit there.
    """
    seeds, taken = [int(s) for s in first], {int(s) for s in first}
    if len(taken) != len(seeds):
        raise ConfigError(f"the sub-envs' seeds must differ; got {seeds}")
    if seed_range is None:
        nxt = max(seeds) + 1
        return seeds + list(range(nxt, nxt + pool_size - len(seeds)))
    lo, hi = seed_range
    if pool_size > hi - lo + 1 or any(not lo <= s <= hi for s in seeds):
        raise ConfigError(f"a pool of {pool_size} seeds starting {seeds[:3]}... does not fit in [{lo}, {hi}]")
    span = hi - lo + 1
    for k in range(1, span):
        if len(seeds) >= pool_size:
            break
        candidate = lo + (seeds[len(first) - 1] - lo + k) % span
        if candidate not in taken:
            seeds.append(candidate)
            taken.add(candidate)
    return seeds


class SuccessInfo(gym.Wrapper):
    """Adds ``info["is_success"]`` at the end of every episode (terminated with reward > 0), the key
    SB3 reads to log ``rollout/success_rate``; the engine's adapter sets it itself."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, "is_success": bool(terminated and reward > 0)}
        return obs, reward, terminated, truncated, info


class BatchedSB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` of one BabyAI++ id on :class:`BatchedBabyAIPP` (numpy in and out)."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        device: str = "cpu",
        pool_size: int | None = None,
        seed: int = 0,
        seed_range: tuple[int, int] | None = None,
        workers: int = 0,
        refresh: bool = False,
        refresh_seed: int | None = None,
        compile: bool = False,
        device_levels: bool = False,
        **env_kwargs: Any,
    ):
        self.engine = BatchedBabyAIPP(
            env_id,
            num_envs,
            device=device,
            pool_size=pool_size,
            seed=seed,
            auto_reset=False,
            workers=workers,
            refresh=refresh,
            refresh_seed=refresh_seed,
            compile=compile,
            device_levels=device_levels,
            **env_kwargs,
        )
        self.env_id, self.seed_range, self.default_seed = env_id, seed_range, int(seed)
        single = self.engine.single
        super().__init__(num_envs, TokenObsWrapper(single).observation_space, single.action_space)
        self._actions: torch.Tensor | None = None
        self._has_reset = False

    def _numpy_obs(self, obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {k: v.cpu().numpy() for k, v in obs.items()}

    def reset(self):
        """Rebuild the pool if seeds were given (or on the first reset), else restart every sub-env from it."""
        given = [s for s in self._seeds if s is not None]
        if len(given) == self.num_envs:
            seeds = pool_seeds(given, self.engine.pool_size, self.seed_range)
            self.engine.reset(seeds=seeds)
        elif not self._has_reset:
            first = [self.default_seed + i for i in range(self.num_envs)]
            self.engine.reset(seeds=pool_seeds(first, self.engine.pool_size, self.seed_range))
        else:
            self.engine.restart(torch.ones(self.num_envs, dtype=torch.bool, device=self.engine.device))
        self._has_reset = True
        self._reset_seeds()
        self._reset_options()
        state = self.engine.state
        self.reset_infos = [
            {"held_out": bool(h), "level_seed": int(s)}
            for h, s in zip(state["held_out"].tolist(), state["level_seed"].tolist())
        ]
        return self._numpy_obs(self.engine.observation())

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = torch.as_tensor(np.asarray(actions), device=self.engine.device).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_async first"
        reward, terminated, truncated = self.engine.advance(self._actions)
        done = terminated | truncated
        rows = done.nonzero().squeeze(1)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if rows.numel():
            final = self._numpy_obs(self.engine.observation(rows))
            self.engine.restart(done)
            time_limit = (truncated & ~terminated)[rows].tolist()
            success = (terminated & (reward > 0))[rows].tolist()
            for j, i in enumerate(rows.tolist()):
                infos[i]["terminal_observation"] = {k: v[j] for k, v in final.items()}
                infos[i]["TimeLimit.truncated"] = time_limit[j]
                infos[i]["is_success"] = success[j]
        obs = self._numpy_obs(self.engine.observation())
        return obs, reward.cpu().numpy().astype(np.float32), done.cpu().numpy(), infos

    # ----------------------------------------------------------------- snapshots (exact resume)
    #: Engine attributes a snapshot holds besides the pool, the slots' state and the generator.
    _SCALARS = (
        "num_objects",
        "pool_size",
        "_seed",
        "_next_seed",
        "_ring",
        "_ended",
        "_calls_since_sync",
        "levels_refreshed",
    )

    def snapshot(self) -> dict[str, Any]:
        """Everything the next steps depend on, as tensors and ints (``torch.load(weights_only=True)``
        reads it back): the pool, every slot's state, the draw generator, the refresh counters,
        which refresh chunks are in flight (their seeds follow from the counters) and, with
        ``device_levels``, the layouts and the stock's cursor. Taking it changes
        nothing, so a run that takes snapshots steps exactly as one that does not."""
        engine = self.engine
        assert engine.pool is not None, "reset first"
        return {
            "pool": {k: v.cpu().clone() for k, v in engine.pool.tensors.items()},
            "state": {k: v.cpu().clone() for k, v in engine.state.items()},
            "generator": engine.generator.get_state(),
            "last_pick": engine.last_pick.cpu().clone(),
            "ended_device": engine._ended_device.cpu().clone(),
            "pending_seeds": len(engine._pending) * CHUNK,
            **{name: int(getattr(engine, name)) for name in self._SCALARS},
            **({"device_levels": engine.device_levels.snapshot()} if engine.device_levels is not None else {}),
        }

    def restore(self, snapshot: dict[str, Any]) -> dict[str, np.ndarray]:
        """Put the engine back where :meth:`snapshot` found it; returns the current observation.

        The refresh chunks that were in flight are requested again (same seeds, so the same levels)."""
        engine = self.engine
        device = engine.device
        if snapshot["generator"].numel() != engine.generator.get_state().numel():
            # A CPU generator's state (Mersenne Twister) and a CUDA one's (Philox) differ in size.
            raise ConfigError(
                f"the snapshot's random generator comes from another kind of device than this engine's "
                f"({device.type}); restore it into an engine on the device it was taken on (e.g. resume "
                f"with the run's --device)"
            )
        for future in engine._pending:
            future.cancel()
        if (engine.device_levels is None) != ("device_levels" not in snapshot):
            raise ConfigError(
                "the snapshot and this engine disagree on device_levels; restore it into an engine made "
                "with the same device_levels setting"
            )
        engine.pool = LevelPool({k: v.to(device) for k, v in snapshot["pool"].items()})
        if engine.device_levels is not None:  # the pool is the stock of drawn levels
            engine.device_levels.restore(snapshot["device_levels"], engine.pool.tensors)
        engine.state = {k: v.to(device) for k, v in snapshot["state"].items()}
        engine.generator.set_state(snapshot["generator"])
        engine.last_pick = snapshot["last_pick"].to(device)
        engine._ended_device = snapshot["ended_device"].to(device)
        for name in self._SCALARS:
            setattr(engine, name, int(snapshot[name]))
        pending = int(snapshot["pending_seeds"])
        first = engine._next_seed - pending
        engine._pending = engine.generator_procs.submit(list(range(first, engine._next_seed))) if pending else []
        self._has_reset = True
        self._reset_seeds()
        return self._numpy_obs(engine.observation())

    # ----------------------------------------------------------------- the rest of SB3's API
    def close(self) -> None:
        self.engine.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The single env's attribute (every sub-env plays the same id), or the adapter's own."""
        if attr_name == "render_mode":
            value = None  # the engine does not render
        else:
            value = getattr(self if hasattr(self, attr_name) else self.engine.single, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise ConfigError(f"the batched engine's sub-envs have no settable attribute {attr_name!r}")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        raise ConfigError(f"the batched engine's sub-envs cannot run methods ({method_name!r}); use the engine")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
