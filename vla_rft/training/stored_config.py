"""A trainer config read back from a checkpoint record, which stores `to_dict(config)`."""

from __future__ import annotations

import copy
from typing import TypeVar

from vla_rft.contract.config import from_dict
from vla_rft.models.checkpoint import Checkpoint

T = TypeVar("T")

OLD_NAMES = {
    "val_every": "eval_every",
    "optim.lr_min_ratio": "optim.final_lr_fraction",
    "optim.l1_weight": "l1_weight",
    "optim.decoded_frames": "decoded_frames",
    "optim.bf16": "bf16",
    "grpo.steps": "optim.steps",
    "grpo.start_states": "optim.batch_size",
    "grpo.head_lr": "optim.lr",
    "grpo.warmup_steps": "optim.warmup_steps",
    "grpo.grad_clip": "optim.grad_clip",
}
"""Names the trainers used before they shared one vocabulary (dotted) -> today's."""


def stored_config(cls: type[T], checkpoint: Checkpoint) -> T:
    """The config `checkpoint` was trained with, as `cls`. Records of the older trainers are read
    with their names mapped to today's; a world-model run's `name` gives way to `run_dir`, the
    directory the checkpoint is in. (Their policy and RFT batch sizes were per process: the same
    number for a single process.)"""
    data = copy.deepcopy(checkpoint.config)
    if data.pop("name", None) is not None:
        data.setdefault("run_dir", str(checkpoint.path.parents[1]))  # <run>/checkpoints/step_N
    for old, new in OLD_NAMES.items():
        *old_parents, old_key = old.split(".")
        node = data
        for part in old_parents:
            node = node.get(part, {})
        if old_key not in node:
            continue
        value = node.pop(old_key)
        *new_parents, new_key = new.split(".")
        target = data
        for part in new_parents:
            target = target.setdefault(part, {})
        target[new_key] = value
    return from_dict(cls, data)
