"""The model registry in `models/`: numbered versions, each self-contained, and a `current` link.

    models/
      v001/                    one version
        version.json           lineage, data, metrics, files (VersionRecord)
        policy.onnx ...        the exported package the robot loads (vla-rft export)
        checkpoints/policy/    the torch weights it came from (the next round fine-tunes them)
        checkpoints/world_model/
        eval/report.json       its evaluation on the suite
      current -> v001          what `vla-rft bringup --policy-model models/current` runs

A version is registered whether or not the gate promotes it (its record says which, and why);
only promotion moves `current`. `vla-rft models promote v001` moves it back (a rollback).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vla_rft.contract.manifest import changed_files, sha256_file

VERSION_FILE = "version.json"
CURRENT_LINK = "current"
_VERSION_NAME = re.compile(r"^v(\d{3,})$")
CHECKPOINT_FILES = ("model.safetensors", "checkpoint.json")
"""What a version keeps of a training checkpoint (not the optimiser state)."""


class RegistryError(ValueError):
    """A registry operation that cannot be done; says why."""


@dataclass
class VersionRecord:
    """`models/vNNN/version.json`."""

    version: str
    """'v001', 'v002', ..."""
    created: float
    """Unix time of registration."""
    parent: str | None
    """The version this one was fine-tuned from (None for the first)."""
    status: str
    """'promoted' (became current at registration), 'rejected' by the gate, or 'registered'
    (passed or not gated, but not made current: another version was current)."""
    data: list[dict] = field(default_factory=list)
    """Episode sets it was trained on: {path, episodes, fingerprint, provenance}."""
    metrics: dict = field(default_factory=dict)
    """Evaluation summary (success per perturbation) and training figures."""
    gate: dict = field(default_factory=dict)
    """The gate's decision against the parent: {promote, reasons, table}."""
    files: dict[str, str] = field(default_factory=dict)
    """Path inside the version -> sha256."""
    sources: dict[str, str] = field(default_factory=dict)
    """Where its checkpoints were trained (run directories)."""
    pipeline_config: str = ""
    """The pipeline config (recipes) it was made with; the next flywheel round reuses it."""

    @classmethod
    def read(cls, version_dir: Path) -> VersionRecord:
        path = version_dir / VERSION_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise RegistryError(
                f"{version_dir}: not a registered version (no {VERSION_FILE})"
            ) from None
        except (json.JSONDecodeError, TypeError) as err:
            raise RegistryError(f"{path}: unreadable version record ({err})") from None

    def write(self, version_dir: Path) -> None:
        tmp = version_dir / (VERSION_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, version_dir / VERSION_FILE)


def list_versions(models: Path) -> list[VersionRecord]:
    """Registered versions, oldest first (directories without a record are skipped)."""
    if not models.is_dir():
        return []
    names = sorted(
        (p for p in models.iterdir() if p.is_dir() and _VERSION_NAME.match(p.name)),
        key=lambda p: int(p.name[1:]),
    )
    return [VersionRecord.read(p) for p in names if (p / VERSION_FILE).is_file()]


def current_version(models: Path) -> str | None:
    link = models / CURRENT_LINK
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    return Path(target).name if (models / target / VERSION_FILE).is_file() else None


def set_current(models: Path, version: str) -> None:
    """Point `models/current` at `version`, atomically (a crash leaves the old or the new)."""
    if not (models / version / VERSION_FILE).is_file():
        raise RegistryError(f"{models / version}: not a registered version")
    tmp = models / f".{CURRENT_LINK}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(version, tmp)
    os.replace(tmp, models / CURRENT_LINK)


def _copy_checkpoint(src: Path, dst: Path) -> None:
    from vla_rft.models.checkpoint import load_checkpoint

    ckpt_dir = load_checkpoint(src).path
    dst.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        shutil.copy2(ckpt_dir / name, dst / name)


def register(
    models: Path,
    package: Path,
    policy_checkpoint: Path,
    world_model_checkpoint: Path,
    parent: str | None,
    data: list[dict],
    metrics: dict,
    eval_dir: Path | None = None,
    gate: dict | None = None,
    promote: bool = True,
    pipeline_config: str = "",
) -> VersionRecord:
    """Copy a model package, its checkpoints and evaluation into the next version directory,
    write its record, and (if `promote`) make it current. The version appears complete or not
    at all: it is assembled under a hidden name and renamed."""
    models.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[1:]) for p in models.iterdir() if _VERSION_NAME.match(p.name)]
    version = f"v{max(numbers, default=0) + 1:03d}"
    staging = models / f".{version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(package, staging)
    _copy_checkpoint(policy_checkpoint, staging / "checkpoints" / "policy")
    _copy_checkpoint(world_model_checkpoint, staging / "checkpoints" / "world_model")
    if eval_dir is not None:
        shutil.copytree(eval_dir, staging / "eval")
    files = {
        str(p.relative_to(staging)): sha256_file(p)
        for p in sorted(staging.rglob("*"))
        if p.is_file()
    }
    record = VersionRecord(
        version=version,
        created=time.time(),
        parent=parent,
        status=(
            "promoted"
            if promote
            else "rejected"
            if gate and not gate.get("promote", True)
            else "registered"
        ),
        data=data,
        metrics=metrics,
        gate=gate or {},
        files=files,
        sources={"policy": str(policy_checkpoint), "world_model": str(world_model_checkpoint)},
        pipeline_config=pipeline_config,
    )
    record.write(staging)
    os.replace(staging, models / version)
    if promote:
        set_current(models, version)
    return record


def verify(models: Path, version: str) -> list[str]:
    """Files of a version whose content no longer matches its record (empty: intact)."""
    return changed_files(models / version, VersionRecord.read(models / version).files)
