"""Checkpoints: weights in safetensors, optimiser state loaded with weights_only=True, and a
JSON record of the config, normalisation statistics and data fingerprint.

    <run>/checkpoints/step_000500/
        model.safetensors     weights (never pickled)
        optimizer.pt          optimiser/scheduler state (torch.load(weights_only=True))
        checkpoint.json       {"step", "config", "norm_stats", "data_fingerprint", "extra",
                               "weights_sha256"}

The weights are checked against `weights_sha256` on every load (CheckpointIntegrityError if they
differ); a checkpoint saved before the hash was recorded loads with a warning.

A checkpoint directory is written under a temporary name and renamed when complete, so a crash
mid-save leaves the previous one as the latest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vla_rft.contract.manifest import changed_files, sha256_file

WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RECORD_FILE = "checkpoint.json"
WEIGHTS_SHA256 = "weights_sha256"
"""Key of checkpoint.json holding the sha256 of WEIGHTS_FILE."""
log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or damaged; names the path."""


class CheckpointIntegrityError(CheckpointError):
    """Checkpoint weights whose sha256 differs from the one recorded when they were saved."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns."""

    path: Path
    step: int
    weights: dict[str, torch.Tensor]
    config: dict
    norm_stats: dict | None = None
    data_fingerprint: str | None = None
    extra: dict = field(default_factory=dict)
    optimizer: dict | None = None


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    config: dict,
    norm_stats: dict | None = None,
    data_fingerprint: str | None = None,
    optimizer_state: dict | None = None,
    extra: dict | None = None,
    keep_last: int = 3,
) -> Path:
    """Write step `step` of a run; keeps the newest `keep_last` checkpoints. Returns its path."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, tmp / WEIGHTS_FILE)
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    record = {
        "step": step,
        "config": config,
        "norm_stats": norm_stats,
        "data_fingerprint": data_fingerprint,
        "extra": extra or {},
        WEIGHTS_SHA256: sha256_file(tmp / WEIGHTS_FILE),
    }
    (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / RECORD_FILE).is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its latest checkpoint)."""
    path = Path(path)
    if (path / RECORD_FILE).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(
            f"{path}: no checkpoint here (expected {RECORD_FILE} or checkpoints/)"
        )
    return latest


def load_checkpoint(path: str | Path, with_optimizer: bool = False) -> Checkpoint:
    """Load a checkpoint (or a run's latest) without unpickling anything untrusted."""
    path = resolve_checkpoint(path)
    record = _read_record(path / RECORD_FILE)
    digest = record.get(WEIGHTS_SHA256)
    if digest is None:
        log.warning(
            "%s: no %s recorded (an older checkpoint); weights not verified", path, WEIGHTS_SHA256
        )
    elif changed_files(path, {WEIGHTS_FILE: digest}):
        raise CheckpointIntegrityError(
            f"{path / WEIGHTS_FILE}: content differs from the sha256 in {RECORD_FILE} "
            "(damaged or altered); refusing to load it"
        )
    try:
        weights = load_file(path / WEIGHTS_FILE)
    except (OSError, SafetensorError, ValueError) as err:
        raise CheckpointError(
            f"{path / WEIGHTS_FILE}: damaged or missing weights ({err})"
        ) from None
    optimizer = None
    if with_optimizer and (path / OPTIMIZER_FILE).is_file():
        try:
            optimizer = torch.load(path / OPTIMIZER_FILE, weights_only=True, map_location="cpu")
        except Exception as err:  # torch raises several types for damaged pickles
            raise CheckpointError(f"{path / OPTIMIZER_FILE}: damaged ({err})") from None
    return Checkpoint(
        path=path,
        step=record["step"],
        weights=weights,
        config=record["config"],
        norm_stats=record.get("norm_stats"),
        data_fingerprint=record.get("data_fingerprint"),
        extra=record.get("extra") or {},
        optimizer=optimizer,
    )


def _read_record(path: Path) -> dict:
    """checkpoint.json, checked for the keys every checkpoint has; CheckpointError naming it."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: a JSON object expected, got {type(record).__name__}")
    problems = [
        f"{key!r} {'missing' if key not in record else 'is not ' + kind.__name__}"
        for key, kind in (("step", int), ("config", dict))
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool)
    ]
    if not isinstance(record.get("extra") or {}, dict):
        problems.append("'extra' is not dict")
    if problems:
        raise CheckpointError(f"{path}: not a checkpoint record ({', '.join(problems)})")
    return record


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint) -> None:
    """Load weights, with an error that lists missing and unexpected tensors."""
    result = model.load_state_dict(checkpoint.weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{checkpoint.path}: weights do not fit the model "
            f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
