"""Test-wide settings: headless plotting/rendering, and one thread per xdist worker."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one BLAS/OpenMP thread and one torch thread each, or the workers'
    # thread pools fight over the cores and numeric tests run many times slower.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
