"""Small shared helpers: output directories, atomic file writes and device selection."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from babyaipp.defaults import DEFAULT_DEVICE
from babyaipp.errors import BabyAIPPError, ConfigError, check_choice

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a directory this process may create and write, or a one-line error naming ``flag``.

    Checked before any work starts, so a bad ``--out`` fails in a second, not after training.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a file, not a directory; choose a directory")
    existing = path
    while not existing.exists():  # the nearest existing ancestor is the one that must be writable
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and (not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK)):
        what = "is a file" if not existing.is_dir() else "is not writable"
        raise ConfigError(f"{flag} {str(path)!r} cannot be created or written: {str(existing)!r} {what}")
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    A crash or Ctrl-C in the middle leaves the old file (or nothing), never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format taken from ``path``'s suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs))


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def resolve_device(device: str = DEFAULT_DEVICE) -> str:
    """Map ``auto``/``cpu``/``cuda`` to a torch device string, with a clear error if CUDA is absent."""
    check_choice("device", device, DEVICE_CHOICES)
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BabyAIPPError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    return device
