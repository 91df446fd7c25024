"""BabyAI++ environments: minigrid BabyAI levels whose floor tiles carry per-episode dynamics."""

from babyaipp.envs.dynamics import DIFFICULTIES, HELD_OUT_PAIRS, PROPERTIES, SPLITS
from babyaipp.envs.levels import TASKS
from babyaipp.envs.registration import ENV_IDS, env_id, make, parse_env_id, register_all, split_ids
from babyaipp.envs.text import TEXT_MODES

__all__ = [
    "DIFFICULTIES",
    "ENV_IDS",
    "HELD_OUT_PAIRS",
    "PROPERTIES",
    "SPLITS",
    "TASKS",
    "TEXT_MODES",
    "env_id",
    "make",
    "parse_env_id",
    "register_all",
    "split_ids",
]
