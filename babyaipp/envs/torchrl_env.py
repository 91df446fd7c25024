"""The batched engine as a TorchRL environment: ``BabyAIPPTorchRLEnv(env_id, num_envs)``.

TorchRL cannot drive ``gym.make_vec`` of a BabyAI++ id through ``GymWrapper`` (its vector envs give
no per-step ``final_obs`` in the default autoreset mode, rewards are float64), so this class wraps
:class:`~babyaipp.envs.batched.BatchedBabyAIPP` directly as an ``EnvBase`` with batch size ``[N]``,
specs on the engine's device and TorchRL's reset protocol:

* ``("next", obs)`` of a step that ends an episode is that episode's last observation; the slot
  restarts on a pool level, and the next ``reset`` with a ``_reset`` mask (what ``rollout`` and the
  collectors call) reports the new level's first observation. The restart happens inside the step
  (the pool draw of Gymnasium's ``AutoresetMode.SAME_STEP``), so a rollout replays
  ``gym.make_vec(id, num_envs=N, autoreset_mode="SameStep")`` exactly: same levels, observations,
  rewards and dones for the same seed and actions.
* ``set_seed(s)`` rebuilds the pool on the next full reset: slot ``i`` starts on the level of
  ``gym.make(id).reset(seed=s + i)``. A full reset without a new seed restarts every slot on a pool
  level (as ``reset()`` without a seed does in the vector env).
* Rewards are float32 (the engine's exact float64 reward, rounded once); dones have a trailing
  dimension of 1, as TorchRL expects.

Importing this module imports TorchRL (``pip install 'babyaipp[torchrl]'``); ``import babyaipp``
does not.
"""

from __future__ import annotations

from typing import Any

import torch

try:
    from tensordict import TensorDict, TensorDictBase
    from torchrl.data import Bounded, Categorical, Composite, Unbounded
    from torchrl.envs import EnvBase
except ImportError as error:  # pragma: no cover - exercised only without the extra
    from babyaipp.errors import ConfigError

    raise ConfigError(
        f"babyaipp.envs.torchrl_env needs TorchRL and tensordict ({error}); install them with "
        "pip install 'babyaipp[torchrl]'"
    ) from error

from babyaipp.envs.batched import BatchedBabyAIPP
from babyaipp.envs.physics import ACTION_NAMES
from babyaipp.envs.wrappers import TokenObsWrapper
from babyaipp.errors import ConfigError, check_int
from babyaipp.utils import resolve_device

#: Observation keys, in the engine's order.
OBS_KEYS = ("image", "direction", "mission", "description")


class BabyAIPPTorchRLEnv(EnvBase):
    """N BabyAI++ episodes of one id as a TorchRL ``EnvBase``; see the module docstring.

    Keywords other than ``device`` and ``seed`` go to :class:`BatchedBabyAIPP` (``pool_size``,
    ``workers``, ``refresh``, ``compile``, env keywords such as ``properties_per_colour``).
    ``engine=`` wraps an engine already built (and possibly reset: its pool is kept) instead.
    """

    batch_locked = True

    def __init__(
        self,
        env_id: str | None = None,
        num_envs: int | None = None,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        engine: BatchedBabyAIPP | None = None,
        **engine_kwargs: Any,
    ):
        if engine is None:
            if env_id is None or num_envs is None:
                raise ConfigError("BabyAIPPTorchRLEnv needs an env id and num_envs, or engine=BatchedBabyAIPP(...)")
            num_envs = check_int("num_envs", num_envs, 1)
            seed = check_int("seed", seed, 0)
            if str(device) in ("auto", "cuda"):
                device = resolve_device(str(device))
            engine = BatchedBabyAIPP(env_id, num_envs, device=device, seed=seed, **engine_kwargs)
        engine.auto_reset = False  # restarts are driven here (see _step)
        self.engine = engine
        super().__init__(device=engine.device, batch_size=torch.Size([engine.num_envs]))
        self.env_id, self.num_envs = engine.env_id, engine.num_envs
        num_envs = self.num_envs
        built = engine.pool is not None  # a reset engine: the first reset restarts every slot on its pool
        self._seed: int | None = None if built else engine._seed  # the next full reset builds the pool from it
        self._has_reset = built
        # Slots restarted by the step that ended their episode, whose first observation the next reset reports.
        self._fresh = torch.zeros(num_envs, dtype=torch.bool, device=self.engine.device)
        self._current_obs: dict[str, torch.Tensor] | None = None
        self._make_specs()

    def _make_specs(self) -> None:
        """Specs from ``TokenObsWrapper``'s observation space, batched over N on the engine's device."""
        n, dev = self.num_envs, self.engine.device
        space = TokenObsWrapper(self.engine.single).observation_space

        def box(name: str) -> Bounded:
            sub = space[name]
            return Bounded(
                low=int(sub.low.min()),
                high=int(sub.high.max()),
                shape=(n, *sub.shape),
                dtype=getattr(torch, str(sub.dtype)),
                device=dev,
            )

        self.observation_spec = Composite(
            image=box("image"),
            direction=Categorical(int(space["direction"].n), shape=(n,), dtype=torch.int64, device=dev),
            mission=box("mission"),
            description=box("description"),
            shape=(n,),
            device=dev,
        )
        self.action_spec = Categorical(len(ACTION_NAMES), shape=(n,), dtype=torch.int64, device=dev)
        self.reward_spec = Unbounded(shape=(n, 1), dtype=torch.float32, device=dev)
        self.done_spec = Composite(
            done=Categorical(2, shape=(n, 1), dtype=torch.bool, device=dev),
            terminated=Categorical(2, shape=(n, 1), dtype=torch.bool, device=dev),
            truncated=Categorical(2, shape=(n, 1), dtype=torch.bool, device=dev),
            shape=(n,),
            device=dev,
        )

    # ----------------------------------------------------------------- EnvBase hooks
    def _set_seed(self, seed: int | None) -> None:
        """The next full reset rebuilds the pool from ``seed`` (slot i: ``gym.make(id).reset(seed=seed + i)``)."""
        if seed is not None:
            self._seed = check_int("seed", seed, 0)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        if mask is not None:
            mask = mask.reshape(self.num_envs).to(self.engine.device)
        if not self._has_reset or (self._seed is not None and (mask is None or bool(mask.all()))):
            self.engine.reset(seed=self._seed if self._seed is not None else self.engine._seed)
            self._seed, self._has_reset = None, True
            self._fresh.zero_()
            self._current_obs = None
        else:
            wanted = torch.ones_like(self._fresh) if mask is None else mask
            stale = wanted & ~self._fresh  # slots not already restarted by the step that ended them
            if bool(stale.any()):  # a restart draws from the pool generator: only when a slot needs one
                self.engine.restart(stale)
            changed = self._fresh | stale
            self._fresh &= ~wanted
            if self._current_obs is not None and self.engine.copy_rows:
                # Only the restarted rows changed since the last observation: redraw those (CPU; on
                # other devices the row count would cost a host sync, so every row is redrawn).
                rows = changed.nonzero().squeeze(1)
                obs = {k: v.clone() for k, v in self._current_obs.items()}
                for key, value in self.engine.observation(rows).items():
                    obs[key][rows] = value
                self._current_obs = obs
                return self._observation_td(obs)
        self._current_obs = self.engine.observation()
        return self._observation_td(self._current_obs)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        if action.dim() > 1:  # a one-hot action
            action = action.argmax(-1)
        reward, terminated, truncated = self.engine.advance(action)
        obs = self.engine.observation()
        done = terminated | truncated
        # Restart the ended slots now (the pool draw happens every step, as in SAME_STEP autoreset);
        # their first observation is reported by the reset TorchRL calls next.
        self.engine.restart(done)
        self._fresh |= done
        self._current_obs = obs  # the state's observation, except the rows just restarted
        out = self._observation_td(obs)
        out.set("reward", reward.to(torch.float32).unsqueeze(-1))
        out.set("done", done.unsqueeze(-1))
        out.set("terminated", terminated.unsqueeze(-1))
        out.set("truncated", truncated.unsqueeze(-1))
        return out

    def _observation_td(self, obs: dict[str, torch.Tensor]) -> TensorDictBase:
        return TensorDict({k: obs[k] for k in OBS_KEYS}, batch_size=self.batch_size, device=self.engine.device)

    def close(self, *, raise_if_closed: bool = True) -> None:
        """Stop the engine's level workers (if any), then close as TorchRL does."""
        self.engine.close()
        super().close(raise_if_closed=raise_if_closed)

    def __repr__(self) -> str:
        return f"BabyAIPPTorchRLEnv({self.env_id}, num_envs={self.num_envs}, device={self.engine.device})"
