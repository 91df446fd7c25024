"""``babyaipp sweep``: trial configs and keys, one trial in-process (failure, resume), and tiny sweeps on
a local 2-CPU Ray through the CLI: aggregated table and figures, a rerun that runs nothing, a failing
trial reported while the others finish."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.agents import training
from babyaipp.agents.runs import latest_checkpoint, read_config
from babyaipp.cli import main
from babyaipp.errors import ConfigError, InvalidChoiceError
from babyaipp.experiments import sweep
from babyaipp.experiments.trials import TrialConfig, expand_grid, is_trial_done, run_trial, trial_dir

ENV = "BabyAIPP/GoToRedBall-Easy-Train-v0"
#: A few hundred PPO steps in two updates, and a handful of evaluation episodes.
HYPER = {"n_steps": 64, "batch_size": 64}
FAST = [
    "--steps",
    "256",
    "--episodes",
    "4",
    "--n-envs",
    "2",
    "--set",
    "n_steps=64",
    "--set",
    "batch_size=64",
    "--reps",
    "500",
    "--checkpoint-every",
    "0",
]


def _trial(**changes) -> TrialConfig:
    base = TrialConfig(env_id=ENV, model="image", seed=0, steps=256, episodes=4, n_envs=2, hyperparameters=HYPER)
    return replace(base, **changes)


# --------------------------------------------------------------------------- configs and keys (no Ray)
def test_key_is_readable_and_changes_with_every_field_of_the_config():
    trial = _trial()
    assert trial.key.startswith("GoToRedBall-Easy-Train_image_ppo_full_s0_")
    assert trial.key == _trial().key, "stable across calls"
    changed = [
        _trial(seed=1),
        _trial(model="film"),
        _trial(text="lorem"),
        _trial(recurrent=True),
        _trial(steps=512),
        _trial(episodes=5),
        _trial(n_envs=4),
        _trial(env_id="BabyAIPP/GoToRedBall-Hard-Train-v0"),
        _trial(hyperparameters={"n_steps": 128, "batch_size": 64}),
        _trial(env_kwargs={"room_size": 6}),
    ]
    keys = {t.key for t in changed} | {trial.key}
    assert len(keys) == len(changed) + 1
    assert _trial(recurrent=True).key.startswith("GoToRedBall-Easy-Train_image_ppo-lstm_full_s0_")
    assert _trial(greedy=True).key != trial.key and _trial(engine="gym").key != trial.key


def test_fields_added_later_keep_older_keys_at_their_default():
    """``greedy``, ``engine`` and ``trainer`` came after the first sweeps, whose trials ran single envs
    (``gym``) with SB3: at those values they stay out of the hash, so older sweep directories keep their keys."""
    import hashlib

    payload = {k: v for k, v in _trial().as_dict().items() if k not in ("greedy", "engine", "trainer")}
    old_digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    assert _trial(engine="gym").digest == old_digest
    assert _trial().engine == "batched" and _trial().digest != old_digest  # the new default is another run
    bc = expand_grid([ENV], ["image"], seeds=[0], steps=256, episodes=4, algos=["bc"], demos="d")[0]
    assert bc.engine == "gym", "the engine does not apply to BC, whose keys stay as before"


def test_grid_expands_every_combination_seeds_outermost_and_once():
    trials = expand_grid([ENV], ["image", "attention"], seeds=[0, 1, 1], steps=256, episodes=4, texts=["full", "none"])
    assert len(trials) == 2 * 2 * 2  # the repeated seed runs once
    assert [t.seed for t in trials] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert {(t.model, t.text) for t in trials} == {(m, x) for m in ("image", "attention") for x in ("full", "none")}


def test_bad_axis_values_fail_before_any_work():
    with pytest.raises(InvalidChoiceError, match="unknown model 'cnn'; valid choices: image"):
        _trial(model="cnn")
    with pytest.raises(InvalidChoiceError, match="unknown algo 'dqn'"):
        _trial(algo="dqn")
    with pytest.raises(InvalidChoiceError, match="text mode"):
        _trial(text="poem")
    with pytest.raises(ConfigError, match=r"seed=1000 .*\[0, 999\]"):
        _trial(seed=1000)
    with pytest.raises(InvalidChoiceError, match="env id"):
        _trial(env_id="GoToRedBall")
    with pytest.raises(ConfigError, match="unknown hyperparameter 'lr'"):
        _trial(hyperparameters={"lr": 1e-3})
    with pytest.raises(ConfigError, match=r"batch_size=256 is larger than a rollout"):
        _trial(hyperparameters={}, n_envs=1)
    with pytest.raises(ConfigError, match="--models is empty"):
        expand_grid([ENV], [], seeds=[0], steps=1, episodes=1)
    assert main(["sweep", "--models", "cnn", "--out", "unused"]) == 2


# --------------------------------------------------------------------------- one trial, in this process
def test_a_failing_trial_is_recorded_with_its_traceback(tmp_path):
    trial = _trial(env_kwargs={"no_such_kwarg": 1})
    outcome = run_trial(trial.as_dict(), str(tmp_path / trial.key))
    assert outcome["status"] == "failed" and "no_such_kwarg" in outcome["error"]
    assert "Traceback" in (tmp_path / trial.key / "error.txt").read_text()
    meta = json.loads((tmp_path / trial.key / "trial.json").read_text())
    assert meta["status"] == "failed" and meta["config"] == trial.as_dict()
    assert not is_trial_done(tmp_path / trial.key, trial)


def test_an_interrupted_trial_resumes_its_training_then_evaluates(tmp_path):
    trial = _trial()
    folder = trial_dir(tmp_path, trial)
    training.train(
        folder,
        env_id=ENV,
        model="image",
        steps=128,
        n_envs=2,
        seed=0,
        device="cpu",
        hyperparameters=HYPER,
        checkpoint_every=0,
    )
    outcome = run_trial(trial.as_dict(), str(folder))
    assert outcome["status"] == "done", outcome
    meta = json.loads((folder / "trial.json").read_text())
    assert meta["training"] == "resumed"
    assert read_config(folder)["num_timesteps"] == 256
    results = json.loads((folder / "eval" / "results.json").read_text())
    assert set(results["splits"]) == {"Train", "Test", "TargetPairOnly"}
    assert results["episodes_per_split"] == 4
    assert is_trial_done(folder, trial)
    assert results["actions"].startswith("sampled")

    # The sweep finds it done: nothing is submitted, so Ray is not even started.
    import ray

    before = (folder / "eval" / "results.json").stat().st_mtime_ns
    report = sweep.run_sweep([trial], tmp_path, num_cpus=1)
    assert (report.skipped, report.ran, report.failed) == ([trial.key], [], {})
    assert not ray.is_initialized()
    assert (folder / "eval" / "results.json").stat().st_mtime_ns == before

    # Results evaluated under another action rule (here: greedy, from before eval sampled) do not count.
    del results["actions"]
    (folder / "eval" / "results.json").write_text(json.dumps(results))
    assert not is_trial_done(folder, trial)


# --------------------------------------------------------------------------- on a local Ray with 2 CPUs
# Starting Ray costs ~10 s; the two tests took 20-50 s in all on two shared cores (under the ~60 s budget).
@pytest.fixture(scope="module")
def local_ray():
    """One Ray for the module (starting one costs seconds); run_sweep uses it and leaves it running."""
    pytest.importorskip("ray")
    import ray

    started = sweep._ray_init(None, 2)
    yield ray
    if started:
        ray.shutdown()


def _mtimes(sweep_dir: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in (sweep_dir / "trials").rglob("*") if p.is_file()}


def test_tiny_sweep_through_the_cli_aggregates_and_a_rerun_runs_nothing(local_ray, tmp_path, capfd):
    out = tmp_path / "sweep"
    args = ["sweep", "--models", "image,attention", "--seeds", "0,1", *FAST, "--out", str(out)]
    assert main(args) == 0
    captured = capfd.readouterr()
    assert "4 trials: 0 already done, 4 ran, 0 failed" in captured.out
    assert "| attention ppo text=full | 2 |" in captured.out and "| image ppo text=full | 2 |" in captured.out
    noise = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("sweep")]
    assert not noise, f"only the progress view on stderr, got: {noise}"
    for name in ("summary.json", "summary.md", "success.png", "curves.png", "sweep.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    groups = summary["envs"][ENV]["groups"]
    assert [g["label"] for g in groups] == ["attention ppo text=full", "image ppo text=full"]
    for group in groups:
        assert group["seeds"] == [0, 1] and group["curve"]["n_seeds"] == 2
        for cell in group["splits"].values():
            assert cell["ci"][0] <= cell["iqm"] <= cell["ci"][1]
    trials = sorted(p.name for p in (out / "trials").iterdir())
    assert len(trials) == 4
    config = read_config(out / "trials" / trials[0])  # a normal run directory
    assert config["num_timesteps"] == 256 and config["hyperparameters"]["n_steps"] == 64

    # Result files name no absolute path and no host: a sweep directory can be moved and shared.
    for path in out.rglob("*.json"):
        text = path.read_text()
        assert str(tmp_path) not in text and f'"{socket.gethostname()}"' not in text, path
    assert "host" not in json.loads((out / "trials" / trials[0] / "trial.json").read_text())

    before = _mtimes(out)
    assert main(args) == 0
    assert "4 trials: 4 already done, 0 ran, 0 failed" in capfd.readouterr().out
    assert _mtimes(out) == before, "no trial file was touched by the rerun"
    log = json.loads((out / "sweep.json").read_text())["invocations"]
    assert [(i["ran"], i["skipped"]) for i in log] == [(4, 0), (0, 4)]

    assert main(["compare", str(out), "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "summary.json").read_text())
    iqms = [[c["iqm"] for c in g["splits"].values()] for g in groups]
    assert [[c["iqm"] for c in g["splits"].values()] for g in report["envs"][ENV]["groups"]] == iqms
    assert main(["compare", str(out / "trials" / trials[0]), "--out", str(tmp_path / "one")]) == 0


def test_a_failing_trial_is_reported_while_the_others_finish(local_ray, tmp_path, capfd):
    good = [_trial(model="image", seed=0), _trial(model="film", seed=0)]
    bad = _trial(model="film", seed=1, env_kwargs={"no_such_kwarg": 1})
    seen = []
    report = sweep.run_sweep([*good, bad], tmp_path / "s", on_update=lambda s: seen.append(len(s.failed)))
    assert report.failed.keys() == {bad.key} and "no_such_kwarg" in report.failed[bad.key]
    assert sorted(report.ran) == sorted(t.key for t in [*good, bad])
    assert all(is_trial_done(trial_dir(tmp_path / "s", t), t) for t in good)
    assert "Traceback" in (trial_dir(tmp_path / "s", bad) / "error.txt").read_text()
    assert seen[0] == 0 and seen[-1] == 1

    out = tmp_path / "cli"
    code = main(
        ["sweep", "--models", "image", "--seeds", "0", *FAST, "--env-kwarg", "no_such_kwarg=1", "--out", str(out)]
    )
    assert code == 1
    text = capfd.readouterr().out
    assert "1 failed" in text and "FAILED GoToRedBall-Easy-Train_image_ppo_full_s0_" in text and "error.txt" in text
    assert "## Failed trials" in (out / "summary.md").read_text()


def _listening_addresses_of(pids: set[int]) -> list[str]:
    """Local addresses of the TCP sockets in LISTEN state that ``pids`` hold."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1].split(":")[0])
    return found


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier += children
    return found


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_a_local_ray_listens_on_the_loopback_interface_only(local_ray):
    addresses = _listening_addresses_of(_descendants(os.getpid()))
    assert addresses, "Ray's servers were found"
    assert set(addresses) <= LOOPBACK, f"listening beyond 127.0.0.1: {sorted(set(addresses) - LOOPBACK)}"


# --------------------------------------------------------------------------- checked before any side effect
def _sweep(out: Path, *extra: str) -> int:
    return main(["sweep", "--models", "image", "--seeds", "0", *FAST, "--out", str(out), "--quiet", *extra])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algos", "bc"], "--algos bc needs --demos"),
        (["--n-envs", "0"], "--n-envs=0 is out of range"),
        (["--set", "n_epochs=2.5"], "n_epochs=2.5 must be a whole number"),
        (["--set", "learning_rate=abc"], "learning_rate='abc' is not a number"),
        (["--address", "127.0.0.1:9"], "cannot reach the Ray cluster at --address '127.0.0.1:9'"),
    ],
)
def test_bad_sweep_input_fails_fast_and_leaves_nothing(extra, message, tmp_path, capsys):
    import time

    out = tmp_path / "sweep"
    began = time.perf_counter()
    assert _sweep(out, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists(), "nothing was written"
    assert time.perf_counter() - began < 10


def test_gpus_asked_for_on_a_machine_without_cuda_fail_before_ray_starts(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "sweep"
    assert _sweep(out, "--gpus-per-trial", "1") == 2
    assert "--gpus-per-trial=1 asks for GPUs" in capsys.readouterr().err
    assert not out.exists()


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert _sweep(out) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_starting_ray_keeps_the_commands_sigterm_handler(monkeypatch):
    """Ray's init replaces SIGTERM's handler with its own exit; the CLI's (checkpoint, clean up) must stay."""
    import signal

    import ray

    from babyaipp import cli

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: signal.signal(signal.SIGTERM, lambda *a: None))
    with cli._sigterm_as_interrupt():
        ours = signal.getsignal(signal.SIGTERM)
        assert sweep._ray_init(None, 1) is True
        assert signal.getsignal(signal.SIGTERM) is ours


@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_checkpoints_its_trials_and_leaves_no_process(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "babyaipp.cli",
        "sweep",
        "--models",
        "image",
        "--seeds",
        "0",
        "--steps",
        "1000000",
        "--episodes",
        "2",
        "--n-envs",
        "2",
        "--num-cpus",
        "1",
        "--checkpoint-every",
        "0",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    try:
        deadline = time.monotonic() + 180
        while not list(out.glob("trials/*/progress.csv")):  # the trial has finished an update
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143 and "terminated" in err
    (trial,) = list((out / "trials").iterdir())
    assert latest_checkpoint(trial) is not None, "the trial saved its last update"
    deadline = time.monotonic() + 15
    while _descendants_of_session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _descendants_of_session(proc.pid) == []


def _descendants_of_session(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found
