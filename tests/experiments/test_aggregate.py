"""Aggregation of a sweep: IQM and stratified-bootstrap intervals on hand-made numbers, gaps paired by seed,
per-held-out-pair success, learning-curve bands, and the files written from a hand-made sweep directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from babyaipp.errors import CheckpointError, ConfigError
from babyaipp.experiments import aggregate as agg
from babyaipp.experiments.bootstrap import BootstrapOptions, bootstrap_mean_band, iqm, stratified_bootstrap_ci
from babyaipp.experiments.plots import write_figures

ENV = "BabyAIPP/GoToRedBall-Easy-Train-v0"


# --------------------------------------------------------------------------- statistics on hand-made numbers
def test_identical_seeds_give_a_zero_width_interval():
    est = stratified_bootstrap_ci([0.7, 0.7, 0.7, 0.7], reps=500)
    assert est.point == pytest.approx(0.7)
    assert est.low == pytest.approx(0.7) and est.high == pytest.approx(0.7)
    single = stratified_bootstrap_ci([0.3], reps=100)
    assert (single.low, single.point, single.high, single.n) == (pytest.approx(0.3),) * 3 + (1,)


def test_known_iqm_and_that_three_seeds_trim_nothing():
    assert iqm([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2.5)  # 1 and 4 trimmed
    assert iqm([0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.9, 1.0]) == pytest.approx(0.25)  # middle four
    assert iqm([0.0, 0.5, 1.0]) == pytest.approx(np.mean([0.0, 0.5, 1.0]))
    assert iqm([0.0, 0.1, 1.0]) == pytest.approx(np.mean([0.0, 0.1, 1.0]))  # an outlier is not trimmed
    assert stratified_bootstrap_ci([1.0, 2.0, 3.0, 4.0], reps=10).point == pytest.approx(2.5)


def test_interval_covers_the_point_is_reproducible_and_shrinks_with_agreeing_seeds():
    spread = np.random.default_rng(5).random(12).tolist()  # many values: percentiles fall between atoms
    a = stratified_bootstrap_ci(spread, reps=4000, seed=3)
    assert a == stratified_bootstrap_ci(spread, reps=4000, seed=3)
    assert a != stratified_bootstrap_ci(spread, reps=4000, seed=4)
    assert min(spread) - 1e-9 <= a.low < a.point < a.high <= max(spread) + 1e-9
    tight = stratified_bootstrap_ci([0.5 + 0.01 * (v - 0.5) for v in spread], reps=4000, seed=3)
    assert tight.high - tight.low < (a.high - a.low) / 10


def test_bootstrap_resamples_runs_within_each_task():
    # Task 0 is the same on every run: resampling runs within tasks cannot move its contribution,
    # so the mean over (runs, tasks) only varies through task 1: half of task 1's own interval.
    scores = np.array([[0.5, 0.0], [0.5, 1.0], [0.5, 0.0], [0.5, 1.0]])
    both = stratified_bootstrap_ci(scores, "mean", reps=4000, seed=0)
    task1 = stratified_bootstrap_ci(scores[:, 1], "mean", reps=4000, seed=0)
    assert both.point == pytest.approx(0.5)
    assert both.high - both.low == pytest.approx((task1.high - task1.low) / 2, abs=0.02)


def test_bad_bootstrap_settings_name_the_range():
    with pytest.raises(ConfigError, match=r"reps=0 .*valid range"):
        stratified_bootstrap_ci([0.1, 0.2], reps=0)
    with pytest.raises(ConfigError, match=r"confidence=1\.5"):
        BootstrapOptions(confidence=1.5)


def test_intervals_match_rliable_when_its_library_imports(monkeypatch):
    """rliable.library (via arch) does not import next to pandas 3; with pandas' old decorator
    signature restored for the import, rliable's own intervals must equal ours (seeded alike)."""
    import pandas.util._decorators as decorators

    original = decorators.deprecate_kwarg

    def old_signature(*args, **kwargs):  # arch 7 calls deprecate_kwarg(old_name, new_name)
        if args and isinstance(args[0], str):
            return original(FutureWarning, *args, **kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(decorators, "deprecate_kwarg", old_signature)
    try:
        from rliable import library, metrics
    except Exception as err:  # noqa: BLE001 - another arch/pandas combination: nothing to compare with
        pytest.skip(f"rliable.library does not import here: {err}")
    scores = np.random.default_rng(1).random((5, 3))
    ours = stratified_bootstrap_ci(scores, reps=5_000, seed=0)
    state = np.random.get_state()
    try:
        np.random.seed(0)  # rliable's StratifiedBootstrap draws indices from the global RNG
        points, intervals = library.get_interval_estimates(
            {"x": scores}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=5_000
        )
    finally:
        np.random.set_state(state)
    assert ours.point == pytest.approx(float(points["x"][0]))
    assert [ours.low, ours.high] == pytest.approx(intervals["x"].ravel().tolist(), abs=0.02)


def test_mean_band_is_zero_width_for_identical_curves_and_covers_the_mean():
    same = np.tile(np.linspace(0, 1, 5), (3, 1))
    mean, low, high = bootstrap_mean_band(same, reps=200)
    assert np.allclose(low, mean) and np.allclose(high, mean)
    spread = np.array([[0.0, 0.2, 0.4], [0.2, 0.6, 1.0], [0.1, 0.1, 0.1]])
    mean, low, high = bootstrap_mean_band(spread, reps=500)
    assert np.all(low <= mean) and np.all(mean <= high) and np.all(high - low > 0)


# --------------------------------------------------------------------------- a group of seeds
def _results(train: float, test: float, tpo: float, pairs: dict[str, tuple[int, int]] | None = None) -> dict:
    """A results.json of 100 episodes per split; ``pairs`` = pair -> (successes, episodes) on TargetPairOnly."""

    def split(rate: float, per_pair: dict | None = None) -> dict:
        groups = {
            name: {"episodes": n, "successes": k, "success_rate": k / n, "success_se": 0.0}
            for name, (k, n) in (per_pair or {}).items()
        }
        return {"success_rate": rate, "success_se": 0.0, "episodes": 100, "per_held_out_pair": groups}

    return {
        "env_id": ENV,
        "actions": "sampled from the policy (torch seeded with 1000000, n_envs=32)",
        "splits": {"Train": split(train), "Test": split(test), "TargetPairOnly": split(tpo, pairs)},
    }


def test_group_summary_pairs_the_gap_by_seed_and_pools_held_out_pairs():
    per_seed = {
        0: _results(0.9, 0.6, 0.5, {"blue-slippery": (3, 10), "green-trap": (1, 4)}),
        1: _results(0.8, 0.6, 0.5, {"blue-slippery": (5, 10)}),
        2: _results(0.7, 0.6, 0.5, {"blue-slippery": (4, 10)}),
    }
    group = agg.summarise_group(per_seed, BootstrapOptions(reps=2000))
    assert group["seeds"] == [0, 1, 2]
    train = group["splits"]["Train"]
    assert train["iqm"] == pytest.approx(0.8) and train["mean"] == pytest.approx(0.8)
    assert train["per_seed"] == pytest.approx([0.9, 0.8, 0.7])
    assert 0.7 - 1e-9 <= train["ci"][0] < 0.8 < train["ci"][1] <= 0.9 + 1e-9
    assert group["splits"]["Test"]["ci"] == pytest.approx([0.6, 0.6])
    gap = group["gap"]
    assert gap["per_seed"] == pytest.approx([0.4, 0.3, 0.2]) and gap["iqm"] == pytest.approx(0.3)
    assert 0.2 - 1e-9 <= gap["ci"][0] < 0.3 < gap["ci"][1] <= 0.4 + 1e-9
    pairs = group["held_out_pairs"]["TargetPairOnly"]
    assert pairs["blue-slippery"]["seeds"] == [0, 1, 2]
    assert pairs["blue-slippery"]["pooled_success"] == pytest.approx(12 / 30)
    assert pairs["blue-slippery"]["iqm"] == pytest.approx(0.4)
    assert pairs["green-trap"]["seeds"] == [0] and pairs["green-trap"]["episodes"] == 4
    assert pairs["green-trap"]["ci"] == pytest.approx([0.25, 0.25])
    assert "Train" not in group["held_out_pairs"]


# --------------------------------------------------------------------------- a hand-made sweep directory
def _trial(sweep: Path, key: str, model: str, seed: int, status: str, results: dict | None, curve=None) -> None:
    folder = sweep / "trials" / key
    (folder / "eval").mkdir(parents=True)
    config = {
        "env_id": ENV,
        "model": model,
        "algo": "ppo",
        "recurrent": False,
        "text": "full",
        "seed": seed,
        "steps": 256,
        "episodes": 100,
        "n_envs": 2,
        "env_kwargs": {},
        "hyperparameters": {},
        "demos": None,
    }
    meta = {"key": key, "config": config, "status": status}
    if status == "failed":
        meta["error"] = "TypeError: bad kwarg"
    (folder / "trial.json").write_text(json.dumps(meta))
    if results is not None:
        (folder / "eval" / "results.json").write_text(json.dumps(results))
    if curve is not None:
        rows = ["timesteps,episodes,mean_return,success_rate,fps"]
        rows += [f"{t},{i},0.1,{s},100" for i, (t, s) in enumerate(curve)]
        (folder / "progress.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    for seed, (train, tpo) in enumerate([(0.9, 0.4), (0.8, 0.5), (0.7, 0.3)]):
        curve = [(128, "nan"), (256, 0.2 + 0.1 * seed), (384, 0.5)]
        _trial(sweep, f"attn_s{seed}", "attention", seed, "done", _results(train, 0.6, tpo), curve)
        _trial(sweep, f"img_s{seed}", "image", seed, "done", _results(0.5, 0.5, 0.5), curve[:2])
    _trial(sweep, "img_s9", "image", 9, "failed", None)
    _trial(sweep, "img_s8", "image", 8, "running", None)
    return sweep


def test_aggregate_sweep_groups_by_config_and_lists_failed_and_unfinished_trials(sweep_dir):
    summary = agg.aggregate_sweep(sweep_dir, reps=1000)
    assert summary["trials"] == {
        "total": 8,
        "done": 6,
        "failed": {"img_s9": "TypeError: bad kwarg"},
        "not_done": ["img_s8"],
    }
    groups = {g["label"]: g for g in summary["envs"][ENV]["groups"]}
    assert set(groups) == {"attention ppo text=full", "image ppo text=full"}
    attention = groups["attention ppo text=full"]
    assert attention["trials"] == ["attn_s0", "attn_s1", "attn_s2"]
    assert attention["gap"]["per_seed"] == pytest.approx([0.5, 0.3, 0.4])
    assert groups["image ppo text=full"]["gap"]["ci"] == pytest.approx([0.0, 0.0])
    curve = attention["curve"]
    assert curve["timesteps"] == [256.0, 384.0]  # the nan row (no finished episode yet) is dropped
    assert curve["mean"] == pytest.approx([0.3, 0.5]) and curve["n_seeds"] == 3
    assert groups["image ppo text=full"]["curve"]["timesteps"] == [256.0]
    assert summary == agg.aggregate_sweep(sweep_dir, reps=1000), "seeded: the same summary twice"


def test_greedy_and_sampled_evaluations_are_separate_groups(sweep_dir):
    greedy = _results(0.1, 0.1, 0.1)
    del greedy["actions"]  # written before evaluation sampled actions: greedy
    _trial(sweep_dir, "attn_greedy_s0", "attention", 0, "done", greedy)
    groups = agg.aggregate_sweep(sweep_dir, reps=100)["envs"][ENV]["groups"]
    labels = {g["label"]: g["eval_actions"] for g in groups}
    assert labels == {
        "attention ppo text=full": "sampled",
        "attention ppo text=full greedy": "greedy",
        "image ppo text=full": "sampled",
    }


def test_summary_files_and_figures_are_written(sweep_dir, tmp_path):
    summary = agg.aggregate_sweep(sweep_dir, reps=500)
    json_path, md_path = agg.write_summary(summary, tmp_path / "out")
    assert json.loads(json_path.read_text())["envs"][ENV]["groups"][0]["label"] == "attention ppo text=full"
    md = md_path.read_text()
    assert "| attention ppo text=full | 3 | 0.800 [" in md
    assert "## Failed trials" in md and "img_s9" in md
    assert "IQM equals the mean" in md
    for path in write_figures(summary, tmp_path / "out"):
        assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"


def test_not_a_sweep_directory_says_how_to_make_one(tmp_path):
    assert not agg.is_sweep_dir(tmp_path)
    with pytest.raises(CheckpointError, match="babyaipp sweep"):
        agg.aggregate_sweep(tmp_path)


def _summary(groups_by_env: dict[str, dict[str, dict[int, float]]]) -> dict:
    envs = {}
    for env, groups in groups_by_env.items():
        entries = []
        for label, per_seed in groups.items():
            seeds = sorted(per_seed)
            cell = {"seeds": seeds, "per_seed": [per_seed[s] for s in seeds]}
            entries.append({"label": label, "splits": {"TargetPairOnly": cell, "Train": cell}, "gap": cell})
        envs[env] = {"groups": entries}
    return {"envs": envs}


def test_rliable_scores_are_seeds_by_envs_per_group(tmp_path):
    summary = _summary(
        {
            "A": {"film": {0: 0.1, 1: 0.2, 2: 0.3}, "image": {0: 0.5, 1: 0.6}},
            "B": {"film": {0: 0.7, 1: 0.8, 2: 0.9}, "image": {0: 0.4, 1: 0.3}},
        }
    )
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    scores = agg.rliable_scores(tmp_path)  # the sweep directory, or the file, or the dict
    assert sorted(scores) == ["film", "image"]
    np.testing.assert_array_equal(scores["film"], [[0.1, 0.7], [0.2, 0.8], [0.3, 0.9]])
    np.testing.assert_array_equal(scores["image"], [[0.5, 0.4], [0.6, 0.3]])
    assert agg.rliable_scores(tmp_path / "summary.json", split="gap")["image"].shape == (2, 2)
    with pytest.raises(ConfigError, match="'film' has no TargetPairOnly results on B"):
        agg.rliable_scores(_summary({"A": {"film": {0: 0.1}}, "B": {"image": {0: 0.2}}}))
    with pytest.raises(ConfigError, match="split 'Val'"):
        agg.rliable_scores(summary, split="Val")


def test_rliable_scores_feed_rliables_interval_estimates(monkeypatch):
    import pandas.util._decorators as decorators

    original = decorators.deprecate_kwarg
    monkeypatch.setattr(
        decorators,
        "deprecate_kwarg",
        lambda *a, **k: original(FutureWarning, *a, **k) if a and isinstance(a[0], str) else original(*a, **k),
    )
    try:
        from rliable import library, metrics
    except Exception as err:  # noqa: BLE001 - another arch/pandas combination
        pytest.skip(f"rliable.library does not import here: {err}")
    rng = np.random.default_rng(0)
    summary = _summary({env: {"film": dict(enumerate(rng.random(5)))} for env in ("A", "B", "C")})
    scores = agg.rliable_scores(summary)
    points, intervals = library.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=200)
    assert points["film"][0] == pytest.approx(metrics.aggregate_iqm(scores["film"]))
    assert intervals["film"][0, 0] <= points["film"][0] <= intervals["film"][1, 0]
