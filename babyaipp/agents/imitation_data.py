"""Behaviour cloning's training data: the demonstrations as flat steps, and minibatches of them.

:func:`check_demos_match` checks a recorded dataset against the training env,
:func:`load_steps` flattens its successful episodes into :class:`StepData` (observation ``t`` ->
oracle action ``t``, with the discounted return from ``t``), and :func:`step_batches` /
:func:`episode_batches` cut that into shuffled minibatches (:class:`Batch`): single steps for
feed-forward models, whole padded episodes laid out sequence-major for recurrent ones. Kept apart
from the training loop in :mod:`babyaipp.agents.imitation` so that loop reads top to bottom; this
module imports nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from babyaipp.agents.demos_loading import Demonstrations
from babyaipp.errors import BabyAIPPError


@dataclass
class StepData:
    """The demonstrations flattened to steps (observation ``t`` -> oracle action ``t``)."""

    observations: dict[str, np.ndarray]
    actions: np.ndarray
    returns: np.ndarray  # discounted return from step t
    episode_lengths: np.ndarray  # episodes are contiguous, in dataset order
    skipped_failures: int

    @property
    def frames(self) -> int:
        return int(self.actions.shape[0])

    @property
    def episode_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]]).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Dataset checks and loading
# ---------------------------------------------------------------------------------------------


def check_demos_match(
    demos: Demonstrations, env_id: str, text: str, env_kwargs: dict[str, Any], observation_space: Any
) -> None:
    """Raise :class:`BabyAIPPError` naming what differs between the dataset and the training env."""
    where = f"demonstrations at {demos.path}"
    if demos.env_id != env_id:
        raise BabyAIPPError(f"{where} were recorded on {demos.env_id}, not on {env_id}; record demos on {env_id}")
    if demos.text != text:
        raise BabyAIPPError(f"{where} were recorded with text={demos.text!r}, not text={text!r}")
    if demos.env_kwargs != env_kwargs:
        raise BabyAIPPError(f"{where} were recorded with env keywords {demos.env_kwargs}, not {env_kwargs}")
    recorded = demos.dataset.observation_space
    if recorded != observation_space:
        keys = sorted(set(recorded.keys()) | set(observation_space.keys()))
        differ = [k for k in keys if recorded.get(k) != observation_space.get(k)]
        shown = "; ".join(f"{k}: recorded {recorded.get(k)}, env {observation_space.get(k)}" for k in differ)
        raise BabyAIPPError(f"{where} have another observation space than {env_id} ({shown})")


def load_steps(demos: Demonstrations, gamma: float) -> StepData:
    """Every successful episode's (observation, action, discounted return) steps, in dataset order."""
    observations: dict[str, list[np.ndarray]] = {}
    actions, returns, lengths = [], [], []
    skipped = 0
    try:
        for episode in demos.dataset.iterate_episodes():
            rewards = np.asarray(episode.rewards, dtype=np.float64)
            terminations = np.asarray(episode.terminations, dtype=bool)
            if not (rewards.size and rewards[-1] > 0 and terminations[-1]):
                skipped += 1
                continue
            n = rewards.size
            for key, value in episode.observations.items():
                observations.setdefault(key, []).append(np.asarray(value)[:n])
            actions.append(np.asarray(episode.actions, dtype=np.int64).reshape(n))
            returns.append(_discounted(rewards, gamma))
            lengths.append(n)
    except (KeyError, OSError, ValueError) as err:
        raise BabyAIPPError(f"demonstration dataset {demos.path} is corrupt: {err}") from err
    if not lengths:
        raise BabyAIPPError(f"demonstration dataset {demos.path} has no successful episode to clone")
    return StepData(
        observations={k: np.concatenate(v) for k, v in observations.items()},
        actions=np.concatenate(actions),
        returns=np.concatenate(returns).astype(np.float32),
        episode_lengths=np.asarray(lengths, dtype=np.int64),
        skipped_failures=skipped,
    )


def _discounted(rewards: np.ndarray, gamma: float) -> np.ndarray:
    out = np.zeros_like(rewards)
    running = 0.0
    for t in range(rewards.size - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


# ---------------------------------------------------------------------------------------------
# Minibatches
# ---------------------------------------------------------------------------------------------


@dataclass
class Batch:
    observations: dict[str, np.ndarray]
    actions: np.ndarray
    returns: np.ndarray
    mask: np.ndarray  # False on padding (recurrent batches only)
    n_sequences: int  # 0 for a batch of independent steps
    episode_starts: np.ndarray


def step_batches(data: StepData, batch_size: int, rng: np.random.Generator) -> list[Batch]:
    """Shuffled minibatches of single steps (feed-forward models)."""
    order = rng.permutation(data.frames)
    batches = []
    for start in range(0, data.frames, batch_size):
        idx = order[start : start + batch_size]
        batches.append(
            Batch(
                {k: v[idx] for k, v in data.observations.items()},
                data.actions[idx],
                data.returns[idx],
                np.ones(idx.size, dtype=bool),
                0,
                np.zeros(idx.size, dtype=np.float32),
            )
        )
    return batches


def episode_batches(data: StepData, batch_size: int, rng: np.random.Generator) -> list[Batch]:
    """Shuffled minibatches of whole episodes, about ``batch_size`` real frames each, padded to
    the longest episode of the batch and laid out sequence-major (recurrent models)."""
    order = rng.permutation(data.episode_lengths.size)
    offsets, lengths = data.episode_offsets, data.episode_lengths
    groups: list[list[int]] = [[]]
    frames = 0
    for e in order:
        if frames >= batch_size:
            groups.append([])
            frames = 0
        groups[-1].append(int(e))
        frames += int(lengths[e])
    batches = []
    for group in groups:
        longest = int(lengths[group].max())
        index = np.zeros((len(group), longest), dtype=np.int64)
        mask = np.zeros((len(group), longest), dtype=bool)
        for row, e in enumerate(group):
            n = int(lengths[e])
            index[row, :n] = offsets[e] + np.arange(n)
            index[row, n:] = offsets[e]  # padding repeats a real frame; it is masked out of the loss
            mask[row, :n] = True
        flat, mask = index.reshape(-1), mask.reshape(-1)
        starts = np.zeros((len(group), longest), dtype=np.float32)
        starts[:, 0] = 1.0
        batches.append(
            Batch(
                {k: v[flat] for k, v in data.observations.items()},
                data.actions[flat],
                data.returns[flat],
                mask,
                len(group),
                starts.reshape(-1),
            )
        )
    return batches


__all__ = [
    "Batch",
    "StepData",
    "check_demos_match",
    "episode_batches",
    "load_steps",
    "step_batches",
]
