"""Wrappers for learning libraries that cannot take strings (stable-baselines3)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from babyaipp.envs.dynamics import DIFFICULTY_COLOURS
from babyaipp.envs.text import VOCABULARY, tokenize, tokenize_description

MISSION_LENGTH = 32
SENTENCE_LENGTH = 8
MAX_SENTENCES = max(len(c) for c in DIFFICULTY_COLOURS.values())


class TokenObsWrapper(gym.ObservationWrapper):
    """Turn ``mission`` and ``description`` into fixed-length integer token arrays.

    The vocabulary is closed and deterministic (:data:`babyaipp.envs.text.VOCABULARY`, id 0 is
    padding). ``mission`` becomes ``(mission_length,)``; ``description`` becomes
    ``(max_sentences, sentence_length)``, one row per sentence in the description's order, with
    all-zero rows for absent sentences, so attention models can address sentences. ``direction``
    is kept as ``Discrete(4)`` and ``image`` as minigrid's ``(7, 7, 3)`` uint8 encoding, so
    stable-baselines3's ``MultiInputPolicy`` accepts the observation as it is.
    """

    def __init__(
        self,
        env: gym.Env,
        mission_length: int = MISSION_LENGTH,
        sentence_length: int = SENTENCE_LENGTH,
        max_sentences: int = MAX_SENTENCES,
    ):
        super().__init__(env)
        self.mission_length, self.sentence_length, self.max_sentences = mission_length, sentence_length, max_sentences
        vocab = len(VOCABULARY)
        base = env.observation_space
        self.observation_space = spaces.Dict(
            {
                "image": base["image"],
                "direction": base["direction"],
                "mission": spaces.Box(0, vocab - 1, (mission_length,), dtype=np.int64),
                "description": spaces.Box(0, vocab - 1, (max_sentences, sentence_length), dtype=np.int64),
            }
        )

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        return {
            "image": observation["image"],
            "direction": observation["direction"],
            "mission": tokenize(observation["mission"], self.mission_length),
            "description": tokenize_description(
                observation["description"], self.max_sentences, self.sentence_length
            ),
        }


def make_tokenized(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` wrapped in :class:`TokenObsWrapper`."""
    from babyaipp.envs.registration import make

    return TokenObsWrapper(make(env_id, **kwargs))
