"""Baseline agents: feature extractors (``models``), PPO training (``training``) and evaluation.

Kept import-free so ``babyaipp --help`` does not load torch or stable-baselines3.
"""
