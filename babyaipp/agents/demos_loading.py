"""Loading a demonstration dataset written by :func:`babyaipp.agents.demos.record_demos`.

:func:`find_dataset` locates the one Minari data directory at or under a path, :func:`load_demos`
opens it and checks that it carries babyaipp's own metadata (``FORMAT`` under ``METADATA_KEY``),
and :class:`Demonstrations` wraps the Minari dataset with what was recorded about it (env id,
text mode, env keywords, seed) and its per-episode metadata grouped by held-out pair. The format
markers live here, beside the check that reads them; the recorder imports them from here, and
readers (behaviour cloning) need nothing of the recorder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babyaipp.errors import BabyAIPPError

FORMAT = "babyaipp-demos/1"
METADATA_KEY = "babyaipp"
_MINARI_METADATA = Path("data") / "metadata.json"


@dataclass
class Demonstrations:
    """A loaded demonstration dataset: the Minari dataset plus what babyaipp recorded about it."""

    path: Path
    dataset: Any  # minari.MinariDataset
    env_id: str
    text: str
    env_kwargs: dict[str, Any]
    seed: int

    @property
    def dataset_id(self) -> str:
        return str(self.dataset.spec.dataset_id) if hasattr(self.dataset, "spec") else str(self.dataset.id)

    def episode_metadata(self) -> list[dict[str, Any]]:
        """Per-episode metadata with ``dynamics`` and ``held_out_pairs`` decoded from JSON."""
        rows = list(self.dataset.storage.get_episode_metadata(self.dataset.episode_indices))
        for row in rows:
            row["dynamics"] = json.loads(row["dynamics"])
            row["held_out_pairs"] = [tuple(p) for p in json.loads(row["held_out_pairs"])]
            row["success"] = bool(row["success"])
            row["length"] = int(row["length"])
        return rows

    def by_held_out_pair(self) -> dict[str, list[int]]:
        """Episode indices grouped by held-out pair (``colour-property``; ``none`` for none)."""
        groups: dict[str, list[int]] = {}
        for index, row in zip(self.dataset.episode_indices, self.episode_metadata()):
            names = [f"{c}-{p}" for c, p in row["held_out_pairs"]] or ["none"]
            for name in names:
                groups.setdefault(name, []).append(int(index))
        return groups


def find_dataset(path: str | os.PathLike) -> Path:
    """The Minari data directory of the one dataset at or under ``path`` (a dataset root or folder)."""
    path = Path(path).absolute()
    if not path.exists():
        raise BabyAIPPError(f"demonstration dataset {str(path)!r} does not exist (record one with `babyaipp demos`)")
    if (path / "metadata.json").is_file() and path.name == "data":
        return path
    found = sorted(p.parent for p in path.rglob(str(_MINARI_METADATA)))
    if not found:
        raise BabyAIPPError(
            f"no Minari dataset under {path} (no */data/metadata.json); record one with `babyaipp demos`"
        )
    if len(found) > 1:
        shown = ", ".join(str(p.parent) for p in found)
        raise BabyAIPPError(f"{path} holds {len(found)} datasets ({shown}); pass one of them")
    return found[0]


def load_demos(path: str | os.PathLike) -> Demonstrations:
    """Load a dataset written by :func:`record_demos`; a clear error if it is empty or corrupt."""
    from minari import MinariDataset

    data_dir = find_dataset(path)
    try:
        dataset = MinariDataset(data_dir)
        info = dataset.storage.metadata.get(METADATA_KEY)
        total = int(dataset.total_episodes)
    except BabyAIPPError:
        raise
    except Exception as err:  # h5py/json/minari raise many kinds: all mean "unreadable"
        raise BabyAIPPError(f"demonstration dataset {data_dir} is corrupt or unreadable: {err}") from err
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise BabyAIPPError(
            f"{data_dir} is a Minari dataset but not one recorded by `babyaipp demos` "
            f"(no {METADATA_KEY!r} metadata of format {FORMAT})"
        )
    if total == 0:
        raise BabyAIPPError(f"demonstration dataset {data_dir} is empty (0 episodes)")
    return Demonstrations(
        path=data_dir,
        dataset=dataset,
        env_id=str(info["env_id"]),
        text=str(info["text"]),
        env_kwargs=dict(info.get("env_kwargs") or {}),
        seed=int(info["seed"]),
    )


__all__ = [
    "FORMAT",
    "METADATA_KEY",
    "Demonstrations",
    "find_dataset",
    "load_demos",
]
