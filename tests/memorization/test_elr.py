"""Tests of the ELR module: noise injection, the target update, the loss, and a quick run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from babyaipp.errors import ConfigError
from babyaipp.memorization import elr
from babyaipp.memorization.base import run_module


def test_target_update_on_a_hand_made_tensor() -> None:
    targets = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    probs = torch.tensor([[0.2, 0.2, 0.4], [0.1, 0.6, 0.3]], requires_grad=True)  # row 0 sums to 0.8
    index = torch.tensor([0, 2])
    new = elr.update_targets(targets, index, probs, beta=0.7)
    expected = torch.tensor(
        [[0.7 * 0.5 + 0.3 * 0.25, 0.7 * 0.5 + 0.3 * 0.25, 0.3 * 0.5], [0.7 * 1.0 + 0.3 * 0.1, 0.3 * 0.6, 0.3 * 0.3]]
    )
    torch.testing.assert_close(new, expected)
    torch.testing.assert_close(targets[index], expected)
    torch.testing.assert_close(targets[1], torch.zeros(3))  # rows not in the batch are untouched
    assert not targets.requires_grad
    torch.testing.assert_close(new.sum(1), torch.ones(2))


def test_elr_loss_is_ce_plus_the_regulariser() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 10, requires_grad=True)
    labels = torch.tensor([1, 2, 3, 4])
    targets = torch.full((6, 10), 0.1)
    index = torch.tensor([5, 0, 2, 3])
    loss = elr.elr_loss(logits, labels, targets, index, lam=3.0, beta=0.7)
    probs = torch.softmax(logits, 1).clamp(elr.PROB_CLAMP, 1 - elr.PROB_CLAMP)
    t = targets[index]  # already updated by elr_loss, which updates before computing the term
    regulariser = torch.log(1 - (t * probs).sum(1)).mean()
    expected = torch.nn.functional.cross_entropy(logits, labels) + 3.0 * regulariser
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_corrupt_labels_changes_exactly_the_requested_fraction() -> None:
    labels = np.repeat(np.arange(10), 50)
    noisy = elr.corrupt_labels(labels, 0.4, 10, np.random.default_rng(0))
    assert int((noisy != labels).sum()) == 200
    assert set(np.unique(noisy)) == set(range(10))


def test_quick_run_holds(tmp_path) -> None:
    result = run_module("elr", quick=True, seed=0, out=tmp_path)
    assert result.held, result.checks
    summary = result.metrics["summary"]
    assert summary["elr"]["final_test_acc"] > 0.85
    assert summary["ce"]["final_wrong_fitted"] > 0.8
    assert summary["ce"]["peak_epoch"] < len(result.metrics["epochs"]) - 1
    assert result.metrics["n_wrong_labels"] == round(0.4 * result.metrics["n_train"])
    assert (tmp_path / "figure.png").stat().st_size > 0
    assert json.loads((tmp_path / "result.json").read_text())["name"] == "elr"


def test_claim_fails_without_the_regulariser() -> None:
    """Ablation: lam=0 makes ELR plain cross-entropy; it then memorises the wrong labels as CE does."""
    result = run_module("elr", quick=True, seed=0, overrides={"lam": 0.0})
    details = result.check_details
    assert not details["elr_beats_ce_on_clean_test"]["held"]
    assert not details["elr_fits_under_half_the_wrong_labels"]["held"]
    assert details["elr_fits_under_half_the_wrong_labels"]["measured"] > 0.8
    assert not result.held


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [("beta", 1.0, "[0.0, 1.0)"), ("noise_rate", -0.1, "[0.0, 0.9)"), ("lam", -1.0, "[0.0, inf)")],
)
def test_bad_hyperparameter_names_the_range(field: str, value: float, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        elr.ELRConfig(**{field: value})
    assert field in str(info.value) and f"valid range: {shown}" in str(info.value)
