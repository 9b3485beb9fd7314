"""A folder that travels to the GPU machine beside the repository (the device tool's `carry`):
written here by a `pack` command, checked there before anything runs.

Shared by bench/gpu_check.py (the inference check) and bench/rft_paper_scale.py (the RFT run).
A carried folder holds its files and `manifest.json`: each file's size and sha256, the bytes
carried and the repository's travelling bytes, and whether both fit the tool's 64 MiB. Only
the standard library is used, so the check runs before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

CARRY_MANIFEST = "manifest.json"
CARRY_LIMIT_MIB = 64.0
"""What the device tool carries: the repository's travelling files plus the carried folders."""


class CarryTooLarge(RuntimeError):
    """The carried folder and the repository exceed what the device tool carries."""


class CarryDamaged(RuntimeError):
    """A carried file is missing, or differs from the sha256 its manifest recorded."""


def travelling_bytes(repo: Path) -> int:
    """Bytes of what the device tool sends besides the carried paths: tracked files and
    untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo, capture_output=True, check=True,
    ).stdout  # fmt: skip
    files = (repo / name for name in listed.decode().split("\0") if name)
    return sum(f.stat().st_size for f in files if f.is_file())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def start_folder(carry: Path) -> None:
    """An empty `carry`: a folder an earlier pack wrote (it has a manifest) is replaced; any
    other non-empty folder is refused (FileExistsError), so nobody's files are deleted."""
    if carry.exists():
        if any(carry.iterdir()) and not (carry / CARRY_MANIFEST).is_file():
            raise FileExistsError(f"{carry}: exists and was not written by pack; not replacing it")
        shutil.rmtree(carry)
    carry.mkdir(parents=True)


def copy_wheels(wheels: Path | None, carry: Path) -> list[str]:
    """Copy the *.whl of `wheels` (None: none) into carry/wheels; their names."""
    found = sorted(wheels.glob("*.whl")) if wheels else []
    if found:
        (carry / "wheels").mkdir()
        for wheel in found:
            shutil.copy2(wheel, carry / "wheels" / wheel.name)
    return [w.name for w in found]


def finish_folder(carry: Path, repo: Path, limit_mib: float, **extra) -> dict:
    """Write carry/manifest.json (every file's bytes and sha256, the sizes, `extra`) and return
    it; CarryTooLarge, after writing it, when the folder and the repository's travelling files
    exceed `limit_mib`."""
    files = {
        str(f.relative_to(carry)): {"bytes": f.stat().st_size, "sha256": sha256(f)}
        for f in sorted(carry.rglob("*"))
        if f.is_file()
    }
    carry_bytes = sum(f["bytes"] for f in files.values())
    repo_bytes = travelling_bytes(repo)
    limit = int(limit_mib * 2**20)
    manifest = {
        **extra,
        "files": files,
        "carry_bytes": carry_bytes,
        "repo_bytes": repo_bytes,
        "limit_bytes": limit,
        "fits": carry_bytes + repo_bytes <= limit,
    }
    (carry / CARRY_MANIFEST).write_text(json.dumps(manifest, indent=1))
    if not manifest["fits"]:
        raise CarryTooLarge(
            f"{carry}: {carry_bytes / 2**20:.1f} MiB carried + {repo_bytes / 2**20:.1f} MiB of "
            f"repository = {(carry_bytes + repo_bytes) / 2**20:.1f} MiB, over the "
            f"{limit_mib:g} MiB the device tool carries"
        )
    return manifest


def verify_folder(carry: Path, pack_command: str) -> dict:
    """The manifest of `carry` once every file it lists is there with its recorded sha256;
    FileNotFoundError without a manifest, CarryDamaged naming each missing or changed file."""
    if not (carry / CARRY_MANIFEST).is_file():
        raise FileNotFoundError(
            f"{carry}: no carried folder (no {CARRY_MANIFEST}); run {pack_command} first and "
            "carry its folder"
        )
    manifest = json.loads((carry / CARRY_MANIFEST).read_text())
    missing, changed = [], []
    for name, entry in manifest["files"].items():
        path = carry / name
        if not path.is_file():
            missing.append(name)
        elif path.stat().st_size != entry["bytes"] or sha256(path) != entry["sha256"]:
            changed.append(name)
    if missing or changed:
        found = [f"missing: {', '.join(missing)}"] if missing else []
        if changed:
            found.append(f"changed since packing (sha256 differs): {', '.join(changed)}")
        raise CarryDamaged(f"{carry}: {'; '.join(found)}. Pack it again ({pack_command})")
    return manifest


def pack_and_run_parsers(
    doc: str, pack: tuple[str, str], run: tuple[str, str]
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command line of a tool with a `pack` command (here) and a `run` command (on the GPU
    machine): (the parser, pack's, run's). `pack` and `run` are each (help line, description);
    pack's parser has --wheels and --limit-mib already."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help=pack[0], description=pack[1])
    packing.add_argument(
        "--wheels", type=Path, help="folder of wheels for what the GPU image lacks (default none)"
    )
    packing.add_argument(
        "--limit-mib",
        type=float,
        default=CARRY_LIMIT_MIB,
        help=f"carried folder + repository, at most (default {CARRY_LIMIT_MIB:g}, the tool's)",
    )
    return parser, packing, commands.add_parser("run", help=run[0], description=run[1])
