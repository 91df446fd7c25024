"""Early-learning regularisation (ELR) against memorisation of noisy labels.

Reproduces the central comparison of Liu, Niles-Weed, Razavian, Fernandez-Granda,
"Early-Learning Regularization Prevents Memorization of Noisy Labels" (NeurIPS 2020): trained on
labels of which a fraction is wrong, a network first fits the correct labels ("early learning")
and later memorises the wrong ones; ELR keeps it from memorising by pulling its predictions
towards running averages of its own past predictions.

For example ``i`` with predicted probabilities ``p_i`` (clamped to [1e-4, 1 − 1e-4]) and noisy
label ``ỹ_i``, the loss on a mini-batch B is::

    L = mean_{i∈B} CE(p_i, ỹ_i) + λ · mean_{i∈B} log(1 − ⟨p_i, t_i⟩)

and, each time example ``i`` is seen (before the loss is computed, as in the authors' code),
its target is updated with the detached, renormalised prediction::

    t_i ← β t_i + (1 − β) p_i / Σ_c p_ic        (t_i starts at 0)

The regulariser's gradient w.r.t. the logits is, up to a positive factor, ``p_i − t_i``-like
(it pushes ``p_i`` towards ``t_i``), which counteracts the CE gradient of a wrong label once the
targets encode what the network learnt early.

Choices where the paper's setting does not carry over:

* Noise: 40% of the training examples get a label drawn uniformly from the *other* nine classes
  (so exactly 40% of the labels are wrong). "Symmetric noise" is also used for drawing among
  all ten classes, which leaves a tenth of the flipped labels correct; the choice here makes the
  noise rate equal the fraction of wrong labels. Test labels are clean.
* Data and model: sklearn digits (70/30 stratified split, standardised with training
  statistics), an MLP 64→256→256→10 with ReLU, trained with Adam (lr 1e-3, no weight decay,
  batch 64) for 150 epochs; plain CE has fitted all wrong labels after about 60. The paper
  trains a ResNet-34 on CIFAR-10 with SGD.
* λ and β: the paper's CIFAR-10 values λ = 3, β = 0.7 are the defaults here; on digits they
  already prevent memorisation (see the docs for the measured figures), so no tuning was done.
* ELR+ (weight averaging, two networks, mixup) is not reproduced.

Metrics per epoch for both runs (epoch 0 is the initialisation): clean test accuracy; among the
training examples with a wrong label, the fraction predicted as that wrong label (memorised) and
the fraction predicted as their true label. Checks: ELR's final test accuracy exceeds CE's by at
least ``margin``; ELR memorises fewer than half as many wrong labels as CE at the end; CE's final
test accuracy is at least ``min_drop`` below its own peak (it memorised). All three are claim
checks; with ``lam=0`` ELR is plain CE and the first two fail (a test shows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from babyaipp.errors import check_range
from babyaipp.memorization.base import MemoConfig, MemoSpec, Outcome, claim

METHODS = ("ce", "elr")
#: The quick run trains for fewer epochs (plain CE still memorises most wrong labels by then).
QUICK_EPOCHS = 40
#: Predicted probabilities are clamped to this margin before the ELR term, as in the paper's code.
PROB_CLAMP = 1e-4


@dataclass
class ELRConfig(MemoConfig):
    """Hyperparameters; ``quick`` shortens training."""

    noise_rate: float = 0.4
    test_fraction: float = 0.3
    hidden: int = 256
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 150
    lam: float = 3.0
    beta: float = 0.7
    # ELR's reported gain over CE at 40% noise is 10+ points; 5 points is clearly more than seed noise
    # (test split of 540 images: one image is 0.2 points).
    margin: float = 0.05
    # "Fits far fewer wrong labels": at most half of CE's fraction, i.e. a halving, not a nudge.
    wrong_fit_ratio: float = 0.5
    # CE memorising must cost clean accuracy: 2 points is ~10 test images, beyond evaluation noise.
    min_drop: float = 0.02

    def __post_init__(self) -> None:
        check_range("noise_rate", self.noise_rate, 0.0, 0.9, high_inclusive=False)
        check_range("test_fraction", self.test_fraction, 0.05, 0.9)
        check_range("hidden", self.hidden, 1)
        check_range("lr", self.lr, 0.0, low_inclusive=False)
        check_range("batch_size", self.batch_size, 1)
        check_range("epochs", self.epochs, 2)
        check_range("lam", self.lam, 0.0)
        check_range("beta", self.beta, 0.0, 1.0, high_inclusive=False)
        check_range("margin", self.margin, 0.0)
        check_range("min_drop", self.min_drop, 0.0)
        check_range("wrong_fit_ratio", self.wrong_fit_ratio, 0.0, 1.0, low_inclusive=False)

    @property
    def train_epochs(self) -> int:
        return min(self.epochs, QUICK_EPOCHS) if self.quick else self.epochs


def load_data(config: ELRConfig) -> dict[str, Any]:
    """Stratified split of the digits, standardised, with noisy training labels (seeded)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32),
        digits.target.astype(np.int64),
        test_size=config.test_fraction,
        stratify=digits.target,
        random_state=config.seed,
    )
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    noisy = corrupt_labels(y_train, config.noise_rate, n_classes=10, rng=np.random.default_rng(config.seed))
    return {
        "x_train": torch.from_numpy(x_train),
        "y_true": torch.from_numpy(y_train),
        "y_noisy": torch.from_numpy(noisy),
        "x_test": torch.from_numpy(x_test),
        "y_test": torch.from_numpy(y_test),
    }


def corrupt_labels(labels: np.ndarray, rate: float, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Give ``round(rate·n)`` random examples a label drawn uniformly from the other classes."""
    noisy = labels.copy()
    chosen = rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False)
    shift = rng.integers(1, n_classes, size=len(chosen))  # 1..C-1: never the true class
    noisy[chosen] = (labels[chosen] + shift) % n_classes
    return noisy


def update_targets(targets: Any, index: Any, probs: Any, beta: float) -> Any:
    """``t_i ← β t_i + (1 − β) p_i / Σ p_i`` for the rows ``index``, in place; returns the new rows.

    ``probs`` are the clamped probabilities; they are detached here so the targets carry no graph.
    """
    p = probs.detach()
    targets[index] = beta * targets[index] + (1.0 - beta) * p / p.sum(dim=1, keepdim=True)
    return targets[index]


def elr_loss(logits: Any, labels: Any, targets: Any, index: Any, lam: float, beta: float) -> Any:
    """Cross-entropy plus the ELR term; updates ``targets[index]`` first (the paper's order)."""
    import torch

    probs = torch.softmax(logits, dim=1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    t = update_targets(targets, index, probs, beta)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    return ce + lam * torch.log(1.0 - (t * probs).sum(dim=1)).mean()


def make_model(hidden: int, n_in: int = 64, n_out: int = 10) -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
    )


def evaluate(model: Any, data: dict[str, Any], wrong: Any) -> dict[str, float]:
    """Clean test accuracy and, on the wrongly labelled training examples, memorised/true fractions."""
    import torch

    with torch.no_grad():
        test_pred = model(data["x_test"]).argmax(1)
        train_pred = model(data["x_train"][wrong]).argmax(1)
    return {
        "test_acc": float((test_pred == data["y_test"]).float().mean()),
        "wrong_fitted": float((train_pred == data["y_noisy"][wrong]).float().mean()),
        "true_predicted": float((train_pred == data["y_true"][wrong]).float().mean()),
    }


def train(method: str, data: dict[str, Any], config: ELRConfig) -> dict[str, list[float]]:
    """Train one network (same initialisation and batch order for both methods); return curves."""
    import torch

    torch.manual_seed(config.seed)
    model = make_model(config.hidden).to(config.device)
    data = {k: v.to(config.device) for k, v in data.items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = len(data["y_noisy"])
    targets = torch.zeros(n, 10, device=config.device)
    wrong = data["y_noisy"] != data["y_true"]
    gen = torch.Generator().manual_seed(config.seed)
    rows = [evaluate(model, data, wrong)]
    for _ in range(config.train_epochs):
        model.train()
        order = torch.randperm(n, generator=gen).to(config.device)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            logits = model(data["x_train"][idx])
            if method == "elr":
                loss = elr_loss(logits, data["y_noisy"][idx], targets, idx, config.lam, config.beta)
            else:
                loss = torch.nn.functional.cross_entropy(logits, data["y_noisy"][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        rows.append(evaluate(model, data, wrong))
    return {key: [row[key] for row in rows] for key in rows[0]}


def run(config: ELRConfig) -> Outcome:
    data = load_data(config)
    curves = {method: train(method, data, config) for method in METHODS}
    summary = {
        method: {
            "final_test_acc": c["test_acc"][-1],
            "peak_test_acc": max(c["test_acc"]),
            "peak_epoch": int(np.argmax(c["test_acc"])),
            "final_wrong_fitted": c["wrong_fitted"][-1],
            "final_true_predicted": c["true_predicted"][-1],
        }
        for method, c in curves.items()
    }
    metrics = {
        "epochs": list(range(config.train_epochs + 1)),
        "n_train": len(data["y_noisy"]),
        "n_wrong_labels": int((data["y_noisy"] != data["y_true"]).sum()),
        "n_test": len(data["y_test"]),
        "curves": curves,
        "summary": summary,
    }
    ce, elr = summary["ce"], summary["elr"]
    checks = {
        "elr_beats_ce_on_clean_test": claim(
            elr["final_test_acc"] - ce["final_test_acc"],
            ">=",
            config.margin,
            "ELR's final clean test accuracy minus CE's (fraction)",
        ),
        "elr_fits_under_half_the_wrong_labels": claim(
            elr["final_wrong_fitted"] / max(ce["final_wrong_fitted"], 1e-12),
            "<",
            config.wrong_fit_ratio,
            "wrong labels fitted by ELR / by CE at the end",
        ),
        "ce_memorises_after_its_peak": claim(
            ce["peak_test_acc"] - ce["final_test_acc"],
            ">=",
            config.min_drop,
            "CE's peak minus final clean test accuracy: early learning, then memorisation",
        ),
    }
    key_figures = {
        "test_acc_ce": round(ce["final_test_acc"], 3),
        "test_acc_elr": round(elr["final_test_acc"], 3),
        "wrong_fit_ce": round(ce["final_wrong_fitted"], 3),
        "wrong_fit_elr": round(elr["final_wrong_fitted"], 3),
    }
    return Outcome(metrics=metrics, checks=checks, key_figures=key_figures, plot=lambda fig: plot(fig, metrics, config))


def plot(fig: Any, metrics: dict[str, Any], config: ELRConfig) -> None:
    """Left: clean test accuracy; middle and right: what the net predicts on wrongly labelled examples."""
    epochs = metrics["epochs"]
    curves = metrics["curves"]
    colors = {"ce": "tab:red", "elr": "tab:blue"}
    names = {"ce": "cross-entropy", "elr": f"ELR (λ={config.lam:g}, β={config.beta:g})"}
    ax_test, ax_wrong, ax_true = fig.subplots(1, 3)
    for method in METHODS:
        c = curves[method]
        ax_test.plot(epochs, c["test_acc"], color=colors[method], label=names[method])
        peak = metrics["summary"][method]["peak_epoch"]
        ax_test.plot([peak], [c["test_acc"][peak]], "o", color=colors[method], markersize=4)
        ax_wrong.plot(epochs, c["wrong_fitted"], color=colors[method], label=names[method])
        ax_true.plot(epochs, c["true_predicted"], color=colors[method], label=names[method])
    ax_test.set_title("clean test accuracy (dot: peak)")
    ax_wrong.set_title("wrong labels memorised")
    ax_true.set_title("true label predicted (same examples)")
    ax_test.set_ylabel("accuracy")
    ax_wrong.set_ylabel(f"fraction of the {metrics['n_wrong_labels']} wrongly labelled train examples")
    for ax in (ax_test, ax_wrong, ax_true):
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"ELR on digits with {config.noise_rate:.0%} of training labels wrong: CE memorises them, ELR does not",
        fontsize=9,
    )


SPEC = MemoSpec(
    name="elr",
    paper=(
        "Liu, Niles-Weed, Razavian, Fernandez-Granda, Early-Learning Regularization Prevents "
        "Memorization of Noisy Labels (NeurIPS 2020)"
    ),
    claim=(
        "Under 40% symmetric label noise, plain cross-entropy memorises the wrong labels and loses test "
        "accuracy after an early peak; the ELR term keeps the early-learning predictions and does not."
    ),
    config_cls=ELRConfig,
    run=run,
    paper_headline=(
        "CIFAR-10 with 40% symmetric noise: ELR reaches 89.15% clean test accuracy (91.43% with "
        "cosine annealing; authors' README), far above cross-entropy, which memorises"
    ),
)
