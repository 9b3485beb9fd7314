"""The optimiser settings and learning-rate schedule that every trainer shares.

    optim:              # in any recipe
      steps: 2000
      batch_size: 16    # over all processes
      lr: 1.0e-3
      warmup_steps: 100
      final_lr_fraction: 0.05

AdamW; the learning rate rises linearly over `warmup_steps`, then follows a cosine from `lr` down
to `lr * final_lr_fraction` at the last step (1.0: constant after the warm-up, as RFT does).
Each trainer sets its own defaults; what only one trainer uses stays in that trainer's config.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a linear warm-up and a cosine decay to lr * final_lr_fraction."""

    steps: int = 1000
    """Optimiser steps in total (a resumed run continues up to this number)."""
    batch_size: int = 16
    """Samples per optimiser step over all processes; each of N processes takes batch_size / N
    (windows for the world model and the policy, start states for RFT)."""
    lr: float = 3e-4
    """Peak learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Steps of linear warm-up to the peak."""
    final_lr_fraction: float = 0.1
    """Learning rate at the last step as a fraction of the peak (1.0: no decay)."""
    grad_clip: float = 1.0
    """Clip of the global gradient norm (0: none)."""

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"optim.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("weight_decay", "warmup_steps", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.final_lr_fraction <= 1:
            raise ValueError(
                f"optim.final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}"
            )


def learning_rate(step: int, optim: OptimConfig, peak: float | None = None) -> float:
    """The learning rate of (0-based) `step`; `peak` puts another peak than optim.lr on the same
    schedule (a second parameter group)."""
    peak = optim.lr if peak is None else peak
    if step < optim.warmup_steps:
        return peak * ((step + 1) / optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / max(optim.steps - optim.warmup_steps, 1))
    f = optim.final_lr_fraction
    return peak * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * progress)))


def clip_gradients(params: Iterable[torch.Tensor], grad_clip: float) -> float:
    """Scale the gradients to a global norm of at most `grad_clip` (0: leave them); returns the
    norm before clipping."""
    return float(torch.nn.utils.clip_grad_norm_(list(params), grad_clip or math.inf))


BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU instruction sets (names as in /proc/cpuinfo) that run bfloat16 natively."""


def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((x for x in f if x.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def use_bf16(requested: bool, device: torch.device, flags: Iterable[str] | None = None) -> bool:
    """Whether to train under bfloat16 autocast: as `requested`, except on a CPU without bfloat16
    instructions (`flags`, default: this machine's), where emulated bfloat16 is an order of
    magnitude slower than float32; that is logged and float32 is used."""
    if not requested or device.type != "cpu":
        return requested
    if BF16_CPU_FLAGS & set(cpu_flags() if flags is None else flags):
        return True
    logging.getLogger(__name__).warning(
        "bf16 requested, but this CPU has no bfloat16 instructions (%s): emulated bfloat16 is "
        "about 12x slower than float32 here, so training runs in float32",
        " or ".join(sorted(BF16_CPU_FLAGS)),
    )
    return False
