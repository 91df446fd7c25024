"""Tests of the kNN-LM module: the kNN distribution, interpolation, k/lambda validation, quick run."""

from __future__ import annotations

import numpy as np
import pytest

from babyaipp.errors import ConfigError
from babyaipp.memorization.base import run_module
from babyaipp.memorization.knn_lm import (
    Datastore,
    KnnLmConfig,
    interpolate,
    knn_distribution,
    knn_target_prob,
    tokenize,
)


def _small_store(seed: int = 0) -> tuple[Datastore, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((40, 6)).astype(np.float32)
    values = rng.integers(0, 7, 40)
    queries = rng.standard_normal((5, 6)).astype(np.float32)
    return Datastore(keys, values), keys, values, queries


def test_knn_distribution_sums_to_one_and_matches_brute_force() -> None:
    store, keys, values, queries = _small_store()
    k, temperature, vocab = 40, 2.0, 7  # k = all keys: p_kNN must equal a softmax over every key
    dist, vals = store.search(queries, k)
    probs = knn_distribution(dist, vals, vocab, temperature)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)

    q, kk = queries.astype(np.float64), keys.astype(np.float64)
    sq = ((q[:, None, :] - kk[None, :, :]) ** 2).sum(-1)
    w = np.exp(-sq / temperature)
    brute = np.stack([[w[i, values == y].sum() for y in range(vocab)] for i in range(len(q))])
    brute /= brute.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, brute, atol=1e-5)

    targets = np.arange(5) % vocab
    np.testing.assert_allclose(
        knn_target_prob(dist, vals, targets, temperature), probs[np.arange(5), targets], atol=1e-12
    )


def test_knn_restricted_to_k_nearest() -> None:
    store, keys, values, queries = _small_store(1)
    dist, vals = store.search(queries, 3)
    brute = ((queries[:, None, :] - keys[None]) ** 2).sum(-1)
    np.testing.assert_allclose(dist, np.sort(brute, axis=1)[:, :3], rtol=1e-4)
    probs = knn_distribution(dist, vals, 7)
    assert ((probs > 0).sum(axis=1) <= 3).all()


def test_interpolation_at_zero_is_the_lm() -> None:
    rng = np.random.default_rng(0)
    p_lm = rng.dirichlet(np.ones(9), size=4)
    p_knn = rng.dirichlet(np.ones(9), size=4)
    np.testing.assert_array_equal(interpolate(p_knn, p_lm, 0.0), p_lm)
    np.testing.assert_allclose(interpolate(p_knn, p_lm, 0.25).sum(axis=1), 1.0)


def test_bad_lambda_and_k_name_the_range() -> None:
    with pytest.raises(ConfigError, match=r"lam=1.5 is out of range; valid range: \[0.0, 1.0\]"):
        KnnLmConfig(lam=1.5)
    with pytest.raises(ConfigError, match=r"lambda=-0.1 is out of range; valid range: \[0.0, 1.0\]"):
        interpolate(np.ones(2), np.ones(2), -0.1)
    with pytest.raises(ConfigError, match=r"k=0 is out of range; valid range: \[1, inf\)"):
        KnnLmConfig(k=0)
    store, *_ = _small_store()
    with pytest.raises(ConfigError, match=r"k=41 is out of range; valid range: \[1, 40\]"):
        store.check_k(41)
    with pytest.raises(ConfigError, match=r"valid range: \[1, 40\]"):
        store.search(np.zeros((1, 6), dtype=np.float32), 100)


def test_tokenize_lowercases_and_splits_symbols() -> None:
    assert tokenize('The "while" x1 += 2') == ["the", '"', "while", '"', "x", "1", "+", "=", "2"]


def test_quick_run_holds(tmp_path) -> None:
    result = run_module("knn_lm", quick=True, seed=0, out=tmp_path)
    assert result.held, result.checks
    assert (tmp_path / "result.json").exists() and (tmp_path / "figure.png").exists()
    m = result.metrics
    assert m["in_domain"]["tuned_ppl"] < m["in_domain"]["lm_ppl"]
    assert m["domain_adaptation"]["tuned_lambda"] >= m["in_domain"]["tuned_lambda"]
    assert m["domain_adaptation"]["test_ppl_by_lambda"][0] == pytest.approx(m["domain_adaptation"]["lm_ppl"], rel=1e-4)
    assert m["train_unk_rate"] > 0  # the LM sees <unk> in training
    assert m["tokens"]["valid"] > 0 and m["tokens"]["test"] > 0 and m["tokens"]["domain_valid"] > 0


def test_claim_fails_with_a_shuffled_datastore() -> None:
    """Ablation: values permuted, so the neighbours carry no information about the next token."""
    result = run_module("knn_lm", quick=True, seed=0, overrides={"shuffle_values": True})
    details = result.check_details
    assert not details["in_domain_gain_on_test"]["held"]
    assert details["in_domain_gain_on_test"]["measured"] < 0.01
    assert not result.held
