"""Data-parallel training under `torchrun`: gloo on the CPU, NCCL on GPUs.

Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vla_rft.contract.config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun job if there is one; choose the device ('auto', 'cpu', 'cuda')."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def per_process(batch_size: int, info: DistInfo) -> int:
    """This process's share of a global `batch_size` (optim.batch_size)."""
    if batch_size % info.world_size:
        raise ConfigError(
            f"optim.batch_size {batch_size} must divide by {info.world_size} processes"
        )
    return batch_size // info.world_size


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel when there are several processes, the model itself otherwise."""
    if info.world_size == 1:
        return model
    ids = [info.local_rank] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def all_reduce_mean(value: torch.Tensor | float, info: DistInfo) -> float:
    """Mean of a scalar over all processes."""
    t = torch.as_tensor(value, dtype=torch.float64, device=info.device).detach().clone()
    if info.world_size > 1:
        dist.all_reduce(t)
        t /= info.world_size
    return float(t)


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params, info: DistInfo) -> None:
    """All-reduce the gradients of `params` to their mean over processes (explicit DDP for loops
    whose losses do not go through a module's forward, such as GRPO's log-probabilities)."""
    if info.world_size == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= info.world_size
