"""Wrappers: integer tokens for learning libraries that cannot take strings (stable-baselines3), and
a fully observed view that keeps the floor tiles (minigrid's own full-view wrappers drop them)."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from babyaipp.envs.dynamics import DIFFICULTY_COLOURS
from babyaipp.envs.text import VOCABULARY, tokenize, tokenize_description
from babyaipp.envs.tiles import EMPTY_IDX, FLOOR_IDX, NO_TILE
from babyaipp.errors import ConfigError

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


class FullyObsFloorWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """The whole grid as ``image``, as minigrid's ``FullyObsWrapper`` encodes it, plus the floor tiles.

    minigrid's fully observed wrappers read only ``env.grid``, which holds no floor: the tiles (and
    with them the episode's dynamics) vanish from their view. Here a tile on an empty cell is shown
    as the egocentric view shows it, a minigrid ``floor`` cell of the tile's colour (objects and
    doors hide the tile under them); the agent's cell is ``(agent, red, direction)`` as in
    minigrid's wrapper. ``image`` has shape ``(width, height, 3)`` in :func:`index_image_space`.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        base = env.unwrapped
        if not hasattr(base, "floor"):
            raise ConfigError(
                f"FullyObsFloorWrapper needs a BabyAI++ env (with a floor layer), got {type(base).__name__}; "
                "for other minigrid envs use minigrid.wrappers.FullyObsWrapper"
            )
        self.observation_space = spaces.Dict(
            {**env.observation_space.spaces, "image": index_image_space((base.width, base.height, 3))}
        )

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        base = self.unwrapped
        image = base.grid.encode()
        floor = base.floor
        shown = (floor != NO_TILE) & (image[..., 0] == EMPTY_IDX)
        image[shown] = np.stack([np.full(shown.sum(), FLOOR_IDX), floor[shown], np.zeros(shown.sum())], -1)
        x, y = (int(v) for v in base.agent_pos)
        image[x, y] = (OBJECT_TO_IDX["agent"], COLOR_TO_IDX["red"], base.agent_dir)
        return {**observation, "image": image}


#: minigrid wrappers that rebuild the image from ``env.grid`` alone, dropping the floor layer, and
#: what to use instead on a BabyAI++ env.
FLOORLESS_MINIGRID_WRAPPERS = {
    "FullyObsWrapper": "babyaipp.envs.wrappers.FullyObsFloorWrapper",
    "SymbolicObsWrapper": "babyaipp.envs.wrappers.FullyObsFloorWrapper (cell encodings of the whole grid)",
    "ViewSizeWrapper": "the env's own keyword, gym.make(id, agent_view_size=N)",
}


def refuse_floorless_minigrid_wrappers() -> None:
    """Make minigrid's floorless wrappers (:data:`FLOORLESS_MINIGRID_WRAPPERS`) refuse BabyAI++ envs.

    They would silently show a floor without its tiles, so a policy trained on them never sees
    the dynamics. Their ``__init__`` gains one check; other minigrid envs are unaffected. Done
    once, when ``babyaipp`` registers its ids.
    """
    import minigrid.wrappers

    for name, instead in FLOORLESS_MINIGRID_WRAPPERS.items():
        cls = getattr(minigrid.wrappers, name, None)
        if cls is None or getattr(cls.__init__, "_refuses_babyaipp", False):
            continue
        cls.__init__ = _refusing_init(cls.__init__, name, instead)


def _refusing_init(original: Any, name: str, instead: str) -> Any:
    @functools.wraps(original)
    def __init__(self: Any, env: gym.Env, *args: Any, **kwargs: Any) -> None:
        if hasattr(env.unwrapped, "floor") and hasattr(env.unwrapped, "dynamics"):
            raise ConfigError(
                f"minigrid's {name} drops BabyAI++'s floor tiles (the episode's dynamics) from the "
                f"observation; use {instead}"
            )
        original(self, env, *args, **kwargs)

    __init__._refuses_babyaipp = True  # type: ignore[attr-defined]
    return __init__
