"""The attention model's grounding options: colour keys and property-only values do what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babyaipp.agents.model_config import AttentionConfig
from babyaipp.agents.models import AttentionExtractor
from babyaipp.envs.registration import make_tokenized
from babyaipp.envs.text import tokenize_description
from babyaipp.envs.wrappers import MAX_SENTENCES, SENTENCE_LENGTH
from babyaipp.errors import InvalidChoiceError

ENV = "BabyAIPP/GoToRedBallDense-Easy-TargetPairOnly-v0"


def _extractor(**options):
    env = make_tokenized(ENV)
    torch.manual_seed(0)
    return env, AttentionExtractor(env.observation_space, **AttentionConfig(**options).extractor_kwargs())


def _batch(obs, description: str | None = None):
    t = {k: torch.as_tensor(np.asarray(v))[None] for k, v in obs.items()}
    if description is not None:
        t["description"] = torch.as_tensor(tokenize_description(description, MAX_SENTENCES, SENTENCE_LENGTH))[None]
    t["direction"] = torch.nn.functional.one_hot(t["direction"].long(), 4).float()
    return t


def _cells_of(image: np.ndarray, colour_idx: int) -> np.ndarray:
    return (image[..., 0] == 3) & (image[..., 1] == colour_idx)  # floor tiles of that colour


@pytest.mark.parametrize("order", ["green first", "blue first"])
def test_colour_keys_send_each_tile_to_the_sentence_naming_its_colour(order: str):
    env, ex = _extractor(keys="colour")
    obs, _ = env.reset(seed=1_000_003)
    text = "green floors are traps. blue floors are mirrored."
    if order == "blue first":
        text = "blue floors are mirrored. green floors are traps."
    ex(_batch(obs, text))
    weights = ex.last_attention[0].reshape(7, 7, -1).numpy()  # [x, y, slot]
    green_slot, blue_slot = (0, 1) if order == "green first" else (1, 0)
    green, blue = _cells_of(obs["image"], 1), _cells_of(obs["image"], 2)
    assert green.any() and blue.any()
    assert (weights[green][:, green_slot] > 0.8).all()
    assert (weights[blue][:, blue_slot] > 0.8).all()


def test_learned_sentence_keys_do_not_ground_by_construction():
    """The default keys: an untrained model spreads a tile's attention (the option above is what differs)."""
    env, ex = _extractor(keys="sentence")
    obs, _ = env.reset(seed=1_000_003)
    ex(_batch(obs, "green floors are traps. blue floors are mirrored."))
    weights = ex.last_attention[0].reshape(7, 7, -1).numpy()
    green = _cells_of(obs["image"], 1)
    assert not (weights[green][:, 0] > 0.8).all()


def test_lorem_sentences_name_no_colour():
    env, ex = _extractor(keys="colour")
    obs, _ = env.reset(seed=1_000_003)
    ex(_batch(obs, "lorem floors are ipsum. dolor floors are sit."))
    weights = ex.last_attention[0].reshape(7, 7, -1).numpy()
    green = _cells_of(obs["image"], 1)
    assert (weights[green][:, :2] < 0.8).all()


@pytest.mark.parametrize("values, same", [("properties", True), ("sentence", False)])
def test_property_values_do_not_depend_on_the_colour(values: str, same: bool):
    """'green floors are traps' and 'blue floors are traps' carry one value with values='properties'."""
    _, ex = _extractor(values=values)
    rows = [
        torch.as_tensor(tokenize_description(f"{c} floors are traps.", MAX_SENTENCES, SENTENCE_LENGTH))[None]
        for c in ("green", "blue")
    ]
    green, blue = (ex.sentence_values(r)[0, 0] for r in rows)
    assert torch.allclose(green, blue) == same


def test_bad_option_is_a_one_line_error():
    with pytest.raises(InvalidChoiceError, match="colour"):
        AttentionConfig(keys="color")


def test_configs_saved_before_the_options_load_with_the_old_behaviour():
    old = {k: v for k, v in AttentionConfig().to_dict().items() if k not in ("keys", "values")}
    assert AttentionConfig.from_dict(old).keys == "sentence"
