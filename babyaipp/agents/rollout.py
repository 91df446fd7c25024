"""The device trainer's data: the rollout buffer, the state one rollout hands to the next, an update's stats.

:mod:`babyaipp.agents.device_ppo` fills and reads these; the device run driver
(:mod:`babyaipp.agents.device_training`) saves and restores :class:`LoopState` in checkpoints. They
live apart from the loop so it reads as the algorithm alone, and so what a checkpoint carries is
defined in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Rollout:
    """``n_steps`` x ``num_envs`` of everything the update needs, preallocated on the device."""

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    episode_starts: torch.Tensor  # 1.0 where obs[t] is the first of an episode
    ended_returns: torch.Tensor  # the return of an episode ended at step t, NaN elsewhere
    ended_lengths: torch.Tensor
    lstm_start: tuple[torch.Tensor, ...] | None = None  # (h_pi, c_pi, h_vf, c_vf) at step 0

    @classmethod
    def empty(cls, n_steps: int, obs: dict[str, torch.Tensor]) -> Rollout:
        n, device = next(iter(obs.values())).shape[0], next(iter(obs.values())).device

        def zeros(dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros((n_steps, n), dtype=dtype, device=device)

        return cls(
            obs={k: torch.zeros((n_steps, *v.shape), dtype=v.dtype, device=device) for k, v in obs.items()},
            actions=zeros(torch.long),
            log_probs=zeros(),
            values=zeros(),
            rewards=zeros(),
            episode_starts=zeros(),
            ended_returns=zeros(),
            ended_lengths=zeros(torch.long),
        )


@dataclass
class LoopState:
    """What one rollout hands to the next: the current observation, which envs start an episode,
    the LSTM states, and the running return and length of every env's episode."""

    obs: dict[str, torch.Tensor]
    episode_starts: torch.Tensor
    episode_returns: torch.Tensor
    episode_lengths: torch.Tensor
    lstm: tuple[torch.Tensor, ...] | None = None  # (h_pi, c_pi, h_vf, c_vf)

    def tensors(self) -> dict[str, Any]:
        """Plain tensors on the CPU (a checkpoint's sidecar)."""
        return {
            "obs": {k: v.cpu().clone() for k, v in self.obs.items()},
            "episode_starts": self.episode_starts.cpu().clone(),
            "episode_returns": self.episode_returns.cpu().clone(),
            "episode_lengths": self.episode_lengths.cpu().clone(),
            "lstm": None if self.lstm is None else [t.cpu().clone() for t in self.lstm],
        }

    @classmethod
    def from_tensors(cls, saved: dict[str, Any], device: torch.device) -> LoopState:
        return cls(
            obs={k: v.to(device) for k, v in saved["obs"].items()},
            episode_starts=saved["episode_starts"].to(device),
            episode_returns=saved["episode_returns"].to(device),
            episode_lengths=saved["episode_lengths"].to(device),
            lstm=None if saved["lstm"] is None else tuple(t.to(device) for t in saved["lstm"]),
        )


@dataclass
class UpdateStats:
    """One iteration's episodes (in the order they ended) and the update's mean losses."""

    returns: list[float]
    lengths: list[int]
    losses: dict[str, float] = field(default_factory=dict)


__all__ = ["LoopState", "Rollout", "UpdateStats"]
