"""A resumable sequence of named stages, for `vla-rft quickstart` and `vla-rft flywheel`.

Each stage says what it does and about how long it takes before it starts, and its outcome is
written to `<root>/pipeline.json` (atomically) when it ends: status, seconds, and the outputs
later stages read. A second run skips the stages recorded as done (their outputs must still
exist) and restarts the first one that is not; stages that train pass `resume=True` to their
trainer so that an interrupted run continues from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

STATE_FILE = "pipeline.json"


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline."""

    name: str
    """Key in the state file, e.g. 'train_world_model'."""
    what: str
    """One line for the user: what the stage does."""
    estimate_s: float
    """About how long it takes on the 2-core reference machine, seconds."""
    run: Callable[[dict], dict]
    """outputs of the finished stages {stage: outputs} -> this stage's outputs (JSON values;
    strings that are paths are checked to exist on resume)."""


@dataclass
class PipelineState:
    """What `<root>/pipeline.json` holds."""

    stages: dict[str, dict] = field(default_factory=dict)
    """name -> {"status": "done" | "failed" | "running", "seconds", "outputs", "error"}."""

    @classmethod
    def load(cls, root: Path) -> PipelineState:
        path = root / STATE_FILE
        if not path.is_file():
            return cls()
        try:
            return cls(json.loads(path.read_text())["stages"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: unreadable pipeline state ({err}); move it away") from None

    def save(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps({"stages": self.stages}, indent=1))
        os.replace(tmp, root / STATE_FILE)

    def outputs(self) -> dict[str, dict]:
        return {n: s.get("outputs", {}) for n, s in self.stages.items() if s["status"] == "done"}


def _missing_paths(outputs: dict) -> list[str]:
    paths = [v for v in outputs.values() if isinstance(v, str) and ("/" in v or os.sep in v)]
    return [p for p in paths if not Path(p).exists()]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_stages(root: Path, stages: list[Stage], log: Callable[[str], None] = print) -> dict:
    """Run (or resume) `stages` with their state in `root`; returns every stage's outputs.

    A stage that raises is recorded as failed with its error, and the error propagates.
    """
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique: {names}")
    state = PipelineState.load(root)
    remaining = sum(
        s.estimate_s for s in stages if state.stages.get(s.name, {}).get("status") != "done"
    )
    log(f"{len(stages)} stages in {root}; about {_minutes(remaining)} of work left")
    for i, stage in enumerate(stages, 1):
        record = state.stages.get(stage.name, {})
        if record.get("status") == "done":
            missing = _missing_paths(record.get("outputs", {}))
            if not missing:
                log(
                    f"[{i}/{len(stages)}] {stage.name}: done before ({_minutes(record['seconds'])})"
                )
                continue
            log(f"[{i}/{len(stages)}] {stage.name}: its outputs are gone ({missing[0]}); redoing")
        again = " (continuing an interrupted attempt)" if record else ""
        about = _minutes(stage.estimate_s)
        log(f"[{i}/{len(stages)}] {stage.name}: {stage.what}; about {about}{again}")
        state.stages[stage.name] = {"status": "running", "started": time.time()}
        state.save(root)
        start = time.perf_counter()
        try:
            outputs = stage.run(state.outputs())
        except BaseException as err:  # Ctrl-C included: the state says where it stopped
            state.stages[stage.name] = {
                "status": "failed",
                "seconds": time.perf_counter() - start,
                "error": f"{type(err).__name__}: {err}",
            }
            state.save(root)
            raise
        seconds = time.perf_counter() - start
        state.stages[stage.name] = {"status": "done", "seconds": seconds, "outputs": outputs}
        state.save(root)
        log(f"[{i}/{len(stages)}] {stage.name}: done in {_minutes(seconds)}")
    return state.outputs()


def stage_timings(root: Path) -> list[dict]:
    """[{stage, seconds}] of the finished stages in the state file, in the order they ran."""
    return [
        {"stage": name, "seconds": s["seconds"]}
        for name, s in PipelineState.load(root).stages.items()
        if s["status"] == "done"
    ]


def timings_table(timings: list[dict]) -> str:
    """Markdown table of `stage_timings`, with the total."""
    rows = [f"| {t['stage']} | {t['seconds'] / 60:.1f} min |" for t in timings]
    total = sum(t["seconds"] for t in timings) / 60
    return "\n".join(["| stage | time |", "| --- | --- |", *rows, f"| total | {total:.1f} min |"])


# --- the commands' shared command line ------------------------------------------------------


def pipeline_parser(prog: str, doc: str, root: str, data: str) -> argparse.ArgumentParser:
    """--config, --root, --data, --models, --set and -q, with `doc`'s first paragraph as the
    description and the rest as the epilog."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        epilog="\n\n".join(doc.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--config", help="pipeline config YAML (vla_rft/pipeline/config.py)")
    add("--root", type=Path, default=Path(root), help=f"runs, reports, state (default: {root})")
    add("--data", type=Path, default=Path(data), help=f"episodes (default: {data})")
    add("--models", type=Path, default=Path("models"), help="model registry (default: models)")
    add("--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. eval.episodes=5 (repeatable)")  # fmt: skip
    add("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def run_pipeline(plan: Callable[[], tuple[Path, list[Stage]]]) -> int:
    """Build the stages with `plan() -> (state dir, stages)` and run them; a clear message and
    exit code 2 on a known error, 130 on Ctrl-C (the state says where it stopped)."""
    from vla_rft.contract.config import ConfigError

    try:
        root, stages = plan()
        run_stages(root, stages)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}\n(run the same command again to continue from here)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue", file=sys.stderr)
        return 130
    return 0
