"""Action logits and values of an SB3 policy, with gradients, for a batch of steps or of sequences.

SB3's ``evaluate_actions`` returns log-probabilities of given actions through a distribution
object; behaviour cloning (:mod:`babyaipp.agents.imitation`) needs the logits themselves (for the
cross-entropy and the argmax accuracy) and, for a recurrent policy, whole sequences run from a zero
LSTM state. How to reach the logits through either kind of policy is its own concept, apart from
the training loop that uses it.
"""

from __future__ import annotations

from typing import Any

import torch


def _heads(policy: Any, latent_pi: torch.Tensor, latent_vf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = policy.action_net(policy.mlp_extractor.forward_actor(latent_pi))
    values = policy.value_net(policy.mlp_extractor.forward_critic(latent_vf)).flatten()
    return logits, values


def _split_features(policy: Any, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    features = policy.extract_features(obs)
    return (features, features) if policy.share_features_extractor else features


def forward_steps(policy: Any, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Action logits and values of a feed-forward SB3 policy (what ``evaluate_actions`` computes)."""
    pi_features, vf_features = _split_features(policy, obs)
    return _heads(policy, pi_features, vf_features)


def forward_sequences(
    policy: Any, obs: dict[str, torch.Tensor], n_sequences: int, episode_starts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and values of a RecurrentPPO policy over ``n_sequences`` sequences laid out
    sequence-major (all steps of sequence 0, then sequence 1, ...), from zero LSTM states."""
    from sb3_contrib.common.recurrent.type_aliases import RNNStates

    def zeros(lstm: Any) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (lstm.num_layers, n_sequences, lstm.hidden_size)
        return torch.zeros(shape, device=policy.device), torch.zeros(shape, device=policy.device)

    states = RNNStates(zeros(policy.lstm_actor), zeros(policy.lstm_critic or policy.lstm_actor))
    pi_features, vf_features = _split_features(policy, obs)
    latent_pi, _ = policy._process_sequence(pi_features, states.pi, episode_starts, policy.lstm_actor)
    if policy.lstm_critic is not None:
        latent_vf, _ = policy._process_sequence(vf_features, states.vf, episode_starts, policy.lstm_critic)
    elif policy.shared_lstm:
        latent_vf = latent_pi.detach()
    else:
        latent_vf = policy.critic(vf_features)
    return _heads(policy, latent_pi, latent_vf)


__all__ = ["forward_sequences", "forward_steps"]
