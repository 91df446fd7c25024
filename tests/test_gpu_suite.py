"""``benchmarks/gpu_suite.py`` runs end to end on CPU, so a session lent a GPU spends its short
device time on figures, not on fixing the script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True, timeout=timeout)


def test_a_bad_device_gets_one_line_naming_the_choices():
    result = _run("--device", "tpu", timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "tpu" in last and "cuda" in last and "cpu" in last, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # ~50 s: every part of the suite at small N
def test_the_quick_suite_gives_every_figure_on_cpu(tmp_path):
    out = tmp_path / "suite.json"
    result = _run("--device", "cpu", "--quick", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [row["num_envs"] for row in report["engine"]] == [16, 64]
    for row in report["engine"]:
        assert "error" not in row and "device_levels_error" not in row, row
        assert row["eager_steps_per_s"] > 0 and row["compiled_steps_per_s"] > 0
        assert isinstance(row["torchrl_eager_steps_per_s"], float), row["torchrl_eager_steps_per_s"]
    assert report["exactness"]["exact"] is True and report["exactness"]["episodes_ended"] > 0
    assert [(r["trainer"], r["returncode"]) for r in report["training"]] == [("sb3", 0), ("device", 0), ("device", 0)]
    assert all(r["frames_per_s"] > 0 for r in report["training"])
    profile = report["profile"]
    assert "error" not in profile, profile
    assert profile["collect_s"] > 0 and profile["update_s"] > 0 and len(profile["top_ops"]) == 15
    assert profile["engine"] == "device-levels" and "top_kernels" not in profile, "kernels only on CUDA"
    assert sum(op["share"] for op in profile["top_ops"]) <= 1.0 + 1e-9
    assert any("conv" in op["op"] for op in profile["top_ops"]), "the attention model's convolutions show"
    assert "operators by self CPU time" in result.stdout
