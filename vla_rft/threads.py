"""CPU threads for torch, set up one way by every trainer and evaluator.

torch runs its intra-op work on an OpenMP team (libgomp in the pip wheels). By default a team
member that finishes its share spins, waiting for the next parallel region; when other jobs
share the cores, the spinning threads take the CPU from the ones still working and every
region waits for its slowest member (the quickstart reported 0.5 s per world-model step
alone, 13-14 s beside other jobs). With `OMP_WAIT_POLICY=PASSIVE` (libgomp) and
`KMP_BLOCKTIME=0` (Intel's OpenMP) waiting threads sleep instead. OpenMP reads both once, when
torch loads it (`import torch`), so `passive_openmp()` must run before the process's first
`import torch`: `vla-rft` calls it first thing. `bench/bench_training_load.py` measures the
difference.
"""

from __future__ import annotations

import contextlib
import os

PASSIVE_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
"""OpenMP environment under which waiting threads sleep rather than spin."""


def passive_openmp() -> None:
    """Put `PASSIVE_OPENMP` in the environment (values already set win), for this process if
    torch is not imported yet, and for its child processes."""
    for name, value in PASSIVE_OPENMP.items():
        os.environ.setdefault(name, value)


def set_torch_threads(threads: int) -> None:
    """`threads` intra-op threads and one inter-op thread (nothing here runs ops concurrently
    with `torch.jit.fork`, so more would only compete for the cores)."""
    import torch

    passive_openmp()
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:
        # settable once per process, before the first inter-op work: else keep what is set
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
