"""Tests of the Forsaken module: the membership-inference scores, the generator, the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babyaipp.errors import ConfigError
from babyaipp.memorization import forsaken as fs
from babyaipp.memorization.base import run_module


def test_mia_on_separable_losses_is_perfect() -> None:
    members, nonmembers = np.array([0.01, 0.02, 0.03]), np.array([0.5, 0.9, 2.0])
    assert fs.mia_auc(members, nonmembers) == pytest.approx(1.0)
    assert fs.mia_balanced_accuracy(members, nonmembers) == pytest.approx(1.0)


def test_mia_on_identical_distributions_is_chance() -> None:
    rng = np.random.default_rng(0)
    members, nonmembers = rng.exponential(size=4000), rng.exponential(size=4000)
    assert fs.mia_auc(members, nonmembers) == pytest.approx(0.5, abs=0.02)
    assert fs.mia_auc(np.ones(5), np.ones(5)) == pytest.approx(0.5)  # ties count one half


def test_generator_update_has_the_model_shapes_and_starts_at_zero() -> None:
    torch.manual_seed(0)
    cfg = fs.ForsakenConfig(hidden_dim=16, generator_hidden=8, generator_steps=2, kl_weight=1.0)
    model = fs.make_mlp(cfg.hidden_dim)
    generator = fs.DummyGradientGenerator(model, cfg.generator_hidden, cfg, torch.Generator().manual_seed(0))
    x, y = torch.rand(20, 64), torch.randint(0, 10, (20,))
    update = generator.dummy_update(model, (x, y))
    assert [u.shape for u in update] == [p.shape for p in model.parameters()]
    assert all(float(u.abs().max()) == 0.0 for u in update)
    reference = (torch.rand(30, 64), torch.randint(0, 10, (30,)))
    before = generator.loss(model, (x, y), reference).item()
    generator.fit(model, (x, y), reference)
    assert generator.loss(model, (x, y), reference).item() < before  # training lowers its loss
    assert any(float(u.abs().max()) > 0.0 for u in generator.dummy_update(model, (x, y)))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_users", 1, r"n_users=1 is out of range; valid range: \[2, 100\]"),
        ("generator_lr", 0.0, r"generator_lr=0.0 is out of range; valid range: \(0.0, 1.0\]"),
        ("mia_after_max", 0.4, r"mia_after_max=0.4 is out of range; valid range: \[0.5, 1.0\]"),
        ("forget_user_size", 900, r"forget_user_size=900 is out of range; valid range: \[10, 600\]"),
        ("atypical_noise", -1.0, r"atypical_noise=-1.0 is out of range; valid range: \[0.0, 10.0\]"),
    ],
)
def test_bad_config_names_the_range(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fs.ForsakenConfig(**{field: value})


def test_quick_run_holds(tmp_path) -> None:
    result = run_module("forsaken", quick=True, seed=0, out=tmp_path)
    assert (tmp_path / "result.json").exists() and (tmp_path / "figure.png").exists()
    models = result.metrics["models"]
    assert models["before"]["mia_auc"] >= 0.7  # the user's data is clearly memorized first
    assert abs(models["retrained"]["mia_auc"] - 0.5) < 0.05  # a model that never saw it: chance
    assert abs(models["forsaken"]["mia_auc"] - models["retrained"]["mia_auc"]) < 0.06
    assert abs(models["forsaken"]["test_accuracy"] - models["retrained"]["test_accuracy"]) <= 0.03
    # The attack the generator was not trained against sees a clear drop too, and simply dropping the
    # user does not give it.
    assert models["before"]["lira_auc"] >= 0.7
    assert models["forsaken"]["lira_auc"] < models["dropped"]["lira_auc"] - 0.15
    assert result.check_details["forsaken_beats_dropping_the_user"]["held"]


def test_claim_fails_when_the_user_does_nothing() -> None:
    """Ablation: the withdrawing user submits a zero update; the model keeps remembering its data."""
    result = run_module("forsaken", quick=True, seed=0, overrides={"use_generator": False})
    details = result.check_details
    assert not details["mia_near_chance_after_forsaken"]["held"]
    assert not details["lira_near_chance_after_forsaken"]["held"]
    assert not result.held


def test_lira_scores_are_zero_for_a_model_like_its_shadows() -> None:
    torch.manual_seed(0)
    model = fs.make_mlp(16)
    x, y = torch.randn(20, 64), torch.randint(0, 10, (20,))
    np.testing.assert_allclose(fs.lira_scores(model, [model, model], x, y), 0.0, atol=1e-12)
    logit = fs.true_class_logit(model, x, y)
    p = torch.softmax(model(x).double(), -1)[torch.arange(20), y].detach().numpy()
    np.testing.assert_allclose(logit, np.log(p) - np.log1p(-p), rtol=1e-9)


def test_split_is_disjoint_stratified_and_noisier_for_the_forgotten_user() -> None:
    cfg = fs.ForsakenConfig()
    data = fs.split_digits(cfg, np.random.default_rng(0))
    forget, nonmember = data.users[0], data.nonmember_eval
    sizes = [len(x) for x, _ in [*data.users, data.reference, nonmember, data.test]]
    assert sum(sizes) == 1797  # every digit used once
    # members and non-members have the same class mix (up to one example per class)
    assert np.abs(np.bincount(forget[1], minlength=10) - np.bincount(nonmember[1], minlength=10)).max() <= 1
    # the forgotten user's images are further from the clean digits than the others' (atypical noise)
    assert float(forget[0].std()) > float(data.users[1][0].std()) + 0.2
