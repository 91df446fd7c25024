"""Runs under faults: SIGTERM and SIGKILL, two writers, resume bookkeeping, disk full, bad input.

Signals are sent to real ``babyaipp train`` processes (slow-marked); each has an in-process sibling
in the default run that checks the same code path.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.agents import progress, runs, training_resume
from babyaipp.agents.progress import ProgressCallback, read_progress
from babyaipp.agents.runs import checkpoints, latest_checkpoint, load_run
from babyaipp.cli import EXIT_TERMINATED, Terminated, main
from babyaipp.envs import pool
from babyaipp.errors import CheckpointError

FAST = ["--n-envs", "2", "--set", "n_steps=64", "--set", "batch_size=64", "--device", "cpu"]


def _train(out: Path, *extra: str, steps: int = 128) -> int:
    return main(["train", "--steps", str(steps), "--out", str(out), *FAST, *extra])


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


# ------------------------------------------------------------------ processes of a session
def _session_processes(sid: int) -> list[int]:
    """Pids (other than zombies) whose session is ``sid``: the CLI, its workers, forkserver, tracker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if session == sid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _start_cli(out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "babyaipp.cli", "train", "--steps", "1000000", "--out", str(out), *FAST, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(0.2)


def _no_processes_left(sid: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while _session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _session_processes(sid)


@pytest.mark.slow
def test_sigterm_checkpoints_prints_and_leaves_no_process(tmp_path):
    run = tmp_path / "run"
    proc = _start_cli(run, "--checkpoint-every", "0")
    try:
        _wait_for(lambda: (run / "progress.csv").exists(), timeout=120)  # the first update is done
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_TERMINATED
    assert "terminated" in err and "--resume" in err and "Traceback" not in err
    assert checkpoints(run), "SIGTERM saved a checkpoint"
    assert _config(run)["segments"][-1]["ended"] == "interrupted"
    assert _no_processes_left(proc.pid) == [], "level worker, forkserver and resource tracker are gone"
    assert not (run / runs.LOCK_NAME).exists()


@pytest.mark.slow
def test_sigkill_before_the_first_checkpoint_leaves_no_process_and_a_restartable_run(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _start_cli(run, "--checkpoint-every", "0")
    try:
        _wait_for(lambda: (run / "progress.csv").exists(), timeout=120)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert _no_processes_left(proc.pid) == [], "the level worker died with its parent"
    assert latest_checkpoint(run) is None
    capsys.readouterr()
    assert main(["train", "--resume", "--steps", "128", "--out", str(run), "--device", "cpu"]) == 0
    assert load_run(run)[0].num_timesteps >= 128


def _sleep_as_pool_worker(parent_pid: int) -> None:
    pool.init_worker(parent_pid)
    time.sleep(60)


def test_a_pool_worker_exits_soon_after_its_parent_dies():
    """The in-process sibling of the SIGKILL test: the worker initializer's watchdog."""
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    worker = multiprocessing.get_context("fork").Process(target=_sleep_as_pool_worker, args=(parent.pid,))
    worker.start()
    try:
        time.sleep(2 * pool.PARENT_POLL_SECONDS)
        assert worker.is_alive(), "the worker lives while its parent does"
        parent.kill()
        parent.wait()
        worker.join(timeout=5 * pool.PARENT_POLL_SECONDS)
        assert not worker.is_alive() and worker.exitcode == 0
    finally:
        parent.kill()
        if worker.is_alive():
            worker.kill()


def test_terminated_in_training_checkpoints_and_exits_143(tmp_path, monkeypatch, capsys):
    """The in-process sibling of the SIGTERM test: the CLI's SIGTERM exception, raised mid-rollout."""
    original = ProgressCallback._on_step
    closed = []

    def terminate_mid_rollout(self):
        if self.num_timesteps >= 160:
            raise Terminated
        return original(self)

    monkeypatch.setattr(ProgressCallback, "_on_step", terminate_mid_rollout)
    from babyaipp.envs.sb3 import BatchedSB3VecEnv

    close = BatchedSB3VecEnv.close
    monkeypatch.setattr(BatchedSB3VecEnv, "close", lambda self: (closed.append(1), close(self)))
    assert _train(tmp_path / "run", "--checkpoint-every", "0", steps=512) == EXIT_TERMINATED
    err = capsys.readouterr().err
    assert "terminated" in err and "step_128.zip" in err
    assert closed, "the engine (and its level workers) were closed"
    segments = _config(tmp_path / "run")["segments"]
    assert [(s["from"], s["to"], s["ended"]) for s in segments] == [(0, 128, "interrupted")]


def test_sigterm_raises_terminated_only_while_a_command_runs():
    from babyaipp import cli

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), cli._sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == before


def test_ctrl_c_before_the_first_update_saves_the_initial_weights(tmp_path, monkeypatch, capsys):
    from stable_baselines3 import PPO

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(PPO, "_setup_learn", interrupted)
    run = tmp_path / "run"
    assert _train(run) == 130
    err = capsys.readouterr().err
    assert "step_0.zip" in err and "object has no attribute" not in err
    monkeypatch.undo()
    assert main(["train", "--resume", "--out", str(run), "--device", "cpu"]) == 0
    assert load_run(run)[0].num_timesteps == 128


# ------------------------------------------------------------------ one writer per run directory
def test_a_second_writer_is_refused_while_the_first_holds_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    with runs.run_lock(run):
        assert _train(run) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and "another babyaipp process" in err
        assert not (run / "config.json").exists(), "the refused run wrote nothing"
    assert not (run / runs.LOCK_NAME).exists()
    assert _train(run) == 0
    with runs.run_lock(run):  # --resume while the run is being written is refused too
        assert main(["train", "--resume", "--steps", "256", "--out", str(run), "--device", "cpu"]) == 2
        assert "another babyaipp process" in capsys.readouterr().err
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_the_lock_is_held_by_another_process_too(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from babyaipp.agents.runs import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(runs.RunLockedError, match=f"pid {holder.pid}"), runs.run_lock(run):
            pass
    finally:
        holder.kill()
        holder.wait()
    with runs.run_lock(run):  # the lock died with its holder, even killed
        pass


# ------------------------------------------------------------------ restart and resume bookkeeping
def _as_if_killed_before_the_first_checkpoint(run: Path) -> None:
    for path in [run / "model.zip", *checkpoints(run).values()]:
        path.unlink()
    config = _config(run)
    config.update(segments=[], num_timesteps=0, completed=False)
    (run / "config.json").write_text(json.dumps(config))


def test_a_run_killed_before_its_first_checkpoint_can_be_restarted_or_resumed(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run) == 0
    _as_if_killed_before_the_first_checkpoint(run)
    assert _train(run) == 0, capsys.readouterr().err  # the same command starts it again
    assert len(_config(run)["segments"]) == 1
    _as_if_killed_before_the_first_checkpoint(run)
    assert main(["train", "--resume", "--out", str(run), "--device", "cpu"]) == 0, capsys.readouterr().err
    agent, config = load_run(run)
    assert agent.num_timesteps == 128 and config["completed"] and len(config["segments"]) == 1
    # A run with a checkpoint is still refused without --resume.
    assert _train(run) == 2 and "pass --resume" in capsys.readouterr().err


def test_resume_keeps_every_segment_and_never_lowers_the_recorded_steps(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, "--checkpoint-every", "128", steps=256) == 0
    # As if SIGKILLed after the 128-step checkpoint: the segment written at that checkpoint stays.
    (run / "model.zip").unlink()
    (run / "checkpoints" / "step_256.zip").unlink()
    config = _config(run)
    config["segments"] = [{"from": 0, "to": 128, "seconds": 1.0, "fps": 1.0, "ended": "running"}]
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", "--out", str(run), "--device", "cpu"]) == 0
    segments = _config(run)["segments"]
    assert [(s["from"], s["to"], s["ended"]) for s in segments] == [(0, 128, "killed"), (128, 256, "completed")]

    before = (run / "config.json").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", "--steps", "128", "--out", str(run), "--device", "cpu"]) == 2
    assert "--steps 128 is below the 256 steps" in capsys.readouterr().err
    assert main(["train", "--resume", "--steps", "256", "--out", str(run), "--device", "cpu"]) == 0
    assert (run / "config.json").read_bytes() == before, "a finished run asked for no more steps is untouched"


def test_a_checkpoint_written_during_training_records_its_segment(tmp_path):
    run = tmp_path / "run"
    seen = []
    original = progress.ProgressCallback.save_checkpoint

    def spy(self):
        path = original(self)
        seen.append(_config(run)["segments"][-1])
        return path

    progress.ProgressCallback.save_checkpoint = spy
    try:
        assert _train(run, "--checkpoint-every", "128", steps=256) == 0
    finally:
        progress.ProgressCallback.save_checkpoint = original
    assert [(s["to"], s["ended"]) for s in seen] == [(128, "running"), (256, "running")]
    assert _config(run)["segments"][-1]["ended"] == "completed"


# ------------------------------------------------------------------ disk full
def test_disk_full_during_training_is_one_line_and_keeps_the_checkpoints(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    original = progress.save_atomic

    def full_after_the_first(model, path):
        if checkpoints(run):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(model, path)

    monkeypatch.setattr(progress, "save_atomic", full_after_the_first)
    assert _train(run, "--checkpoint-every", "128", steps=256) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "step 128" in err
    assert sorted(checkpoints(run)) == [128]
    assert not (run / runs.LOCK_NAME).exists()


def test_two_resumes_of_one_checkpoint_are_identical(tmp_path):
    import shutil

    import torch

    run = tmp_path / "run"
    assert _train(run, "--checkpoint-every", "128", steps=256) == 0
    (run / "model.zip").unlink()
    (run / "checkpoints" / "step_256.zip").unlink()
    (run / "checkpoints" / "step_128.state.pt").unlink()  # the resume without the exact state
    copies = [tmp_path / "a", tmp_path / "b"]
    for copy in copies:
        shutil.copytree(run, copy)
        assert main(["train", "--resume", "--steps", "384", "--out", str(copy), "--device", "cpu"]) == 0
    (a, _), (b, _) = (load_run(c) for c in copies)
    for x, y in zip(a.policy.parameters(), b.policy.parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    rows = [[(r["timesteps"], r["episodes"]) for r in read_progress(c)] for c in copies]
    assert rows[0] == rows[1]


# ------------------------------------------------------------------ loading runs runs no code from them
class _Payload:
    """Unpickling this creates a file: the stand-in for code a crafted model.zip would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _with_pickled_entry(model_zip: Path, key: str, obj: object) -> None:
    import base64
    import zipfile

    import cloudpickle

    with zipfile.ZipFile(model_zip) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(entries["data"])
    data[key] = {":type:": "<class 'object'>", ":serialized:": base64.b64encode(cloudpickle.dumps(obj)).decode()}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(model_zip, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def test_loading_a_run_unpickles_nothing_from_model_zip(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run) == 0
    marker = tmp_path / "code-ran"
    _with_pickled_entry(run / "model.zip", "policy_kwargs", _Payload(marker))
    agent, _ = load_run(run)  # the package's own entries are rebuilt from config.json
    assert not marker.exists()
    assert agent.num_timesteps == 128
    _with_pickled_entry(run / "model.zip", "surprise", _Payload(marker))
    with pytest.raises(CheckpointError, match="surprise"):
        load_run(run)
    assert not marker.exists()


def test_a_corrupt_weights_file_or_a_model_of_the_wrong_kind_is_one_line(tmp_path, capsys):
    import zipfile

    run = tmp_path / "run"
    assert _train(run) == 0
    with zipfile.ZipFile(run / "model.zip") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = _config(run)
    config["recurrent"] = True  # the config says recurrent, the model is not
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.zip"):
        load_run(run)
    config["recurrent"] = False
    (run / "config.json").write_text(json.dumps(config))
    entries["policy.pth"] = b"PK\x03\x04 not torch" + bytes(100)
    with zipfile.ZipFile(run / "model.zip", "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    with pytest.raises(CheckpointError, match="corrupt") as caught:
        load_run(run)
    assert "weights_only" not in str(caught.value) and len(str(caught.value).splitlines()) == 1


# ------------------------------------------------------------------ demos
DEMO_ENV = "BabyAIPP/GoToRedBall-Easy-Train-v0"


def _temporaries(out: Path) -> list[Path]:
    return list(out.parent.glob(f".{out.name}.tmp-*"))


def test_demos_killed_by_sigterm_leaves_no_temporary_directory_and_no_process(tmp_path):
    out = tmp_path / "demos"
    command = [
        sys.executable,
        "-m",
        "babyaipp.cli",
        "demos",
        "--env",
        DEMO_ENV,
        "--episodes",
        "100000",
        "--workers",
        "2",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(lambda: any(t.rglob("*.hdf5") for t in _temporaries(out)), timeout=120)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_TERMINATED and "terminated" in err
    assert _temporaries(out) == [] and not out.exists()
    assert _no_processes_left(proc.pid) == []


def test_demos_terminated_removes_its_temporary_directory(tmp_path):
    from babyaipp.agents.demos import record_demos

    out = tmp_path / "demos"

    def terminate(n: int) -> None:
        assert _temporaries(out), "the dataset is being written to a temporary directory"
        raise Terminated

    with pytest.raises(Terminated):
        record_demos(out, DEMO_ENV, episodes=40, on_block=terminate)
    assert _temporaries(out) == [] and not out.exists()


def test_demos_removes_the_temporary_directory_of_a_killed_run(tmp_path):
    from babyaipp.agents.demos import record_demos

    out = tmp_path / "demos"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".demos.tmp-{dead.pid}-abc"
    live = tmp_path / f".demos.tmp-{os.getppid()}-abc"  # a process still running: left alone
    for path in (stale, live):
        (path / "babyaipp").mkdir(parents=True)
    record_demos(out, DEMO_ENV, episodes=2)
    assert not stale.exists() and live.exists()
    assert _temporaries(out) == [live]


# ------------------------------------------------------------------ success rate in TensorBoard
@pytest.mark.parametrize("engine", ["batched", "gym"])
def test_success_rate_reaches_tensorboard(engine, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / engine
    # Episodes of at most 16 steps: every env finishes several in 256 steps.
    assert _train(run, "--engine", engine, "--env-kwarg", "max_steps=16", steps=256) == 0
    agent, _ = load_run(run)
    events = EventAccumulator(str(next((run / "tb").iterdir())))
    events.Reload()
    assert "rollout/success_rate" in events.Tags()["scalars"]
    rates = [e.value for e in events.Scalars("rollout/success_rate")]
    assert rates and all(0.0 <= r <= 1.0 for r in rates)


def test_the_adapter_marks_success_only_on_a_rewarded_termination():
    import numpy as np

    from babyaipp.envs.registration import make_tokenized
    from babyaipp.envs.sb3 import BatchedSB3VecEnv, SuccessInfo

    vec = BatchedSB3VecEnv(DEMO_ENV, 2, max_steps=4)
    vec.reset()
    infos = []
    for _ in range(4):
        vec.step_async(np.zeros(2, dtype=np.int64))  # turn left: no success, a time-out at step 4
        infos = vec.step_wait()[3]
    vec.close()
    assert [info.get("is_success") for info in infos] == [False, False]
    single = SuccessInfo(make_tokenized(DEMO_ENV, max_steps=4))
    single.reset(seed=0)
    for _ in range(4):
        _, reward, terminated, truncated, info = single.step(0)
    assert truncated and info["is_success"] is False
    from babyaipp.envs.oracle import Oracle

    single = SuccessInfo(make_tokenized(DEMO_ENV))
    single.reset(seed=0)
    oracle = Oracle(single)
    oracle.reset()
    terminated = truncated = False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = single.step(oracle.act())
    assert terminated and reward > 0 and info["is_success"] is True


def test_a_resumed_segment_draws_from_its_own_random_stream(tmp_path, monkeypatch):
    import torch

    run = tmp_path / "run"
    assert _train(run, "--engine", "gym", "--checkpoint-every", "128", steps=256) == 0  # no exact state
    (run / "model.zip").unlink()
    (run / "checkpoints" / "step_256.zip").unlink()
    seen = []
    original = training_resume.learn

    def record(agent, *args, **kwargs):
        seen.append(torch.initial_seed())
        return original(agent, *args, **kwargs)

    monkeypatch.setattr(training_resume, "learn", record)
    assert main(["train", "--resume", "--out", str(run), "--device", "cpu"]) == 0
    assert seen == [0 + 1]  # seed + segment, not the run's seed the checkpoint's load applies


# ------------------------------------------------------------------ exact resume (batched engine)
def _weights(run: Path) -> list:
    return [p.detach().clone() for p in load_run(run)[0].policy.parameters()]


def _curve(run: Path) -> list[tuple]:
    return [(r["timesteps"], r["episodes"], r["mean_return"], r["success_rate"]) for r in read_progress(run)]


def _stop(run: Path, how: str, extra: list[str], monkeypatch) -> None:
    """Leave ``run`` as a run stopped at its 128-step update would be, in one of three ways."""
    if how == "stopped":  # by --steps
        assert _train(run, *extra, steps=128) == 0
        assert (run / "model.state.pt").is_file()
    elif how == "interrupted":  # Ctrl-C or SIGTERM mid-rollout, after the 128-step update
        original = ProgressCallback._on_step

        def interrupt(self):
            if self.num_timesteps >= 192:
                raise KeyboardInterrupt
            return original(self)

        monkeypatch.setattr(ProgressCallback, "_on_step", interrupt)
        assert _train(run, *extra, steps=256) == 130
        monkeypatch.setattr(ProgressCallback, "_on_step", original)
        assert (run / "checkpoints" / "step_128.state.pt").is_file()
    else:  # SIGKILL after the 128-step checkpoint: what came later was never written
        assert _train(run, *extra, steps=256) == 0
        for name in ("model.zip", "model.state.pt", "checkpoints/step_256.zip", "checkpoints/step_256.state.pt"):
            (run / name).unlink()
        config = _config(run)
        config["segments"][-1].update(to=128, ended="running")
        (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("recurrent", "how"),
    [(False, "stopped")]
    + [
        pytest.param(r, h, marks=pytest.mark.slow)
        for r in (False, True)
        for h in ("stopped", "interrupted", "killed")
        if (r, h) != (False, "stopped")
    ],
)
def test_a_resumed_run_is_identical_to_the_uninterrupted_one(recurrent, how, tmp_path, monkeypatch):
    import torch

    extra = ["--checkpoint-every", "128", "--env-kwarg", "max_steps=24", *(["--recurrent"] * recurrent)]
    whole, resumed = tmp_path / "whole", tmp_path / how
    assert _train(whole, *extra, steps=256) == 0
    _stop(resumed, how, extra, monkeypatch)
    assert main(["train", "--resume", "--steps", "256", "--out", str(resumed), "--device", "cpu"]) == 0
    assert _curve(resumed) == _curve(whole)
    for a, b in zip(_weights(resumed), _weights(whole)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert _config(resumed)["train_seeds_used"] == _config(whole)["train_seeds_used"]


def test_without_its_state_file_a_checkpoint_resumes_as_documented(tmp_path):
    run = tmp_path / "run"
    assert _train(run, "--checkpoint-every", "128", steps=128) == 0
    (run / "model.state.pt").unlink()
    assert main(["train", "--resume", "--steps", "256", "--out", str(run), "--device", "cpu"]) == 0
    assert _config(run)["train_seeds_used"] == [0, 1, 2, 3]  # fresh envs from the next seeds
    (run / "model.state.pt").write_bytes(b"not a state")
    with pytest.raises(CheckpointError, match="model.state.pt is corrupt"):
        training_resume.resume(run, steps=384, device="cpu")


@pytest.mark.slow
def test_two_trainings_started_together_into_one_directory_one_is_refused(tmp_path):
    run = tmp_path / "dup"
    first = _start_cli(run)
    time.sleep(0.3)
    second = _start_cli(run)
    try:
        done = None
        deadline = time.monotonic() + 120
        while done is None and time.monotonic() < deadline:
            done = next((p for p in (first, second) if p.poll() is not None), None)
            time.sleep(0.2)
        assert done is not None, "one of them was refused"
        other = second if done is first else first
        assert done.returncode == 2 and "another babyaipp process" in done.stderr.read()
        assert other.poll() is None, "the other one keeps training"
        other.send_signal(signal.SIGTERM)
        other.communicate(timeout=60)
        assert other.returncode == EXIT_TERMINATED
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
