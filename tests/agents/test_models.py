"""The feature extractors: shapes on real observations, text sensitivity, attention weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.utils import obs_as_tensor

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.agents.model_blocks import TokenEncoder
from babyaipp.agents.model_config import ModelConfig
from babyaipp.agents.models import MODELS, AttentionExtractor, policy_kwargs
from babyaipp.agents.training_setup import make_vec_env
from babyaipp.errors import ConfigError, InvalidChoiceError

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"


@pytest.fixture(scope="module")
def batch() -> tuple[spaces.Dict, dict[str, np.ndarray]]:
    """Observations of 6 real episodes (full text, so every description has sentences)."""
    vec = make_vec_env(ENV_ID, 6, seed=3, text="full")
    obs = vec.reset()
    space = vec.observation_space
    vec.close()
    return space, obs


def _channels_first(space: spaces.Dict) -> spaces.Dict:
    """The observation space as SB3 sees it after VecTransposeImage."""
    image = space["image"]
    return spaces.Dict({**space.spaces, "image": spaces.Box(0, 255, (3, *image.shape[:2]), dtype=np.uint8)})


def _features(extractor, space: spaces.Dict, obs: dict[str, np.ndarray]) -> torch.Tensor:
    if space["image"].shape[0] == 3:
        obs = {**obs, "image": np.transpose(obs["image"], (0, 3, 1, 2))}
    tensors = preprocess_obs(obs_as_tensor(obs, "cpu"), space, normalize_images=False)
    return extractor(tensors)


def _build(name: str, space: spaces.Dict, seed: int = 0):
    torch.manual_seed(seed)
    spec = MODELS[name]
    return spec.extractor(space, **spec.config().extractor_kwargs())


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", list(MODELS))
def test_forward_shapes_and_gradients(name, layout, batch):
    space, obs = batch
    space = space if layout == "channels_last" else _channels_first(space)
    extractor = _build(name, space)
    features = _features(extractor, space, obs)
    assert features.shape == (6, MODELS[name].config().features_dim) == (6, extractor.features_dim)
    assert torch.isfinite(features).all()
    features.sum().backward()
    trunk_grad = extractor.trunk[0].embedding.weight.grad
    assert trunk_grad is not None and trunk_grad.abs().sum() > 0


def test_both_image_layouts_give_the_same_features(batch):
    space, obs = batch
    a = _features(_build("attention", space), space, obs)
    b = _features(_build("attention", _channels_first(space)), _channels_first(space), obs)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", list(MODELS))
def test_text_reaches_the_features_except_for_image(name, batch):
    space, obs = batch
    extractor = _build(name, space)
    # FiLM starts as the identity modulation; nudge it so the text can show.
    for p in extractor.parameters():
        p.data.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    base = _features(extractor, space, obs)
    silent = _features(extractor, space, {**obs, "description": np.zeros_like(obs["description"])})
    if name == "image":
        torch.testing.assert_close(base, silent)
    else:
        assert (base - silent).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["concat", "film", "attention"])
def test_sentence_order_does_not_matter(name, batch):
    """Sentence order is shuffled per episode and carries no information; the models ignore it."""
    space, obs = batch
    extractor = _build(name, space)
    reversed_rows = obs["description"].copy()
    for row in reversed_rows:
        n = int((row != 0).any(axis=1).sum())
        row[:n] = row[:n][::-1].copy()
    assert not np.array_equal(reversed_rows, obs["description"])
    torch.testing.assert_close(
        _features(extractor, space, obs), _features(extractor, space, {**obs, "description": reversed_rows})
    )


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("image", {}),
        ("concat", {}),
        ("film", {}),
        ("attention", {}),
        ("attention", {"keys": "colour"}),
        ("attention", {"values": "properties"}),
    ],
)
def test_the_forward_given_its_own_text_features_is_the_forward_bit_for_bit(name, options, batch):
    """``forward(obs, text_features(obs))`` is ``forward(obs)``; the text features split by source."""
    space, obs = batch
    torch.manual_seed(0)
    spec = MODELS[name]
    extractor = spec.extractor(space, **{**spec.config().extractor_kwargs(), **options})
    for p in extractor.parameters():  # FiLM starts as the identity modulation; let the text show
        p.data.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    tensors = preprocess_obs(obs_as_tensor(obs, "cpu"), space, normalize_images=False)
    with torch.no_grad():
        features = extractor(tensors)
        text = extractor.text_features(tensors)
        assert torch.equal(extractor(tensors, text), features)
        by_source = {
            **extractor.mission_features(tensors["mission"]),
            **extractor.description_features(tensors["description"]),
        }
        assert by_source.keys() == text.keys() and all(torch.equal(by_source[k], text[k]) for k in text)
        if name == "image":
            assert text == {}
            return
        assert all(value.shape[0] == 6 for value in text.values()), "one row per observation"
        # The forward reads the features it is given: another env's text gives other features.
        assert not torch.equal(tensors["description"], tensors["description"].roll(1, 0))
        moved = extractor(tensors, {k: v.roll(1, 0) for k, v in text.items()})
        assert (moved - features).abs().max() > 1e-4


def test_attention_weights_sum_to_one_and_skip_padding(batch):
    space, obs = batch
    extractor = _build("attention", space)
    assert isinstance(extractor, AttentionExtractor)
    description = obs["description"].copy()
    k = description.shape[1]
    description[0, 1:] = 0  # one sentence, the rest padding
    description[1, :] = 0  # no sentence at all
    present = torch.as_tensor((description != 0).any(axis=-1))  # (B, K)
    assert present[2:].any(), "the other rows keep their sentences (Easy: 2 colours of 3 slots)"
    _features(extractor, space, {**obs, "description": description})
    weights = extractor.last_attention
    assert weights.shape == (6, 49, k + 1)
    torch.testing.assert_close(weights.sum(-1), torch.ones(6, 49))
    sentence_weights = weights[..., :k]  # (B, 49, K)
    absent = ~present.unsqueeze(1).expand_as(sentence_weights)
    assert (sentence_weights[absent] == 0).all()  # padded sentences get exactly zero weight
    assert (sentence_weights[~absent] > 0).all()  # real sentences are reachable
    assert (weights[..., k] > 0).all()  # so is the null slot
    torch.testing.assert_close(weights[1, :, k], torch.ones(49))  # no sentence: all on the null slot


def test_token_encoder_ignores_padding():
    torch.manual_seed(0)
    encoder = TokenEncoder(torch.nn.Embedding(10, 4, padding_idx=0), hidden_dim=5)
    tokens = torch.tensor([[3, 4, 5, 0, 0], [3, 4, 5, 0, 0], [0, 0, 0, 0, 0], [7, 0, 0, 0, 0]])
    out = encoder(tokens)
    direct, _ = encoder.gru(encoder.embedding(torch.tensor([[3, 4, 5]])))
    torch.testing.assert_close(out[0], direct[0, -1])
    torch.testing.assert_close(out[0], out[1])
    assert (out[2] == 0).all()
    single, _ = encoder.gru(encoder.embedding(torch.tensor([[7]])))
    torch.testing.assert_close(out[3], single[0, -1])


def test_token_encoder_encodes_each_distinct_row_once_with_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    encoder = TokenEncoder(torch.nn.Embedding(10, 4, padding_idx=0), hidden_dim=5)
    rows = torch.tensor([[3, 4, 5, 0], [7, 0, 0, 0], [0, 0, 0, 0], [2, 9, 0, 0]])
    tokens = rows[torch.randint(4, (64,))]
    calls = []
    encoder.gru.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    deduplicated = encoder(tokens)
    assert calls == [4]  # one GRU pass over the 4 distinct rows, not 64
    direct = encoder.encode_rows(tokens)
    torch.testing.assert_close(deduplicated, direct)
    grads = []
    for out in (deduplicated, direct):
        encoder.zero_grad()
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([p.grad.clone() for p in encoder.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_token_encoder_gradients_are_deterministic_with_several_threads():
    """Same batch, same gradients, bit for bit, with 2 CPU threads (indexing's backward was not)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        encoder = TokenEncoder(torch.nn.Embedding(20, 8, padding_idx=0), hidden_dim=16)
        tokens = torch.randint(1, 20, (6, 5))[torch.randint(6, (4096,))]
        weights = torch.randn(4096, 16)

        def gradients() -> list[torch.Tensor]:
            encoder.zero_grad()
            (encoder(tokens) * weights).sum().backward()
            return [p.grad.clone() for p in encoder.parameters()]

        first = gradients()
        for _ in range(10):
            assert all(torch.equal(a, b) for a, b in zip(first, gradients()))
    finally:
        torch.set_num_threads(threads)


def test_distinct_rows_partitions_rows_as_unique_does():
    from babyaipp.agents.model_blocks import distinct_rows

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 3, (500, 6), generator=generator)  # many repeats, some all-zero rows
    first, inverse = distinct_rows(tokens)
    unique, want = torch.unique(tokens, dim=0, return_inverse=True)
    assert len(first) == len(unique)
    assert torch.equal(tokens[first][inverse], tokens)  # every row maps to an identical representative
    assert torch.equal(want[first][inverse], want)  # and ids agree with unique's partition


def test_configs_validate_and_name_the_bad_value():
    with pytest.raises(ConfigError, match="learning_rate"):
        MODELS["image"].config(learning_rate=0.0)
    with pytest.raises(ConfigError, match="gamma"):
        MODELS["film"].config(gamma=1.5)
    with pytest.raises(ConfigError, match="attention_dim"):
        MODELS["attention"].config(attention_dim=0)
    with pytest.raises(ConfigError, match="unknown hyperparameter 'lr'.*learning_rate"):
        MODELS["concat"].config.from_dict({"lr": 1e-3})
    with pytest.raises(InvalidChoiceError, match="attention"):
        policy_kwargs("transformer", ModelConfig())


def test_defaults_are_babyaipp_ppo_values():
    for spec in MODELS.values():
        c = spec.config()
        assert (c.learning_rate, c.gamma, c.gae_lambda, c.clip_range) == (1e-4, 0.99, 0.99, 0.2)
        assert (c.ent_coef, c.vf_coef, c.max_grad_norm, c.n_epochs) == (0.01, 0.5, 0.5, 4)
        kwargs = policy_kwargs("film", c)
        assert kwargs["normalize_images"] is False
