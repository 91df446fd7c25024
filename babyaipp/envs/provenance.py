"""What another machine needs to rebuild these environments: pinned packages and a link to the code.

Datasets recorded on BabyAI++ envs (Minari's ``requirements`` and ``code_permalink`` metadata)
carry these, so ``dataset.recover_environment()`` warns when the installed versions differ from
the ones that generated the levels.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

#: Packages whose versions define the levels and the observation (generator, API, this package).
ENV_PACKAGES = ("babyaipp", "minigrid", "gymnasium")


def environment_requirements() -> list[str]:
    """``["babyaipp==0.1.0", "minigrid==3.2.0", ...]``: pip pins of :data:`ENV_PACKAGES` as installed."""
    pins = []
    for name in ENV_PACKAGES:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def _git_commit(directory: Path) -> str | None:
    """The checkout's commit (``+dirty`` if files differ from it), or ``None`` outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def code_permalink() -> str:
    """The project's URL at the commit that is running (or at the installed version outside git)."""
    try:
        meta = importlib.metadata.metadata("babyaipp")
        urls = [u.split(",", 1)[-1].strip() for u in meta.get_all("Project-URL") or []]
        version = meta["Version"]
    except importlib.metadata.PackageNotFoundError:
        urls, version = [], "unknown"
    url = urls[0] if urls else "babyaipp"
    commit = _git_commit(Path(__file__).resolve().parent)
    return f"{url}/tree/{commit}" if commit else f"{url} (version {version})"
