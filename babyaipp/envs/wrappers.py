"""Wrappers for learning libraries that cannot take strings (stable-baselines3)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from babyaipp.envs.dynamics import DIFFICULTY_COLOURS
from babyaipp.envs.text import VOCABULARY, tokenize, tokenize_description

MISSION_LENGTH = 32
SENTENCE_LENGTH = 8
MAX_SENTENCES = max(len(c) for c in DIFFICULTY_COLOURS.values())


#: Largest index of minigrid's cell encoding (object type 10, the agent; colours go to 5, states to 3).
ENCODING_HIGH = max(max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()), 3)


def index_image_space(shape: tuple[int, ...]) -> spaces.Box:
    """The space of a ``(H, W, 3)`` minigrid cell encoding: uint8 in ``[0, ENCODING_HIGH]``.

    The channels are categorical indices, not intensities. With ``high=255`` stable-baselines3
    takes the box for a picture: its default policy puts an 8x8-kernel CNN on the 7x7 view
    (which crashes) and every policy divides it by 255 (cell indices become < 0.04). With the
    index bound SB3 passes the indices on unchanged.
    """
    return spaces.Box(0, ENCODING_HIGH, shape, dtype=np.uint8)


class TokenObsWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Turn ``mission`` and ``description`` into fixed-length integer token arrays.

    The vocabulary is closed and deterministic (:data:`babyaipp.envs.text.VOCABULARY`, id 0 is
    padding). ``mission`` becomes ``(mission_length,)``; ``description`` becomes
    ``(max_sentences, sentence_length)``, one row per sentence in the description's order, with
    all-zero rows for absent sentences, so attention models can address sentences. ``direction``
    is kept as ``Discrete(4)``; ``image`` keeps minigrid's ``(7, 7, 3)`` uint8 encoding, in a box
    bounded by the largest index of each channel (:func:`index_image_space`), so stable-baselines3
    does not take it for a picture. ``PPO("MultiInputPolicy", TokenObsWrapper(env))`` then builds
    SB3's default policy (an MLP over the flattened indices); the package's extractors
    (:mod:`babyaipp.agents.models`) embed the indices instead, see docs/environments.md.
    Records its constructor arguments, so ``minari``'s ``recover_environment`` can rebuild it.
    """

    def __init__(
        self,
        env: gym.Env,
        mission_length: int = MISSION_LENGTH,
        sentence_length: int = SENTENCE_LENGTH,
        max_sentences: int = MAX_SENTENCES,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self, mission_length=mission_length, sentence_length=sentence_length, max_sentences=max_sentences
        )
        super().__init__(env)
        self.mission_length, self.sentence_length, self.max_sentences = mission_length, sentence_length, max_sentences
        vocab = len(VOCABULARY)
        base = env.observation_space
        self.observation_space = spaces.Dict(
            {
                "image": index_image_space(base["image"].shape),
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
            "description": tokenize_description(observation["description"], self.max_sentences, self.sentence_length),
        }


def make_tokenized(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` wrapped in :class:`TokenObsWrapper`."""
    from babyaipp.envs.registration import make

    return TokenObsWrapper(make(env_id, **kwargs))
