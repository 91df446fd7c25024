"""Hyperparameters of the baseline models (:mod:`babyaipp.agents.models`): PPO and network settings
shared by every model, and each model's own, one dataclass each with a comment per field.

``babyaipp train --set KEY=VALUE`` and sweeps change these fields; :meth:`ModelConfig.from_dict`
checks them (a one-line error naming the bad key or value).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from babyaipp.errors import ConfigError, check_choice, check_range


@dataclass
class ModelConfig:
    """PPO and network hyperparameters shared by every model.

    The PPO values are BabyAI++'s (from BabyAI's ``train_rl.py``): lr 1e-4, gamma 0.99, GAE lambda
    0.99, clip 0.2, entropy 0.01, value coefficient 0.5, gradient clip 0.5, 4 epochs, Adam eps
    1e-5. Rollout and network sizes are ours, chosen for CPU speed (see the comments).
    """

    learning_rate: float = 1e-4
    gamma: float = 0.99
    gae_lambda: float = 0.99
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    n_epochs: int = 4
    adam_eps: float = 1e-5
    # BabyAI collects 40 frames x 64 processes per update with batch 1280; with the 8 CPU envs we
    # use, 128 steps x 8 envs = 1024 frames per update in 4 minibatches of 256 keeps a similar
    # number of gradient steps per frame while finishing an update every few seconds.
    n_steps: int = 128
    batch_size: int = 256
    # BabyAI uses 128-wide image and instruction encodings; half that is enough for 7x7 views and
    # a 50-word vocabulary and roughly halves the CPU time per frame.
    cell_embedding_dim: int = 16
    conv_channels: int = 32
    word_embedding_dim: int = 32
    text_hidden_dim: int = 64
    features_dim: int = 128
    head_hidden_dim: int = 64  # actor and critic MLPs after the extractor (BabyAI: 64)
    lstm_hidden_dim: int = 64  # --recurrent only (BabyAI's memory is 128 wide)

    def __post_init__(self) -> None:
        check_range("learning_rate", self.learning_rate, 0.0, 1.0, low_inclusive=False)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_range("clip_range", self.clip_range, 0.0, None, low_inclusive=False)
        check_range("ent_coef", self.ent_coef, 0.0, None)
        check_range("vf_coef", self.vf_coef, 0.0, None)
        check_range("max_grad_norm", self.max_grad_norm, 0.0, None, low_inclusive=False)
        check_range("adam_eps", self.adam_eps, 0.0, 1.0, low_inclusive=False)
        for name in (
            "n_epochs",
            "n_steps",
            "cell_embedding_dim",
            "conv_channels",
            "word_embedding_dim",
            "text_hidden_dim",
            "features_dim",
            "head_hidden_dim",
            "lstm_hidden_dim",
        ):
            check_range(name, getattr(self, name), 1, None)
        check_range("batch_size", self.batch_size, 2, None)

    #: Fields that shape the network (passed to the extractor); the rest configure PPO.
    ARCHITECTURE_FIELDS = (
        "cell_embedding_dim",
        "conv_channels",
        "word_embedding_dim",
        "text_hidden_dim",
        "features_dim",
    )

    def extractor_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.ARCHITECTURE_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a (possibly partial) dict, naming an unknown key and the valid ones."""
        valid = [f.name for f in fields(cls)]
        for key in values:
            if key not in valid:
                raise ConfigError(f"unknown hyperparameter {key!r} for {cls.__name__}; valid: {', '.join(valid)}")
        return cls(**values)


@dataclass
class ImageConfig(ModelConfig):
    """Image-only CNN: the shared defaults."""


@dataclass
class ConcatConfig(ModelConfig):
    """CNN + GRU text encodings, concatenated: the shared defaults."""


@dataclass
class FiLMConfig(ModelConfig):
    film_blocks: int = 2  # BabyAI's FiLM models use two FiLM-ed conv blocks

    ARCHITECTURE_FIELDS = (*ModelConfig.ARCHITECTURE_FIELDS, "film_blocks")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("film_blocks", self.film_blocks, 1, None)


#: Where the attention model's keys come from (see :class:`AttentionExtractor`).
ATTENTION_KEYS: tuple[str, ...] = ("sentence", "colour")
#: Where its values come from.
ATTENTION_VALUES: tuple[str, ...] = ("sentence", "properties")


@dataclass
class AttentionConfig(ModelConfig):
    attention_dim: int = 32  # query/key/value width; 32 keeps 49 cells x 4 slots cheap
    # "sentence": a cell's query (its conv features) meets a GRU encoding of the whole sentence.
    # "colour": the cell's colour meets the colour the sentence names, in one shared embedding.
    keys: str = "sentence"
    # "sentence": the value encodes the whole sentence; "properties": only the words after
    # "floors are", so what a property does is learnt apart from the colour it came with.
    values: str = "sentence"

    ARCHITECTURE_FIELDS = (*ModelConfig.ARCHITECTURE_FIELDS, "attention_dim", "keys", "values")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("attention_dim", self.attention_dim, 1, None)
        check_choice("attention keys", self.keys, ATTENTION_KEYS)
        check_choice("attention values", self.values, ATTENTION_VALUES)


__all__ = [
    "ATTENTION_KEYS",
    "ATTENTION_VALUES",
    "AttentionConfig",
    "ConcatConfig",
    "FiLMConfig",
    "ImageConfig",
    "ModelConfig",
]
