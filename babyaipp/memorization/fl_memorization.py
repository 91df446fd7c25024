"""Unintended memorization in federated learning (Thakkar, Ramaswamy, Mathews, Beaufays 2020).

What is reproduced. A word-level next-word model (embedding + GRU + softmax) is trained on text
partitioned by *user*: every user is one passage (ten consecutive examples) of one topic of
Python's bundled documentation (``pydoc_data.topics.topics``). Secret canaries
``"my secret number is d1 d2 d3 d4 d5"`` (digits
drawn uniformly, so the candidate space ``R`` of same-format sequences has ``|R| = 10^5``) are
inserted into a few users' training data, each into one user with a chosen repetition count. The
same data train three models:

1. *central*: all users' examples pooled and shuffled, mini-batch SGD for several epochs;
2. *FedAvg*: each client is one user (data clustered by user), a random sample of users per round
   trains locally (mini-batch SGD, a few local epochs) and the server averages the returned
   models weighted by their number of examples;
3. *DP-FedAvg* (McMahan et al. 2018, user-level DP): as FedAvg, but each user's model update is
   clipped to L2 norm ``S``, the clipped updates are averaged with equal weights, and Gaussian noise
   of standard deviation ``sigma * S / m`` (noise ``sigma * S`` on the sum, divided by the ``m``
   sampled users) is added to every coordinate.

Exposure (Carlini et al., "The Secret Sharer"). The log-perplexity of a candidate ``r`` is
``-sum_i log2 p(d_i | prefix, d_<i)``; ``rank(c)`` is 1 + the number of candidates in ``R`` with a
strictly lower log-perplexity than the canary ``c``, and ``exposure(c) = log2|R| - log2 rank(c)``
(between 0 and ``log2 10^5 = 16.6`` bits). Here all ``10^5`` candidates are scored *exactly* by
walking the digit trie (one GRU step per trie node, 11,111 steps), so no distributional fit is
needed. The estimator for large ``R``, ``rank ~ 1 + |R| * (fraction of a uniform random sample of
candidates with lower log-perplexity)``, is implemented too (:func:`estimated_rank`) and reported
from a random sample next to the exact value so its agreement can be seen.

Privacy accounting: Opacus's RDP accountant for the subsampled Gaussian mechanism with sampling
rate ``q = m / number of users`` and noise multiplier ``sigma`` over all rounds, reported as
``epsilon`` at ``delta``.

Federated protocol: Flower's ``FedAvg`` and ``DifferentialPrivacyServerSideFixedClipping``
strategies do the aggregation (clipping and noise included), driven by an in-process loop rather
than ``flwr.simulation`` because Ray's per-round overhead (~3 s) would dominate a minute-long run on
two cores (see :mod:`babyaipp.memorization._federated`); the clients' local training is batched.

Decisions where the paper is not specific at this scale:

* Canaries are short stand-alone examples (``<bos> my secret number is`` + 5 digits) with the same
  length as the text examples (``<bos>`` + 9 words), one user per canary, repetitions 1, 4 and 16
  (added to that user's 10 examples).
* Clients are sampled without replacement (``m`` of them per round); the accountant assumes Poisson
  sampling with ``q = m / N``, the usual approximation.
* The three models use the same local optimiser (plain SGD, same learning rate, batch size and
  gradient-norm clipping) and comparable numbers of example passes, and their held-out next-word
  accuracy and perplexity are reported so the exposures are compared at stated utility.

Users and privacy. Every topic is cut into examples and its examples into users of
``examples_per_user`` (10) consecutive examples: 626 users, so that user-level DP can be run at a
meaningful privacy level. With 50 users a round (q = 0.08), noise multiplier 0.7 and 60 rounds
the RDP accountant gives epsilon = 7.2 at delta = 1/626 (``epsilon_at_most_bound``, a sanity
check, requires <= 10). A *clip-only* run (the same clipping, client sampling and local training
as DP-FedAvg, noise 0) is the control that separates the effect of the noise from that of the
per-user clipping. Local training is ``local_epochs`` full-batch SGD steps per client, computed
for all of a round's clients in one ``torch.func.vmap`` call (:func:`local_training`).

Checks (claims): exposure central > FedAvg + 1 bit, FedAvg > DP-FedAvg + 1 bit, clip-only >
DP-FedAvg + 1 bit (the noise matters), and the first two at matched utility. The ablation
``noise_multiplier=0`` makes DP-FedAvg the clip-only run, so the noise check fails (a test shows
it). What was measured (docs/memorization.md has the five-seed figures): central training
memorises the canaries (about 5-7 bits) and FedAvg over 626 user-clustered clients does not (its
exposure is at the chance level of an unseen canary, 1/ln 2 = 1.44 bits), so there is nothing
left for clipping or noise to remove and the DP comparisons are not informative at this scale.
The earlier setting (75 users, 10 a round) did memorise under FedAvg (5.4 bits) but its DP run
had epsilon ~ 12,000 and its reduction came from clipping, not noise. Both halves of the paper's
chain are therefore not reproduced together here; the first (central > FedAvg) is.

Differences of scale. The paper trains a CIFG-LSTM on Stack Overflow / Reddit data with 10^5+
users, hundreds of clients per round and thousands of rounds. Here a 16-d embedding, 32-unit GRU
and a 500-word vocabulary (29k parameters, so the DP noise per round is bounded) on 66k tokens.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from babyaipp.errors import ConfigError, check_range
from babyaipp.memorization._federated import (
    Arrays,
    DPSettings,
    FlowerAggregator,
    get_arrays,
    rdp_epsilon,
    set_arrays,
)
from babyaipp.memorization.base import MemoConfig, MemoSpec, Outcome, claim, sanity

BOS, UNK = "<bos>", "<unk>"
DIGITS = tuple(str(d) for d in range(10))
CANARY_PREFIX = ("my", "secret", "number", "is")
SETTINGS = ("central", "fedavg", "clip_only", "dp_fedavg")
SETTING_LABELS = {
    "central": "central",
    "fedavg": "FedAvg",
    "clip_only": "clip only (no noise)",
    "dp_fedavg": "DP-FedAvg",
}
#: Clip-only and DP-FedAvg share their client sampling and local-training streams: noise is their only
#: difference.
_STREAM = {"central": 0, "fedavg": 1, "clip_only": 2, "dp_fedavg": 2}


@dataclass
class FLMemorizationConfig(MemoConfig):
    """Hyperparameters; ``quick`` shrinks the corpus and the training length."""

    vocab_size: int = 500
    window: int = 9  # words per text example (after <bos>)
    examples_per_user: int = 10  # users = consecutive runs of this many examples of one topic
    heldout_fraction: float = 0.1
    embed_dim: int = 16
    hidden_dim: int = 32
    canary_digits: int = 5
    repetitions: tuple[int, ...] = (1, 4, 16)
    canaries_per_repetition: int = 3
    lr: float = 1.0
    batch_size: int = 16
    grad_clip: float = 1.0
    central_epochs: int = 8
    rounds: int = 60
    clients_per_round: int = 50
    local_epochs: int = 3  # full-batch local SGD steps per client and round
    noise_multiplier: float = 0.7  # 626 users, 50 a round, 60 rounds: epsilon 7.2 at delta = 1/626
    clip: float = 1.0
    delta: float = 0.0  # 0 = 1 / number of users, the usual choice for user-level DP
    rank_sample_size: int = 2000
    # Bits by which each step must lower the mean exposure: 1 bit halves the canaries' rank, and a
    # canary the model never saw has an expected exposure of 1/ln 2 = 1.44 bits, so 1 bit is the
    # smallest difference that is not within that chance level.
    exposure_margin: float = 1.0
    # The privacy the DP-FedAvg run must have for its result to be called private (the common
    # "single-digit epsilon" bar); checked from the accountant, so a sanity check.
    epsilon_max: float = 10.0

    def __post_init__(self) -> None:
        check_range("vocab_size", self.vocab_size, 50, 50_000)
        check_range("window", self.window, len(CANARY_PREFIX) + 1, 64)
        check_range("examples_per_user", self.examples_per_user, 1, 10_000)
        check_range("heldout_fraction", self.heldout_fraction, 0.0, 0.5, low_inclusive=False)
        check_range("embed_dim", self.embed_dim, 1, 4096)
        check_range("hidden_dim", self.hidden_dim, 1, 4096)
        check_range("canary_digits", self.canary_digits, 1, 6)
        if self.window != len(CANARY_PREFIX) + self.canary_digits:
            raise ConfigError(
                f"window={self.window} must equal {len(CANARY_PREFIX)} + canary_digits "
                f"({len(CANARY_PREFIX) + self.canary_digits}) so canaries fit one example; "
                f"valid range: [{len(CANARY_PREFIX) + self.canary_digits}, "
                f"{len(CANARY_PREFIX) + self.canary_digits}]"
            )
        if not self.repetitions:
            raise ConfigError("repetitions=() is empty; valid range: at least one count in [1, 1000]")
        for reps in self.repetitions:
            check_range("repetitions[i]", reps, 1, 1000)
        check_range("canaries_per_repetition", self.canaries_per_repetition, 1, 20)
        check_range("lr", self.lr, 0.0, 100.0, low_inclusive=False)
        check_range("batch_size", self.batch_size, 1, 4096)
        check_range("grad_clip", self.grad_clip, 0.0, None, low_inclusive=False)
        check_range("central_epochs", self.central_epochs, 1, 1000)
        check_range("rounds", self.rounds, 1, 100_000)
        check_range("clients_per_round", self.clients_per_round, 1, 10_000)
        check_range("local_epochs", self.local_epochs, 1, 100)
        check_range("noise_multiplier", self.noise_multiplier, 0.0, 1000.0)
        check_range("clip", self.clip, 0.0, None, low_inclusive=False)
        check_range("delta", self.delta, 0.0, 1.0, high_inclusive=False)
        check_range("epsilon_max", self.epsilon_max, 0.0, None, low_inclusive=False)
        check_range("rank_sample_size", self.rank_sample_size, 1, 10_000_000)
        check_range("exposure_margin", self.exposure_margin, 0.0, 20.0)
        if self.quick:  # min() keeps this idempotent under dataclasses.replace
            self.central_epochs = min(self.central_epochs, 5)
            self.rounds = min(self.rounds, 20)
            self.canaries_per_repetition = min(self.canaries_per_repetition, 2)


# ----------------------------------------------------------------------------------------- data
def tokenize(text: str) -> list[str]:
    """Lower-case words and single digits (digits are separate tokens, as in the canaries)."""
    return re.findall(r"[a-z]+|[0-9]", text.lower())


@dataclass
class Corpus:
    """Tokenised, user-partitioned data with canaries inserted."""

    vocab: list[str]
    user_names: list[str]
    user_train: list[torch.Tensor]  # per user: (n_examples, window + 1) token ids, canaries included
    heldout: torch.Tensor  # (n, window + 1), canary-free held-out windows of all users
    canaries: list[dict[str, Any]]  # digits, repetitions, user

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.vocab)}


def build_corpus(cfg: FLMemorizationConfig, rng: np.random.Generator) -> Corpus:
    """Examples = ``<bos>`` + ``window`` consecutive words; users = runs of ``examples_per_user``.

    Every documentation topic is cut into examples; its last ``heldout_fraction`` of examples is
    held out, and the rest is cut into users of ``examples_per_user`` consecutive examples (a
    shorter remainder is dropped), so a user's data is one passage of one topic (clustered by
    user, as in federated learning) and there are hundreds of users, enough for user-level DP.
    """
    from pydoc_data.topics import topics

    user_tokens = {name: tokenize(topics[name]) for name in sorted(topics)}
    reserved = [BOS, UNK, *DIGITS, *CANARY_PREFIX]
    counts = Counter(w for toks in user_tokens.values() for w in toks)
    frequent = [w for w, _ in counts.most_common() if w not in reserved]
    vocab = reserved + frequent[: cfg.vocab_size - len(reserved)]
    index = {w: i for i, w in enumerate(vocab)}
    unk, bos = index[UNK], index[BOS]

    names: list[str] = []
    train: list[torch.Tensor] = []
    heldout: list[torch.Tensor] = []
    for topic, tokens in user_tokens.items():
        ids = [index.get(w, unk) for w in tokens]
        n_windows = len(ids) // cfg.window
        if n_windows < 2:
            continue
        rows = torch.tensor(ids[: n_windows * cfg.window]).view(n_windows, cfg.window)
        rows = torch.cat([torch.full((n_windows, 1), bos), rows], dim=1)
        n_held = max(1, int(round(cfg.heldout_fraction * n_windows)))
        heldout.append(rows[-n_held:])
        kept = rows[:-n_held]
        for k, start in enumerate(range(0, len(kept) - cfg.examples_per_user + 1, cfg.examples_per_user)):
            names.append(f"{topic}#{k}")
            train.append(kept[start : start + cfg.examples_per_user])
    if len(train) < cfg.clients_per_round:
        raise ConfigError(
            f"clients_per_round={cfg.clients_per_round} exceeds the {len(train)} users; valid range: [1, {len(train)}]"
        )

    # Canaries: one user each, drawn among all users.
    n_canaries = len(cfg.repetitions) * cfg.canaries_per_repetition
    users = rng.choice(len(train), size=n_canaries, replace=False)
    canaries: list[dict[str, Any]] = []
    seen: set[str] = set()
    k = 0
    for reps in cfg.repetitions:
        for _ in range(cfg.canaries_per_repetition):
            digits = "".join(map(str, rng.integers(0, 10, size=cfg.canary_digits)))
            while digits in seen:
                digits = "".join(map(str, rng.integers(0, 10, size=cfg.canary_digits)))
            seen.add(digits)
            user = int(users[k])
            k += 1
            row = torch.tensor([bos, *(index[w] for w in CANARY_PREFIX), *(index[d] for d in digits)])
            train[user] = torch.cat([train[user], row.repeat(reps, 1)], dim=0)
            canaries.append({"digits": digits, "repetitions": int(reps), "user": names[user]})
    return Corpus(vocab, names, train, torch.cat(heldout), canaries)


# ---------------------------------------------------------------------------------------- model
class NextWordGRU(nn.Module):
    """Embedding -> one-layer GRU -> linear softmax over the vocabulary."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        states, hidden = self.gru(self.embed(tokens), hidden)
        return self.out(states), hidden


def lm_loss(model: NextWordGRU, rows: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) over all predicted positions of ``rows``."""
    logits, _ = model(rows[:, :-1])
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1))


def sgd_train(
    model: NextWordGRU,
    rows: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    grad_clip: float,
    generator: torch.Generator,
) -> None:
    """Plain mini-batch SGD with gradient-norm clipping (the same optimiser for every setting)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=generator)
        for start in range(0, len(rows), batch_size):
            batch = rows[order[start : start + batch_size]]
            optimizer.zero_grad()
            lm_loss(model, batch).backward()
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()


@torch.no_grad()
def utility(model: NextWordGRU, rows: torch.Tensor) -> dict[str, float]:
    """Held-out next-word accuracy and perplexity."""
    model.eval()
    logits, _ = model(rows[:, :-1])
    targets = rows[:, 1:]
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    accuracy = (logits.argmax(-1) == targets).float().mean()
    return {"accuracy": float(accuracy), "perplexity": float(torch.exp(loss))}


# ------------------------------------------------------------------------------------- exposure
def exposure_from_rank(rank: float, space_size: float) -> float:
    """``log2 |R| - log2 rank``: bits of the secret the model gives away (rank 1 of 1024 -> 10)."""
    if rank < 1 or space_size < 1:
        raise ValueError(f"rank={rank} and space_size={space_size} must be >= 1")
    return math.log2(space_size) - math.log2(rank)


def estimated_rank(canary_logperp: float, sample_logperps: np.ndarray, space_size: int) -> float:
    """Rank estimated from a uniform random sample of candidates: ``1 + |R| * P(sample < canary)``."""
    sample_logperps = np.asarray(sample_logperps, dtype=float)
    return 1.0 + space_size * float(np.mean(sample_logperps < canary_logperp))


def exact_rank(canary_logperp: float, all_logperps: np.ndarray) -> int:
    """1 + the number of candidates with strictly lower log-perplexity than the canary."""
    return 1 + int(np.sum(np.asarray(all_logperps) < canary_logperp))


@torch.no_grad()
def candidate_logperps(model: NextWordGRU, prefix_ids: list[int], digit_ids: list[int], n_digits: int) -> np.ndarray:
    """Log-perplexity (bits) of every digit string of length ``n_digits`` after the prefix.

    Entry ``j`` is the candidate whose digits spell ``j`` in base 10 (zero-padded). Walks the digit
    trie level by level, so each distinct prefix is run through the GRU once.
    """
    model.eval()
    logits, hidden = model(torch.tensor([prefix_ids]))
    step_logits = logits[:, -1]  # (1, V)
    total = torch.zeros(1, dtype=torch.float64)
    digits = torch.tensor(digit_ids)
    for level in range(n_digits):
        logp = torch.log_softmax(step_logits.double(), dim=-1)[:, digits]  # (n, 10)
        total = (total[:, None] - logp / math.log(2)).reshape(-1)
        if level + 1 < n_digits:
            n = step_logits.shape[0]
            inputs = digits.repeat(n)[:, None]  # state i*10+d continues prefix i with digit d
            hidden = hidden.repeat_interleave(10, dim=1)
            out, hidden = model(inputs, hidden)
            step_logits = out[:, -1]
    return total.numpy()


def measure_exposures(
    model: NextWordGRU, corpus: Corpus, cfg: FLMemorizationConfig, rng: np.random.Generator
) -> list[dict[str, float]]:
    """Exact and sample-estimated exposure of every canary."""
    index = corpus.index
    prefix = [index[BOS], *(index[w] for w in CANARY_PREFIX)]
    digit_ids = [index[d] for d in DIGITS]
    space = 10**cfg.canary_digits
    logperps = candidate_logperps(model, prefix, digit_ids, cfg.canary_digits)
    rows = []
    for canary in corpus.canaries:
        own = float(logperps[int(canary["digits"])])
        sample = logperps[rng.integers(0, space, size=cfg.rank_sample_size)]
        rows.append(
            {
                "exposure": exposure_from_rank(exact_rank(own, logperps), space),
                "exposure_sampled": exposure_from_rank(estimated_rank(own, sample, space), space),
                "logperp_bits": own,
            }
        )
    return rows


# ------------------------------------------------------------------------------------- training
def train_central(
    model: NextWordGRU,
    corpus: Corpus,
    cfg: FLMemorizationConfig,
    generator: torch.Generator,
    checkpoint: Callable[[], None] | None = None,
) -> None:
    """All users' examples pooled and shuffled together; ``checkpoint()`` after every epoch."""
    pooled = torch.cat(corpus.user_train)
    for _ in range(cfg.central_epochs):
        sgd_train(
            model, pooled, epochs=1, batch_size=cfg.batch_size, lr=cfg.lr, grad_clip=cfg.grad_clip, generator=generator
        )
        if checkpoint is not None:
            checkpoint()


def functional_logits(params: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The same computation as :class:`NextWordGRU` written with plain tensor ops.

    ``torch.func.vmap`` has no batching rule for the fused ``nn.GRU`` kernel; these equations
    (PyTorch's gate order r, z, n) let every sampled client's local step run as one batched call.
    """
    emb = params["embed.weight"][tokens]  # (B, T, E)
    w_ih, w_hh = params["gru.weight_ih_l0"], params["gru.weight_hh_l0"]
    b_ih, b_hh = params["gru.bias_ih_l0"], params["gru.bias_hh_l0"]
    h = emb.new_zeros(emb.shape[0], w_hh.shape[1])
    states = []
    for t in range(emb.shape[1]):
        i_r, i_z, i_n = (emb[:, t] @ w_ih.T + b_ih).chunk(3, dim=-1)
        h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        states.append(h)
    return torch.stack(states, dim=1) @ params["out.weight"].T + params["out.bias"]


def _client_loss(params: dict[str, torch.Tensor], rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over a client's real (unpadded) examples."""
    logits = functional_logits(params, rows[:, :-1])
    per_token = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1), reduction="none"
    ).view(rows.shape[0], -1)
    return (per_token.mean(dim=1) * mask).sum() / mask.sum()


def local_training(
    model: NextWordGRU, clients: list[torch.Tensor], *, steps: int, lr: float, grad_clip: float
) -> list[Arrays]:
    """Each client's parameters after ``steps`` full-batch SGD steps on its own data, from ``model``.

    All clients start from the same global model and train independently; their examples are
    padded to a common count and masked, and one ``vmap`` call computes every client's gradient
    (clipped to norm ``grad_clip`` per client, as ``sgd_train`` does), so a round of 100 clients
    costs about one batched forward and backward pass per local step.
    """
    by_size: dict[int, list[int]] = {}
    for c, rows in enumerate(clients):  # clients of equal size share one unpadded batch
        by_size.setdefault(len(rows), []).append(c)
    result: list[Arrays] = [[] for _ in clients]
    for members in by_size.values():
        for c, arrays in zip(
            members,
            _local_training_padded(model, [clients[c] for c in members], steps=steps, lr=lr, grad_clip=grad_clip),
            strict=True,
        ):
            result[c] = arrays
    return result


def _local_training_padded(
    model: NextWordGRU, clients: list[torch.Tensor], *, steps: int, lr: float, grad_clip: float
) -> list[Arrays]:
    from torch.func import grad, vmap

    names = [name for name, _ in model.named_parameters()]
    width = max(len(rows) for rows in clients)
    padded = torch.stack([torch.cat([rows, rows[:1].expand(width - len(rows), -1)]) for rows in clients])
    mask = torch.stack([torch.arange(width) < len(rows) for rows in clients]).to(torch.float32)
    params = {n: p.detach().unsqueeze(0).repeat(len(clients), *([1] * p.dim())) for n, p in model.named_parameters()}
    per_client_grad = vmap(grad(_client_loss), in_dims=(0, 0, 0))
    for _ in range(steps):
        grads = per_client_grad(params, padded, mask)
        norms = torch.sqrt(sum((grads[n] ** 2).flatten(1).sum(1) for n in names))
        scale = torch.clamp(grad_clip / (norms + 1e-6), max=1.0)
        params = {n: params[n] - lr * scale.view(-1, *([1] * (params[n].dim() - 1))) * grads[n] for n in names}
    return [[params[n][c].numpy().astype(np.float32, copy=True) for n in names] for c in range(len(clients))]


def train_federated(
    model: NextWordGRU,
    user_rows: list[torch.Tensor],
    *,
    rounds: int,
    clients_per_round: int,
    local_epochs: int,
    lr: float,
    grad_clip: float,
    dp: DPSettings | None,
    rng: np.random.Generator,
    checkpoint: Callable[[], None] | None = None,
    checkpoint_every: int = 1,
) -> None:
    """FedAvg (or DP-FedAvg if ``dp``): each round a sample of users trains locally, Flower aggregates.

    Local training is ``local_epochs`` full-batch SGD steps per client (a user holds about ten
    examples). ``checkpoint()`` is called every ``checkpoint_every`` rounds and after the last one.
    """
    aggregator = FlowerAggregator(clients_per_round, dp)
    for server_round in range(1, rounds + 1):
        current = get_arrays(model)
        chosen = rng.choice(len(user_rows), size=clients_per_round, replace=False)
        returned = local_training(model, [user_rows[u] for u in chosen], steps=local_epochs, lr=lr, grad_clip=grad_clip)
        sizes = [len(user_rows[u]) for u in chosen]
        set_arrays(model, aggregator.aggregate(server_round, current, returned, sizes, rng))
        if checkpoint is not None and (server_round % checkpoint_every == 0 or server_round == rounds):
            checkpoint()


def exposure_at_accuracy(trajectory: list[dict[str, float]], target_accuracy: float) -> float:
    """Mean exposure at the first checkpoint reaching ``target_accuracy`` (the last one if none does)."""
    for point in trajectory:
        if point["accuracy"] >= target_accuracy:
            return point["mean_exposure"]
    return trajectory[-1]["mean_exposure"]


# ------------------------------------------------------------------------------------------ run
def run(cfg: FLMemorizationConfig) -> Outcome:
    rng = np.random.default_rng(cfg.seed)
    corpus = build_corpus(cfg, rng)
    n_users = len(corpus.user_train)
    init = NextWordGRU(len(corpus.vocab), cfg.embed_dim, cfg.hidden_dim)
    init_arrays = get_arrays(init)

    results: dict[str, dict[str, Any]] = {}
    for setting in SETTINGS:
        model = NextWordGRU(len(corpus.vocab), cfg.embed_dim, cfg.hidden_dim)
        set_arrays(model, init_arrays)
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        setting_rng = np.random.default_rng([cfg.seed, _STREAM[setting]])
        exposure_rng = np.random.default_rng([cfg.seed, _STREAM[setting], 1])
        trajectory: list[dict[str, float]] = []

        def checkpoint(
            model: NextWordGRU = model,
            trajectory: list[dict[str, float]] = trajectory,
            exposure_rng: np.random.Generator = exposure_rng,
        ) -> None:
            exposures = measure_exposures(model, corpus, cfg, exposure_rng)
            trajectory.append(
                {**utility(model, corpus.heldout), "mean_exposure": float(np.mean([e["exposure"] for e in exposures]))}
            )

        if setting == "central":
            train_central(model, corpus, cfg, generator, checkpoint)
        else:
            dp = {
                "fedavg": None,
                "clip_only": DPSettings(0.0, cfg.clip),
                "dp_fedavg": DPSettings(cfg.noise_multiplier, cfg.clip),
            }[setting]
            train_federated(
                model,
                corpus.user_train,
                rounds=cfg.rounds,
                clients_per_round=cfg.clients_per_round,
                local_epochs=cfg.local_epochs,
                lr=cfg.lr,
                grad_clip=cfg.grad_clip,
                dp=dp,
                rng=setting_rng,
                checkpoint=checkpoint,
                checkpoint_every=max(1, cfg.rounds // cfg.central_epochs),
            )
        exposures = measure_exposures(model, corpus, cfg, exposure_rng)
        results[setting] = {
            **utility(model, corpus.heldout),
            "trajectory": [{k: round(v, 4) for k, v in point.items()} for point in trajectory],
            "exposure": [round(e["exposure"], 3) for e in exposures],
            "exposure_sampled": [round(e["exposure_sampled"], 3) for e in exposures],
            "mean_exposure": float(np.mean([e["exposure"] for e in exposures])),
        }

    delta = cfg.delta or 1.0 / n_users
    epsilon = rdp_epsilon(cfg.noise_multiplier, cfg.clients_per_round / n_users, cfg.rounds, delta)
    mean = {s: results[s]["mean_exposure"] for s in SETTINGS}
    acc = {s: results[s]["accuracy"] for s in SETTINGS}
    central_passes = cfg.central_epochs * sum(len(r) for r in corpus.user_train)
    mean_user_size = float(np.mean([len(r) for r in corpus.user_train]))
    fed_passes = cfg.rounds * cfg.local_epochs * cfg.clients_per_round * mean_user_size
    metrics: dict[str, Any] = {
        "n_users": n_users,
        "vocab_size": len(corpus.vocab),
        "n_train_examples": int(sum(len(r) for r in corpus.user_train)),
        "n_heldout_examples": int(len(corpus.heldout)),
        "candidate_space": 10**cfg.canary_digits,
        "canaries": corpus.canaries,
        "settings": results,
        "epsilon": epsilon,
        "delta": delta,
        "sample_rate": cfg.clients_per_round / n_users,
        "noise_std_per_coordinate": cfg.noise_multiplier * cfg.clip / cfg.clients_per_round,
        "example_passes": {"central": central_passes, "federated_expected": round(fed_passes)},
    }
    # Matched utility: the more memorizing setting's exposure at its first checkpoint whose held-out
    # accuracy reaches the less memorizing setting's final accuracy (so underfitting cannot explain it).
    matched = {
        "central_at_fedavg_accuracy": exposure_at_accuracy(results["central"]["trajectory"], acc["fedavg"]),
        "fedavg_at_dp_fedavg_accuracy": exposure_at_accuracy(results["fedavg"]["trajectory"], acc["dp_fedavg"]),
        "clip_only_at_dp_fedavg_accuracy": exposure_at_accuracy(results["clip_only"]["trajectory"], acc["dp_fedavg"]),
    }
    metrics["matched_utility_exposure"] = matched
    margin = cfg.exposure_margin
    checks = {
        "exposure_central_gt_fedavg": claim(
            mean["central"] - mean["fedavg"], ">", margin, "mean exposure central − FedAvg (bits)"
        ),
        "exposure_fedavg_gt_dp_fedavg": claim(
            mean["fedavg"] - mean["dp_fedavg"], ">", margin, "mean exposure FedAvg − DP-FedAvg (bits)"
        ),
        "noise_lowers_exposure_beyond_clipping": claim(
            mean["clip_only"] - mean["dp_fedavg"],
            ">",
            margin,
            "mean exposure clip-only − DP-FedAvg (bits): the noise, not the clipping, lowers it",
        ),
        "central_gt_fedavg_at_matched_utility": claim(
            matched["central_at_fedavg_accuracy"] - mean["fedavg"],
            ">",
            0.0,
            "central's exposure when it first reaches FedAvg's accuracy, minus FedAvg's final (bits)",
        ),
        "fedavg_gt_dp_fedavg_at_matched_utility": claim(
            matched["fedavg_at_dp_fedavg_accuracy"] - mean["dp_fedavg"],
            ">",
            0.0,
            "FedAvg's exposure when it first reaches DP-FedAvg's accuracy, minus DP-FedAvg's final (bits)",
        ),
        "epsilon_at_most_bound": sanity(
            epsilon, "<=", cfg.epsilon_max, f"RDP accountant's epsilon at delta = 1/users ({delta:.1e})"
        ),
    }
    key_figures = {
        "exposure central": round(mean["central"], 2),
        "exposure FedAvg": round(mean["fedavg"], 2),
        "exposure clip-only": round(mean["clip_only"], 2),
        "exposure DP-FedAvg": round(mean["dp_fedavg"], 2),
        "epsilon": round(epsilon, 2),
        "acc FedAvg/clip/DP": "/".join(f"{acc[s]:.3f}" for s in ("fedavg", "clip_only", "dp_fedavg")),
    }

    def plot(fig: Any) -> None:
        ax_exp, ax_traj, ax_util = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.6, 1.2, 1]})
        reps = np.array([c["repetitions"] for c in corpus.canaries])
        levels = sorted(set(reps.tolist()))
        width = 0.2
        means_all = {s: results[s]["mean_exposure"] for s in SETTINGS}
        for j, setting in enumerate(SETTINGS):
            exp = np.array(results[setting]["exposure"])
            xs = np.array([levels.index(r) for r in reps]) + (j - 1.5) * width
            ax_exp.scatter(xs, exp, s=18, color=f"C{j}", alpha=0.8)
            means = [exp[reps == r].mean() for r in levels]
            ax_exp.bar(
                np.arange(len(levels)) + (j - 1.5) * width,
                means,
                width=width,
                color=f"C{j}",
                alpha=0.35,
                label=f"{SETTING_LABELS[setting]} (mean {means_all[setting]:.1f})",
            )
        ax_exp.axhline(math.log2(10**cfg.canary_digits), color="gray", ls=":", lw=1, label="max = log2|R|")
        ax_exp.set_xticks(range(len(levels)), [f"{r}x" for r in levels])
        ax_exp.set_xlabel("canary repetitions in its user's data")
        ax_exp.set_ylabel("exposure (bits)")
        ax_exp.set_title("Final canary exposure (dots: canaries, bars: mean)", fontsize=10)
        ax_exp.legend(fontsize=8, loc="upper left")
        for j, setting in enumerate(SETTINGS):
            traj = results[setting]["trajectory"]
            ax_traj.plot(
                [p["accuracy"] for p in traj],
                [p["mean_exposure"] for p in traj],
                "o-",
                ms=3,
                color=f"C{j}",
                label=SETTING_LABELS[setting],
            )
        ax_traj.set_xlabel("held-out next-word accuracy")
        ax_traj.set_ylabel("mean canary exposure (bits)")
        ax_traj.set_title("Exposure vs utility during training", fontsize=10)
        ax_traj.legend(fontsize=8)
        xs = np.arange(len(SETTINGS))
        ax_util.bar(xs, [acc[s] for s in SETTINGS], color=[f"C{j}" for j in range(len(SETTINGS))])
        for x, s in zip(xs, SETTINGS, strict=True):
            ax_util.text(x, acc[s], f"ppl {results[s]['perplexity']:.0f}", ha="center", va="bottom", fontsize=8)
        ax_util.set_xticks(xs, [SETTING_LABELS[s] for s in SETTINGS])
        ax_util.set_ylabel("held-out next-word accuracy")
        ax_util.set_xticklabels([SETTING_LABELS[s].replace(" (", "\n(") for s in SETTINGS], fontsize=7)
        ax_util.set_title(f"Final utility\nDP-FedAvg eps={epsilon:.1f}, delta=1/{n_users}", fontsize=10)

    return Outcome(metrics=metrics, checks=checks, key_figures=key_figures, plot=plot)


SPEC = MemoSpec(
    name="fl_memorization",
    paper="Thakkar, Ramaswamy, Mathews, Beaufays, Understanding Unintended Memorization in Federated Learning (2020)",
    claim="Canary exposure falls from central training to FedAvg on user-clustered data (626 users), and "
    "further to user-level DP-FedAvg at epsilon <= 10 (delta = 1/users) by more than clipping alone "
    "(the clip-only control) lowers it.",
    config_cls=FLMemorizationConfig,
    run=run,
    paper_headline="clustering data by user and Federated Averaging reduce unintended memorization; "
    "user-level DP gives the least",
)
