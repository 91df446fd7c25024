"""babyaipp: BabyAI++ environments, baseline agents and memorization benchmarks.

``import babyaipp`` registers every ``BabyAIPP/...`` id with Gymnasium, so ``gym.make`` works
directly, as does ``gym.make("babyaipp:BabyAIPP/...")`` and ``gym.register_envs(babyaipp)``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from babyaipp.envs.registration import register_all as _register_all  # noqa: E402

_register_all()
