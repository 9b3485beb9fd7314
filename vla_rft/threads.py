"""CPU threads for torch, set up one way by every trainer and evaluator.

torch runs its intra-op work on an OpenMP team (libgomp in the pip wheels) whose members wait
for each other at the end of every parallel region. When other jobs share the cores, a member
that is descheduled holds the whole team up, and the team's spinning members take CPU time from
it: a world-model step at the quickstart's shapes took 0.81 s alone and 3.66 s beside one busy
process with 2 threads on 2 cores, but 1.46 s alone and 1.47 s beside it with 1 thread
(`bench/bench_training_load.py`). Making OpenMP's waiting threads sleep (OMP_WAIT_POLICY=PASSIVE)
or spin less (GOMP_SPINCOUNT) made both cases slower, so OpenMP keeps its defaults.

What helps is fewer threads when the cores are busy. `set_torch_threads(n)` sets n intra-op
threads; `adapt_threads()`, called once per training step, re-chooses them every few seconds:
`n`, or fewer when other processes keep CPUs busy (measured from /proc over the last period, this
process excluded), at least one.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

ADAPT_PERIOD_S = 5.0
"""Seconds between two looks at how busy the other processes keep the CPUs."""


def threads_for(requested: int, cpus: int, others_busy: float) -> int:
    """Threads to use: `requested`, at most the CPUs the other processes leave free (rounded
    to the nearest), at least 1. `others_busy` is in CPUs (1.0 = one core kept busy)."""
    free = cpus - others_busy
    return max(1, min(requested, int(free + 0.5)))


@dataclass
class _CpuSample:
    at: float
    busy_ticks: int
    own_ticks: int


def _cpu_sample() -> _CpuSample | None:
    """Busy clock ticks of the machine and of this process, from /proc (None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return _CpuSample(time.monotonic(), sum(fields[:8]) - idle, int(own[11]) + int(own[12]))


@dataclass
class _Governor:
    requested: int = 0
    current: int = 0
    last: _CpuSample | None = None


_GOVERNOR = _Governor()


def set_torch_threads(threads: int) -> None:
    """`threads` intra-op threads and one inter-op thread (nothing here runs ops concurrently
    with `torch.jit.fork`, so more would only compete for the cores); `adapt_threads` may lower
    the intra-op count while other processes keep the CPUs busy."""
    import torch

    torch.set_num_threads(threads)
    _GOVERNOR.requested = _GOVERNOR.current = threads
    _GOVERNOR.last = _cpu_sample()
    if torch.get_num_interop_threads() != 1:
        # settable once per process, before the first inter-op work: else keep what is set
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


def adapt_threads(period_s: float = ADAPT_PERIOD_S) -> int:
    """Call once per training step. Every `period_s`, set torch's intra-op threads to
    `threads_for(requested, cpus, CPUs the other processes used since the last look)`.
    Returns the threads in use."""
    g = _GOVERNOR
    if g.requested <= 1 or g.last is None or time.monotonic() - g.last.at < period_s:
        return g.current
    now = _cpu_sample()
    if now is None:
        return g.current
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    elapsed = now.at - g.last.at
    others = ((now.busy_ticks - g.last.busy_ticks) - (now.own_ticks - g.last.own_ticks)) / (
        ticks_per_s * elapsed
    )
    g.last = now
    threads = threads_for(g.requested, len(os.sched_getaffinity(0)), max(0.0, others))
    if threads != g.current:
        import torch

        torch.set_num_threads(threads)
        g.current = threads
    return threads
