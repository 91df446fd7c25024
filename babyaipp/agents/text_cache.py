"""Every env's text features kept across a rollout's steps, so the text encoders run only on new text.

An env's mission and description change only when its episode restarts, yet the policy's forward
re-encodes them at every step. The device trainer's collection (:mod:`babyaipp.agents.device_ppo`)
asks a :class:`TextCache` instead; it lives here because what it keeps (tokens, a table of the
texts seen, the features of every env) is its own bookkeeping, apart from the PPO loop.
"""

from __future__ import annotations

import torch
from torch import nn

from babyaipp.agents.model_blocks import distinct_rows


class TextCache:
    """Every env's text features (the extractor's :meth:`~babyaipp.agents.models.BabyAIExtractor.text_features`)
    beside the tokens they were computed from, for one set of weights: one rollout.

    Why: the forward at the rollout's small batch spent about a fifth of collection re-encoding
    mission and description tokens that change only when an episode restarts, and a level's text
    is mostly one already seen (a task has few missions, a split few sentences). A lookup compares
    every env's tokens with the ones its features came from; a row that changed takes the
    features of the same tokens from a table of the texts seen this rollout, and only a text new
    to the rollout is encoded. Comparing tokens needs no restart mask and stays right after a
    restore or anything else that replaces an observation. The first lookup's features are the
    uncached forward's bit for bit; a text encoded later, in a smaller batch, equals the uncached
    forward's to float rounding (about 1e-8: the encoders' matrix products see fewer rows). Built
    from the observation, never saved.
    """

    def __init__(self, extractor: nn.Module, obs: dict[str, torch.Tensor]):
        self.encoders = {"mission": extractor.mission_features, "description": extractor.description_features}
        self.tokens: dict[str, torch.Tensor] = {}  # source -> every env's tokens (N, ...)
        self.seen: dict[str, torch.Tensor] = {}  # source -> the distinct token rows seen (T, ...)
        self.table: dict[str, dict[str, torch.Tensor]] = {}  # source -> feature name -> (T, ...)
        self.features: dict[str, torch.Tensor] = {}  # feature name -> every env's rows (N, ...)
        for source, encode in self.encoders.items():
            tokens = obs[source]
            fresh = encode(tokens)  # the whole batch, as the uncached forward encodes it
            first, _ = distinct_rows(tokens.flatten(1))
            self.tokens[source] = tokens.clone()
            self.seen[source] = tokens[first]
            self.table[source] = {name: value[first] for name, value in fresh.items()}
            self.features.update(fresh)

    def lookup(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The text features of ``obs``, an observation of every env."""
        changed = {s: (obs[s] != self.tokens[s]).flatten(1).any(dim=1) for s in self.encoders}
        if bool(torch.stack(list(changed.values())).any()):
            for source, mask in changed.items():
                index = mask.nonzero().squeeze(1)
                if index.numel():
                    self._refresh(source, obs[source][index], index)
        return self.features

    def _refresh(self, source: str, tokens: torch.Tensor, envs: torch.Tensor) -> None:
        """Give envs ``envs`` the features of their new ``tokens``, encoding the texts not seen yet."""
        seen = self.seen[source]
        same = (tokens.unsqueeze(1) == seen.unsqueeze(0)).flatten(2).all(dim=2)  # (rows, seen)
        slot = same.to(torch.uint8).argmax(dim=1)
        unseen = (~same.any(dim=1)).nonzero().squeeze(1)
        if unseen.numel():
            fresh = self.encoders[source](tokens[unseen])
            slot[unseen] = torch.arange(seen.shape[0], seen.shape[0] + unseen.numel(), device=slot.device)
            self.seen[source] = torch.cat([seen, tokens[unseen]])
            for name, value in fresh.items():
                self.table[source][name] = torch.cat([self.table[source][name], value])
        self.tokens[source][envs] = tokens
        for name, value in self.table[source].items():
            self.features[name][envs] = value[slot]


__all__ = ["TextCache"]
