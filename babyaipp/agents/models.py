"""Baseline feature extractors for BabyAI++ and their hyperparameters.

Every model reads the :class:`~babyaipp.envs.wrappers.TokenObsWrapper` observation
(``image`` 7x7x3 minigrid encoding, ``direction``, ``mission`` tokens, ``description`` as one
token row per sentence) and is a stable-baselines3 ``BaseFeaturesExtractor``, so it plugs into
``MultiInputPolicy`` (PPO) and ``MultiInputLstmPolicy`` (RecurrentPPO) unchanged.

Image input. The three image channels are *categorical* indices (object type, colour, state),
not intensities, so the policy is built with ``normalize_images=False`` and every cell's three
indices are embedded and summed (BabyAI's "bag of words" image embedding) instead of being divided
by 255 and fed to a CNN as if they were ordinal. Colour identity is what the text talks about
("green floors are traps"), and a learned vector per colour gives the text something to match;
a CNN over scaled integers would see "green" as a brightness between "red" and "purple". The
wrapper bounds the box by the index ranges, so SB3 neither divides it by 255 nor transposes it;
the extractors accept either layout (runs saved before stored it channels-first).

The four models differ only in how text meets the image:

* ``image``     -- CNN over the egocentric view; the text is ignored (the "does text help" floor).
* ``concat``    -- CNN features concatenated with GRU encodings of the mission and the description.
* ``film``      -- conv blocks modulated by FiLM layers conditioned on mission + description (BabyAI).
* ``attention`` -- the showcase, :class:`AttentionExtractor`: every grid cell attends over the
  description's sentences (plus a learned "no sentence" slot), so the dynamics a sentence states
  are written into the cells whose colour it names, *before* the convolutional head reasons about
  space. That per-cell grounding is what lets a policy act sensibly on a colour/property pair it
  never saw in training; ``extractor.last_attention`` exposes the weights.

CPU training throughput with the defaults, 8 envs, one torch thread, measured on a shared 2-core
machine (load average ~7, so treat as lower bounds)::

    OMP_NUM_THREADS=1 babyaipp train --model M --steps 8192 --n-envs 8 --device cpu --out DIR
    image 772, concat 470, film 416, attention 372 frames/s; attention --recurrent 96 frames/s
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from babyaipp.agents.model_blocks import CELL_VALUES, N_DIRECTIONS, CellEmbedding, FiLMBlock, TokenEncoder, conv3x3
from babyaipp.agents.model_config import (
    ATTENTION_KEYS,
    ATTENTION_VALUES,
    AttentionConfig,
    ConcatConfig,
    FiLMConfig,
    ImageConfig,
    ModelConfig,
)
from babyaipp.envs.text import VOCABULARY
from babyaipp.errors import check_choice


def _is_channels_last(image_space: spaces.Box) -> bool:
    shape = image_space.shape
    return shape[-1] == 3 and shape[0] != 3


# ---------------------------------------------------------------------------------------------
# Extractors
# ---------------------------------------------------------------------------------------------


class BabyAIExtractor(BaseFeaturesExtractor):
    """Shared parts: cell embedding + two conv layers (the image trunk), text encoders, output layer.

    Subclasses implement :meth:`fuse` (feature map and observations -> flat vector); the direction
    one-hot is appended to it before the final ``Linear -> ReLU`` to ``features_dim``, because the
    ``magic`` property pushes the agent along the absolute +y axis, which an egocentric view alone
    cannot tell apart from other directions.

    :meth:`text_features` is everything the forward computes from the mission and the description
    alone, one row per observation (:meth:`mission_features` from the mission tokens,
    :meth:`description_features` from the description's). A rollout's text changes only when an
    episode restarts, so a collector may keep these rows per env and pass them back as
    ``forward(observations, text)``, which then skips the text encoders; without ``text`` the forward
    computes them in place, in the same order as always.
    """

    uses_text = True

    def __init__(
        self,
        observation_space: spaces.Dict,
        cell_embedding_dim: int = 16,
        conv_channels: int = 32,
        word_embedding_dim: int = 32,
        text_hidden_dim: int = 64,
        features_dim: int = 128,
    ):
        super().__init__(observation_space, features_dim)
        image_space = observation_space["image"]
        self.channels_last = _is_channels_last(image_space)
        height, width = image_space.shape[:2] if self.channels_last else image_space.shape[1:]
        self.grid_cells = int(height * width)
        self.conv_channels = conv_channels
        self.trunk = nn.Sequential(
            CellEmbedding(cell_embedding_dim),
            conv3x3(cell_embedding_dim, conv_channels),
            nn.ReLU(),
            conv3x3(conv_channels, conv_channels),
            nn.ReLU(),
        )
        if self.uses_text:
            vocab = int(observation_space["mission"].high.max()) + 1
            self.word_embedding = nn.Embedding(vocab, word_embedding_dim, padding_idx=0)
            self.mission_encoder = TokenEncoder(self.word_embedding, text_hidden_dim)
            self.sentence_encoder = TokenEncoder(self.word_embedding, text_hidden_dim)
        self.text_hidden_dim = text_hidden_dim
        self.output = nn.Sequential(nn.Linear(self.fused_dim() + N_DIRECTIONS, features_dim), nn.ReLU())

    def fused_dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def fuse(
        self,
        feature_map: torch.Tensor,
        observations: dict[str, torch.Tensor],
        text: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def text_features(self, observations: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The forward's per-row features of ``observations["mission"]`` and ``["description"]``
        (tokens, any numeric dtype); empty for a model that ignores the text."""
        return {
            **self.mission_features(observations["mission"]),
            **self.description_features(observations["description"]),
        }

    def mission_features(self, mission: torch.Tensor) -> dict[str, torch.Tensor]:
        """The part of :meth:`text_features` that depends on the mission tokens only."""
        return {"mission": self.mission_encoder(mission)} if self.uses_text else {}

    def description_features(self, description: torch.Tensor) -> dict[str, torch.Tensor]:
        """The part of :meth:`text_features` that depends on the description tokens only."""
        return {"description": self.pooled_description(description)} if self.uses_text else {}

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return self.trunk(image)
        return self.trunk(image.permute(0, 2, 3, 1))

    def encode_sentences(self, description: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, L) tokens -> encodings (B, K, H) and a mask (B, K), True where a sentence exists."""
        b, k, length = description.shape
        encoded = self.sentence_encoder(description.reshape(b * k, length)).reshape(b, k, -1)
        return encoded, (description != 0).any(dim=-1)

    def pooled_description(self, description: torch.Tensor) -> torch.Tensor:
        """Mean of the sentence encodings (zeros when there is none): invariant to sentence order."""
        encoded, present = self.encode_sentences(description)
        weights = present.to(encoded.dtype).unsqueeze(-1)
        return (encoded * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def forward(
        self, observations: dict[str, torch.Tensor], text: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Features of ``observations``; ``text``: their rows of :meth:`text_features`, when the caller has them."""
        feature_map = self.image_features(observations["image"])
        fused = self.fuse(feature_map, observations, text)
        # One-hot of Discrete(4): (B, 4) from live envs, (B, 1, 4) from SB3's rollout buffer.
        direction = observations["direction"].float().reshape(fused.shape[0], -1)
        return self.output(torch.cat([fused, direction], dim=1))


class ImageExtractor(BabyAIExtractor):
    """CNN over the 7x7 view only; mission and description are ignored."""

    uses_text = False

    def fused_dim(self) -> int:
        return self.conv_channels * self.grid_cells

    def fuse(
        self,
        feature_map: torch.Tensor,
        observations: dict[str, torch.Tensor],
        text: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return feature_map.flatten(1)


class ConcatExtractor(BabyAIExtractor):
    """CNN features concatenated with the mission encoding and the mean sentence encoding."""

    def fused_dim(self) -> int:
        return self.conv_channels * self.grid_cells + 2 * self.text_hidden_dim

    def fuse(
        self,
        feature_map: torch.Tensor,
        observations: dict[str, torch.Tensor],
        text: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        text = self.text_features(observations) if text is None else text
        return torch.cat([feature_map.flatten(1), text["mission"], text["description"]], dim=1)


class FiLMExtractor(BabyAIExtractor):
    """BabyAI's FiLM: residual conv blocks modulated by the mission + description encoding."""

    def __init__(self, observation_space: spaces.Dict, film_blocks: int = 2, **kwargs: Any):
        super().__init__(observation_space, **kwargs)
        condition_dim = 2 * self.text_hidden_dim
        self.blocks = nn.ModuleList(FiLMBlock(self.conv_channels, condition_dim) for _ in range(film_blocks))

    def fused_dim(self) -> int:
        return self.conv_channels * self.grid_cells

    def fuse(
        self,
        feature_map: torch.Tensor,
        observations: dict[str, torch.Tensor],
        text: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        text = self.text_features(observations) if text is None else text
        condition = torch.cat([text["mission"], text["description"]], dim=1)
        x = feature_map
        for block in self.blocks:
            x = block(x, condition)
        return x.flatten(1)


class AttentionExtractor(BabyAIExtractor):
    """Per-cell attention over description sentences, fused into the feature map (the showcase).

    1. The image trunk gives a feature map ``(B, C, H, W)``; every cell's feature vector is a query.
    2. Every description sentence is GRU-encoded (padding masked) into a key and a value. A learned
       *null* key/value pair is appended, so a cell whose colour no sentence mentions (walls, the
       goal object, plain floor) can attend to "nothing" instead of being forced onto a sentence.
    3. Scaled dot-product attention over the ``K + 1`` slots per cell; rows of padding (absent
       sentences, e.g. ``text="partial"`` or ``"none"``) get ``-inf`` before the softmax, hence
       weight exactly 0. The weights are kept in :attr:`last_attention`, shape ``(B, H*W, K+1)``,
       null slot last.
    4. The attended text vector is concatenated to the cell's features and mixed by a 1x1 conv, so
       "this green cell is a trap" is a property of that cell before any spatial reasoning.
    5. A residual conv head, FiLM-conditioned on the separately encoded mission, then flattens to
       the features (the mission says *where to go*; the description says *what the floor does*).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        attention_dim: int = 32,
        keys: str = "sentence",
        values: str = "sentence",
        **kwargs: Any,
    ):
        super().__init__(observation_space, **kwargs)
        channels, hidden = self.conv_channels, self.text_hidden_dim
        self.attention_dim = attention_dim
        self.keys, self.values = (
            check_choice("attention keys", keys, ATTENTION_KEYS),
            check_choice("attention values", values, ATTENTION_VALUES),
        )
        if keys == "colour":
            # One embedding for a colour seen in a cell and a colour named in a sentence; the
            # subject word of every sentence ("green floors are ...") maps to its colour index,
            # any other word (lorem) to NO_COLOUR. A cell's scores: cosine with each sentence's
            # colour times a learned sharpness, and a learned score per cell type for the null slot.
            self.colour_embedding = nn.Embedding(CELL_VALUES, attention_dim)
            self.null_score = nn.Embedding(CELL_VALUES, 1)
            nn.init.zeros_(self.null_score.weight)
            self.sharpness = nn.Parameter(torch.tensor(5.0))
            self.register_buffer("word_colour", _word_colour_table(), persistent=False)
        self.query = nn.Conv2d(channels, attention_dim, kernel_size=1)
        self.key = nn.Linear(hidden, attention_dim)
        self.value = nn.Linear(hidden, attention_dim)
        self.null_key = nn.Parameter(torch.zeros(attention_dim))
        self.null_value = nn.Parameter(torch.zeros(attention_dim))
        self.mix = nn.Sequential(nn.Conv2d(channels + attention_dim, channels, kernel_size=1), nn.ReLU())
        self.head = FiLMBlock(channels, hidden)
        self.last_attention: torch.Tensor | None = None

    def fused_dim(self) -> int:
        return self.conv_channels * self.grid_cells

    def description_features(self, description: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sentences' mask ``present`` (B, K), ``values`` (B, K, A) and keys (``keys``, or
        ``sentence_colour`` with ``keys="colour"``); the mission's is its encoding (B, hidden)."""
        sentences, present = self.encode_sentences(description)
        text = {"present": present, "values": self.sentence_values(description, sentences)}
        if self.keys == "colour":
            text["sentence_colour"] = self.sentence_colour(description)
        else:
            text["keys"] = self.key(sentences)
        return text

    def sentence_colour(self, description: torch.Tensor) -> torch.Tensor:
        """The unit colour embedding of the colour each sentence names, ``(B, K, A)`` (``keys="colour"``)."""
        named = self.word_colour[description[..., 0].long().clamp(0, len(self.word_colour) - 1)]
        return nn.functional.normalize(self.colour_embedding(named), dim=-1)

    def attend(
        self,
        feature_map: torch.Tensor,
        description: torch.Tensor,
        image: torch.Tensor | None = None,
        text: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attended text per cell ``(B, A, H, W)`` and the weights ``(B, H*W, K+1)``.

        ``image`` (channels last) is needed with ``keys="colour"``, whose queries are the cells' colours;
        ``text``: the rows' :meth:`text_features`, else the sentences are encoded here.
        """
        b, _, h, w = feature_map.shape
        if text is None:
            sentences, present = self.encode_sentences(description)  # (B, K, hidden), (B, K)
            values = self.sentence_values(description, sentences)
        else:
            present, values = text["present"], text["values"]
        values = torch.cat([values, self.null_value.expand(b, 1, -1)], dim=1)
        available = torch.cat([present, present.new_ones((b, 1))], dim=1)  # the null slot always is
        if self.keys == "colour":
            cells = image.long().clamp(0, CELL_VALUES - 1).reshape(b, h * w, 3)  # (B, HW, 3): x-major
            cell_colour = nn.functional.normalize(self.colour_embedding(cells[..., 1]), dim=-1)  # (B, HW, A)
            sentence_colour = self.sentence_colour(description) if text is None else text["sentence_colour"]
            scores = self.sharpness * cell_colour @ sentence_colour.transpose(1, 2)  # (B, HW, K)
            scores = torch.cat([scores, self.null_score(cells[..., 0])], dim=2)  # (B, HW, K+1)
        else:
            queries = self.query(feature_map).flatten(2).transpose(1, 2)  # (B, HW, A)
            keys = self.key(sentences) if text is None else text["keys"]
            keys = torch.cat([keys, self.null_key.expand(b, 1, -1)], dim=1)  # (B, K+1, A)
            scores = queries @ keys.transpose(1, 2) / math.sqrt(self.attention_dim)  # (B, HW, K+1)
        scores = scores.masked_fill(~available.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        attended = (weights @ values).transpose(1, 2).reshape(b, self.attention_dim, h, w)
        return attended, weights

    def sentence_values(self, description: torch.Tensor, sentences: torch.Tensor | None = None) -> torch.Tensor:
        """What each sentence contributes to the cells attending to it, ``(B, K, A)``.

        ``sentences``: the rows' encodings when the caller already has them (``values="sentence"``).
        """
        if self.values == "properties":  # the words after "<colour> floors are"
            sentences, _ = self.encode_sentences(description[..., PROPERTY_WORDS_START:])
        elif sentences is None:
            sentences, _ = self.encode_sentences(description)
        return self.value(sentences)

    def fuse(
        self,
        feature_map: torch.Tensor,
        observations: dict[str, torch.Tensor],
        text: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        image = observations["image"]
        image = image if self.channels_last else image.permute(0, 2, 3, 1)
        attended, weights = self.attend(feature_map, observations["description"], image, text)
        self.last_attention = weights.detach()
        x = self.mix(torch.cat([feature_map, attended], dim=1))
        mission = self.mission_encoder(observations["mission"]) if text is None else text["mission"]
        x = self.head(x, mission)
        return x.flatten(1)


#: Token position where a description sentence's property words start: "<colour> floors are ...".
PROPERTY_WORDS_START = 3
#: Colour index of a subject word that names no colour (a lorem word): its own learned embedding.
NO_COLOUR = CELL_VALUES - 1


def _word_colour_table() -> torch.Tensor:
    """Token id -> minigrid colour index of the colour word, :data:`NO_COLOUR` for other words."""
    from minigrid.core.constants import COLOR_TO_IDX

    return torch.tensor([COLOR_TO_IDX.get(word, NO_COLOUR) for word in VOCABULARY], dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


class ModelSpec(NamedTuple):
    extractor: type[BabyAIExtractor]
    config: type[ModelConfig]
    summary: str


MODELS: dict[str, ModelSpec] = {
    "image": ModelSpec(ImageExtractor, ImageConfig, "CNN over the egocentric view; text ignored"),
    "concat": ModelSpec(ConcatExtractor, ConcatConfig, "CNN features + GRU(mission) + mean GRU(sentences)"),
    "film": ModelSpec(FiLMExtractor, FiLMConfig, "conv blocks FiLM-ed by mission + description"),
    "attention": ModelSpec(AttentionExtractor, AttentionConfig, "per-cell attention over sentences + null slot"),
}


def model_spec(name: str) -> ModelSpec:
    """The extractor, config class and summary of model ``name`` (a one-line error naming the choices)."""
    return MODELS[check_choice("model", name, MODELS)]


def policy_kwargs(name: str, config: ModelConfig, recurrent: bool = False) -> dict[str, Any]:
    """``policy_kwargs`` for SB3: the extractor, raw (unnormalised) image indices, BabyAI's Adam eps."""
    spec = model_spec(name)
    kwargs: dict[str, Any] = {
        "features_extractor_class": spec.extractor,
        "features_extractor_kwargs": config.extractor_kwargs(),
        "normalize_images": False,
        "net_arch": {"pi": [config.head_hidden_dim], "vf": [config.head_hidden_dim]},
        "activation_fn": nn.Tanh,
        "optimizer_kwargs": {"eps": config.adam_eps},
    }
    if recurrent:
        kwargs["lstm_hidden_size"] = config.lstm_hidden_dim
    return kwargs


__all__ = [
    "MODELS",
    "AttentionExtractor",
    "BabyAIExtractor",
    "ConcatExtractor",
    "FiLMExtractor",
    "ImageExtractor",
    "ModelSpec",
    "model_spec",
    "policy_kwargs",
]
