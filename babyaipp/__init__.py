"""babyaipp: BabyAI++ environments, baseline agents and memorization benchmarks.

``import babyaipp`` registers every ``BabyAIPP/...`` id with Gymnasium.
"""

from __future__ import annotations

__version__ = "0.1.0"
