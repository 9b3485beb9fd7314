"""`vla-rft models`: the versions in the model registry; promote one (or roll back to one).

vla-rft models list                 # versions, status, success per perturbation, current
vla-rft models promote v001         # make v001 current (a rollback, or overriding the gate)
vla-rft models verify v002          # are its files still what was registered? (or: all)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vla_rft.pipeline.registry import (
    RegistryError,
    VersionRecord,
    current_version,
    list_versions,
    set_current,
    verify,
)


def table(models: Path) -> str:
    current = current_version(models)
    lines = [
        "| version | status | parent | success (per perturbation) | data sets | current |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for v in list_versions(models):
        success = ", ".join(
            f"{p} {100 * s['success_rate']:.0f}%" for p, s in v.metrics.get("eval", {}).items()
        )
        lines.append(
            f"| {v.version} | {v.status} | {v.parent or '-'} | {success or '-'} | {len(v.data)} "
            f"| {'<-' if v.version == current else ''} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vla-rft models", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("list", "promote", "verify"))
    parser.add_argument(
        "version", nargs="?", help="for promote and verify, e.g. v001 (verify: or all)"
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="default: models")
    parser.add_argument(
        "--force", action="store_true", help="promote: also a version the gate rejected"
    )
    args = parser.parse_args(argv)
    try:
        if not args.models.is_dir():
            raise RegistryError(f"{args.models} is not a model registry (no such directory)")
        if args.action == "list":
            print(table(args.models))
            return 0
        if not args.version:
            parser.error(f"{args.action} needs a version, e.g. v001")
        if args.action == "verify":
            versions = (
                [v.version for v in list_versions(args.models)]
                if args.version == "all"
                else [args.version]
            )
            changed = 0
            for version in versions:
                bad = verify(args.models, version)
                changed += bool(bad)
                print(f"{version}: " + (f"changed files: {bad}" if bad else "intact"))
            return 1 if changed else 0
        before = current_version(args.models)
        record = VersionRecord.read(args.models / args.version)
        if record.status == "rejected" and not args.force:
            reasons = "; ".join(record.gate.get("reasons", [])) or "see its version.json"
            raise RegistryError(
                f"the gate rejected {args.version} ({reasons}); promote it anyway with --force"
            )
        if verify(args.models, args.version):
            raise RegistryError(f"{args.version}: its files changed since registration; refusing")
        set_current(args.models, args.version)
        print(f"{args.models / 'current'}: {before} -> {args.version}")
        print("restart the policy node (or the bringup) to load it")
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
