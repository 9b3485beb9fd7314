"""The paper-scale VLA-RFT run on one GPU (issue 18, item 5; docs/RFT.md, "The paper-scale run
on a GPU"): three `vla-rft rft` runs in the world model (`rollouts: world_model`), 16 start
states x G = 16 samples for 400 steps each, all three within 8 minutes of GPU time.

    .venv/bin/python bench/rft_paper_scale.py pack --policy runs/policy/cpu \\
        --world-model runs/world_model/cpu --data data/expert200 [--wheels DIR]   # here
    python3 bench/rft_paper_scale.py run --out DIR [--device cuda]                 # on the GPU

The runs (RUNS below), each from its recipe with the carried checkpoints and start states:
  paper                           training/gpu/rft.yaml: the released code's update rule
  corrections_bc_variant          training/cpu/rft_corrections_bc.yaml's update settings on the
                                  carried start states (a variant: that recipe's own start states
                                  include corrections and its world model was fine-tuned on them)
  corrections_bc_variant_control  the same with grpo.pg_weight=0.0 (continued BC)

`pack` copies the base policy's and the world model's checkpoint (weights and record), a subset
of the start-state episodes (training split, spread over the sorted names) and the wheels of
--wheels DIR into the carried folder with manifest.json (bench/carry.py), and refuses a folder
that with the repository exceeds the 64 MiB the device tool carries. `run` checks every carried
file's sha256, checks the device, runs a short calibration (the first run's recipe for a few
steps) to measure seconds per step, caps the steps of every run so that calibration and runs
end within the budget, runs them one after the other in this process, and writes each run's
final checkpoint to DIR/<run>/ and DIR/rft_paper_scale.json. Exit 1 if a run failed or the
budget left no room for it; 2 for bad input (a damaged carry, no CUDA device).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from carry import (
    CARRY_LIMIT_MIB,
    CarryDamaged,
    CarryTooLarge,
    copy_wheels,
    finish_folder,
    pack_and_run_parsers,
    start_folder,
    verify_folder,
)

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / "rft_carry"
PACK_COMMAND = "scripts/gpu/pack_rft.sh"
SUMMARY = "rft_paper_scale.json"
KIND = "rft_paper_scale"
"""The manifest's `kind`: `run` refuses a folder another pack wrote (the GPU check's)."""
EPISODES = "episodes"


@dataclass(frozen=True)
class Run:
    """One `vla-rft rft` run: a recipe and the `--set` overrides that make it this run."""

    name: str
    recipe: str
    overrides: tuple[str, ...]
    about: str


RUNS = (
    Run(
        "paper",
        "training/gpu/rft.yaml",
        (),
        "(a) the paper's recipe: head lr 1e-6, sigma lr 1e-5, log-prob averaged (mean), "
        "flow-matching weight 0.01 scaled by drift",
    ),
    Run(
        "corrections_bc_variant",
        "training/cpu/rft_corrections_bc.yaml",
        (),
        "(b) a variant of the best cpu recipe: its update settings (lr 1e-4, pg_weight 0.1, "
        "constant bc_weight 1.0, log-prob summed) on the carried start states",
    ),
    Run(
        "corrections_bc_variant_control",
        "training/cpu/rft_corrections_bc.yaml",
        ("grpo.pg_weight=0.0",),
        "(c) the continued-BC control of (b): the same run without the policy gradient",
    ),
)
RUN_NAMES = tuple(r.name for r in RUNS)


class DeviceMissing(RuntimeError):
    """The device asked for is not there."""


# --- pack (here) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PackConfig:
    """What `pack` puts in the carried folder."""

    policy: Path
    """Base policy: checkpoint or run directory (its latest)."""
    world_model: Path
    """World model: checkpoint or run directory (its latest)."""
    data: tuple[Path, ...]
    """Episode directories the start states come from."""
    carry: Path = CARRY
    """Written anew: policy/, world_model/, episodes/<data dir name>/, wheels/, manifest.json."""
    episodes: int = 24
    """Start-state episodes carried, from the training split of all `data` together."""
    wheels: Path | None = None
    """A folder of wheels for what the GPU image lacks (rosbags and its kin, to read episodes)."""
    limit_mib: float = CARRY_LIMIT_MIB

    def __post_init__(self):
        if self.episodes < 1:
            raise ValueError(f"--episodes must be at least 1, got {self.episodes}")
        names = [Path(d).name for d in self.data]
        if len(set(names)) != len(names):
            raise ValueError(f"the --data directories must have distinct names, got {names}")


def training_episodes(roots: tuple[Path, ...], count: int) -> list[Path]:
    """`count` episode directories of the training split (the split `vla-rft rft` makes: by a
    hash of the name, so it holds in any subset), evenly spread over the sorted names of all
    roots (so every task is represented); all of them if there are fewer."""
    from vla_rft.data import WindowConfig
    from vla_rft.data.dataset import _val_score
    from vla_rft.data.episode_store import list_episodes

    val_fraction = WindowConfig().val_fraction
    found = []
    for root in roots:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"episode directory {root} does not exist")
        found += [p for p in list_episodes(root) if _val_score(p.name) >= val_fraction]
    if not found:
        raise ValueError(f"no training-split episodes under {', '.join(map(str, roots))}")
    if len(found) <= count or count == 1:
        return found[:count]
    return [found[round(i * (len(found) - 1) / (count - 1))] for i in range(count)]


def pack(config: PackConfig, repo: Path = REPO) -> dict:
    """Write the carried folder and its manifest (returned); CarryTooLarge if it and the
    repository's travelling files exceed `config.limit_mib`."""
    from vla_rft.models.checkpoint import RECORD_FILE, WEIGHTS_FILE, resolve_checkpoint

    checkpoints = {
        "policy": resolve_checkpoint(config.policy),
        "world_model": resolve_checkpoint(config.world_model),
    }
    chosen = training_episodes(config.data, config.episodes)
    carry = config.carry
    start_folder(carry)
    for name, checkpoint in checkpoints.items():
        (carry / name).mkdir()
        for file in (WEIGHTS_FILE, RECORD_FILE):
            shutil.copy2(checkpoint / file, carry / name / file)
    data: dict[str, list[str]] = {}
    for episode in chosen:
        shutil.copytree(episode, carry / EPISODES / episode.parent.name / episode.name)
        data.setdefault(episode.parent.name, []).append(episode.name)
    return finish_folder(
        carry, repo, config.limit_mib,
        kind=KIND, sources={k: str(v) for k, v in checkpoints.items()}, data=data,
        wheels=copy_wheels(config.wheels, carry),
    )  # fmt: skip


# --- run (on the GPU) ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """What `run` does."""

    out: Path
    """Gets <run>/ (model.safetensors + checkpoint.json: a policy checkpoint) per run and
    rft_paper_scale.json; 8 files at most, as the device tool brings back."""
    carry: Path = CARRY
    work: Path | None = None
    """The runs' full directories (metrics, TensorBoard, optimiser state); None: a new
    temporary folder. Must be empty or absent."""
    device: str = "cuda"
    steps: int = 400
    """Steps per run, unless the budget caps them."""
    start_states: int = 16
    group_size: int = 16
    budget_s: float = 480.0
    """GPU seconds for the calibration and all runs together (model loading included)."""
    calibration_steps: int = 5
    threads: int = 8
    runs: tuple[str, ...] = RUN_NAMES

    def __post_init__(self):
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"--device must be cuda or cpu, got {self.device!r}")
        for name in ("steps", "start_states", "group_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.calibration_steps < 2:
            raise ValueError("--calibration-steps must be at least 2 (the first step warms up)")
        if self.budget_s <= 0:
            raise ValueError(f"--budget-s must be positive, got {self.budget_s}")
        unknown = [r for r in self.runs if r not in RUN_NAMES]
        if unknown or not self.runs:
            raise ValueError(f"unknown runs {unknown}; choose from {', '.join(RUN_NAMES)}")


@dataclass
class Estimate:
    """The cost of a run: `fixed_s` (loading the models and data, saving) + steps x
    `s_per_step` (the steady rate, after the first step's warm-up)."""

    s_per_step: float
    fixed_s: float

    @classmethod
    def of(cls, wall_s: float, rows: list[dict]) -> Estimate:
        """From a run's wall time and its metrics rows (logged every step)."""
        per_step = steady_step_seconds(rows)
        return cls(per_step, max(0.0, wall_s - rows[-1]["step"] * per_step))


def steady_step_seconds(rows: list[dict]) -> float:
    """Seconds per step after the first, from the trainer's `time/s_per_step` (its running mean
    since the start of the loop): (T_last - T_first) / (steps between), T_k = k x mean_k."""
    timed = [(r["step"], r["step"] * r["time/s_per_step"]) for r in rows if "time/s_per_step" in r]
    if not timed:
        raise ValueError("no time/s_per_step in the run's metrics")
    (first, t_first), (last, t_last) = timed[0], timed[-1]
    return (t_last - t_first) / (last - first) if last > first else t_last / last


def affordable_steps(remaining_s: float, runs_left: int, estimate: Estimate) -> int:
    """Steps per run such that `runs_left` runs of that many steps end within `remaining_s`
    (5% kept in reserve)."""
    spare = 0.95 * remaining_s - runs_left * estimate.fixed_s
    return max(0, math.floor(spare / (runs_left * estimate.s_per_step)))


def check_device(device: str) -> str:
    """A description of the device; DeviceMissing when CUDA is asked for and absent."""
    import torch

    if device == "cpu":
        return f"the CPU (torch {torch.__version__})"
    if not torch.cuda.is_available():
        raise DeviceMissing(
            f"--device cuda, but torch {torch.__version__} (CUDA build {torch.version.cuda}) "
            "sees no CUDA device; on a machine without a GPU pass --device cpu"
        )
    return f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"


def rft_overrides(
    run: Run, config: RunConfig, manifest: dict, run_dir: Path, steps: int
) -> list[str]:
    """The `--set` values that point `run`'s recipe at the carried checkpoints and start
    states, the run shape (B, G, steps), the device and `run_dir`; then the run's own."""
    data = [str(config.carry / EPISODES / name) for name in manifest["data"]]
    return [
        f"policy={config.carry / 'policy'}",
        f"world_model={config.carry / 'world_model'}",
        f"data={json.dumps(data)}",
        "rollouts=world_model",
        f"run_dir={run_dir}",
        f"optim.steps={steps}",
        f"optim.batch_size={config.start_states}",
        f"grpo.group_size={config.group_size}",
        f"device={config.device}",
        f"threads={config.threads}",
        "log_every=1",
        f"save_every={steps}",
        *run.overrides,
    ]


def command_line(recipe: str, overrides: list[str]) -> str:
    """The `vla-rft rft` command that does the same run."""
    sets = " ".join(f"--set {shlex.quote(o)}" for o in overrides)
    return f"vla-rft rft --recipe {recipe} {sets}"


@dataclass
class Trained:
    checkpoint: Path
    wall_s: float
    rows: list[dict]


def train_run(recipe: str, overrides: list[str]) -> Trained:
    """One `vla-rft rft` run in this process (what its command line calls)."""
    import torch

    from vla_rft.contract.config import load_config
    from vla_rft.training.tracking import read_metrics
    from vla_rft.training.train_rft import TrainRFTConfig, train

    config = load_config(TrainRFTConfig, REPO / recipe, overrides)
    start = time.perf_counter()
    try:
        checkpoint = train(config, progress=False)
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return Trained(checkpoint, time.perf_counter() - start, read_metrics(config.run_dir))


@dataclass
class RunRecord:
    """One run in rft_paper_scale.json."""

    name: str
    about: str
    recipe: str
    command: str = ""
    status: str = "not started"
    """ok, failed or skipped (the budget left no room)."""
    error: str = ""
    steps_planned: int = 0
    """The steps the budget allowed (the cap), asked of the trainer."""
    steps_done: int = 0
    capped: bool = False
    s_per_step: float | None = None
    wall_s: float | None = None
    checkpoint: str = ""
    """Relative to the output folder: a policy checkpoint (`vla-rft eval --policy`)."""
    final_metrics: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    """Every logged row of the run's metrics.jsonl."""


def keep_checkpoint(checkpoint: Path, dest: Path) -> None:
    """Copy the checkpoint's weights and record into `dest` (a checkpoint directory)."""
    from vla_rft.models.checkpoint import RECORD_FILE, WEIGHTS_FILE

    dest.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, RECORD_FILE):
        shutil.copy2(checkpoint / name, dest / name)


def run_all(config: RunConfig, clock: Callable[[], float] = time.perf_counter) -> int:
    """Calibrate, then the runs within the budget (seconds of `clock`); 0 if all ran, 1 if one
    failed or was skipped. Raises CarryDamaged, FileNotFoundError, DeviceMissing on bad input."""
    manifest = verify_folder(config.carry, PACK_COMMAND)
    if manifest.get("kind") != KIND:
        raise CarryDamaged(
            f"{config.carry}: not written by {PACK_COMMAND} (kind {manifest.get('kind')!r})"
        )
    device = check_device(config.device)
    work = config.work or Path(tempfile.mkdtemp(prefix="rft_paper_scale_"))
    if work.exists() and any(work.iterdir()):
        raise FileExistsError(f"--work {work}: not empty; the runs need fresh directories")
    config.out.mkdir(parents=True, exist_ok=True)
    runs = [r for r in RUNS if r.name in config.runs]
    episodes = sum(len(names) for names in manifest["data"].values())
    print(
        f"{len(runs)} run(s) of B={config.start_states} x G={config.group_size}, "
        f"{config.steps} steps each, on {device}; start states from {episodes} carried "
        f"episode(s); budget {config.budget_s:g} s for the calibration and all runs; work {work}",
        flush=True,
    )
    start = clock()
    deadline = start + config.budget_s
    summary = {
        "device": device, "budget_s": config.budget_s, "steps_asked": config.steps,
        "start_states": config.start_states, "group_size": config.group_size,
        "carry": {"sources": manifest["sources"], "data": manifest["data"]},
        "runs": [], "failed": [],
    }  # fmt: skip
    records = [RunRecord(r.name, r.about, r.recipe) for r in runs]
    try:
        estimate = calibrate(runs[0], config, manifest, work, summary)
        steps = config.steps
        for i, (run, record) in enumerate(zip(runs, records, strict=True)):
            fits = affordable_steps(deadline - clock(), len(runs) - i, estimate)
            steps = min(steps, fits)  # never more than the run before: (b) and (c) stay equal
            record.steps_planned, record.capped = steps, steps < config.steps
            if steps < 1:
                record.status, record.error = "skipped", "the budget left no room for a step"
                print(f"[skipped] {run.name}: {record.error}", flush=True)
                continue
            if record.capped:
                print(
                    f"capped: {run.name} gets {steps} steps instead of {config.steps} "
                    f"({estimate.s_per_step:.3f} s/step + {estimate.fixed_s:.0f} s per run, "
                    f"{deadline - clock():.0f} s left for {len(runs) - i} run(s))",
                    flush=True,
                )
            trained = execute(run, record, config, manifest, work, steps)
            if trained is not None:
                estimate = Estimate.of(trained.wall_s, trained.rows)
    finally:
        summary["runs"] = [asdict(r) for r in records]
        summary["failed"] = [r.name for r in records if r.status != "ok"]
        summary["total_wall_s"] = round(clock() - start, 1)
        summary["within_budget"] = summary["total_wall_s"] <= config.budget_s
        (config.out / SUMMARY).write_text(json.dumps(summary, indent=1))
    print_summary(records, summary, config.out)
    return 1 if summary["failed"] else 0


def calibrate(run: Run, config: RunConfig, manifest: dict, work: Path, summary: dict) -> Estimate:
    """The first run's recipe for a few steps: seconds per step and fixed seconds per run."""
    overrides = rft_overrides(run, config, manifest, work / "calibration", config.calibration_steps)
    print(f"calibration: {command_line(run.recipe, overrides)}", flush=True)
    trained = train_run(run.recipe, overrides)
    estimate = Estimate.of(trained.wall_s, trained.rows)
    summary["calibration"] = {
        "run": run.name, "steps": config.calibration_steps, "wall_s": round(trained.wall_s, 2),
        **asdict(estimate),
    }  # fmt: skip
    print(
        f"calibration: {estimate.s_per_step:.3f} s/step, {estimate.fixed_s:.1f} s per run to "
        f"load and save ({trained.wall_s:.1f} s for {config.calibration_steps} steps)",
        flush=True,
    )
    return estimate


def execute(
    run: Run, record: RunRecord, config: RunConfig, manifest: dict, work: Path, steps: int
) -> Trained | None:
    """One run, recorded in `record`; its checkpoint copied to out/<run>/. None if it failed
    (the error is printed and recorded; the next run goes on)."""
    overrides = rft_overrides(run, config, manifest, work / run.name, steps)
    record.command = command_line(run.recipe, overrides)
    print(f"{run.name}: {record.command}", flush=True)
    try:
        trained = train_run(run.recipe, overrides)
        keep_checkpoint(trained.checkpoint, config.out / run.name)
    except Exception as err:  # a failed run must not stop the next one
        traceback.print_exc()
        record.status, record.error = "failed", f"{type(err).__name__}: {err}"
        print(f"[failed] {run.name}: {record.error}", flush=True)
        return None
    record.status, record.checkpoint = "ok", run.name
    record.wall_s, record.metrics = round(trained.wall_s, 2), trained.rows
    record.final_metrics = trained.rows[-1] if trained.rows else {}
    record.steps_done = int(record.final_metrics.get("step", 0))
    record.s_per_step = round(steady_step_seconds(trained.rows), 4)
    print(
        f"[ok] {run.name}: {record.steps_done} steps in {record.wall_s:.1f} s, "
        f"{record.s_per_step:.3f} s/step; checkpoint {config.out / run.name}",
        flush=True,
    )
    return trained


def print_summary(records: list[RunRecord], summary: dict, out: Path) -> None:
    keys = ("reward/mean", "policy/action_error", "policy/kl_to_base")
    print(f"\n| run | status | steps | s/step | wall s | {' | '.join(keys)} |")
    print(f"| --- | --- | --- | --- | --- |{' --- |' * len(keys)}")
    for r in records:
        values = " | ".join(
            f"{r.final_metrics[k]:.4g}" if k in r.final_metrics else "" for k in keys
        )
        per_step = f"{r.s_per_step:.3f}" if r.s_per_step is not None else ""
        print(
            f"| {r.name} | {r.status} | {r.steps_done}{' (capped)' if r.capped else ''} | "
            f"{per_step} | {r.wall_s or ''} | {values} |"
        )
    print(
        f"\n{summary['total_wall_s']} s in all (budget {summary['budget_s']:g} s); "
        f"{out / SUMMARY}; failed: {', '.join(summary['failed']) or 'none'}"
    )


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from vla_rft.contract.config import comma_list

    parser, packing, running = pack_and_run_parsers(
        __doc__,
        pack=(
            "write the carried folder here",
            "Copy the base policy, the world model, training-split start-state episodes and any "
            "wheels into the carried folder with a sha256 manifest; refuse it over the limit.",
        ),
        run=(
            "the calibration and the runs, on this machine (the GPU machine)",
            f"Verify the carried folder, calibrate seconds per step, run {', '.join(RUN_NAMES)} "
            f"within the budget; checkpoints and {SUMMARY} in --out; exit 1 if a run failed or "
            "was skipped, 2 for bad input.",
        ),
    )
    packing.add_argument("--policy", type=Path, required=True, help="checkpoint or run directory")
    packing.add_argument(
        "--world-model", type=Path, required=True, help="checkpoint or run directory"
    )
    packing.add_argument(
        "--data", type=comma_list, required=True, help="episode directories, comma-separated"
    )
    packing.add_argument("--out", type=Path, default=CARRY, help=f"the folder (default {CARRY})")
    packing.add_argument(
        "--episodes",
        type=int,
        default=PackConfig.episodes,
        help=f"start-state episodes carried (default {PackConfig.episodes})",
    )
    running.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
        help="folder for the checkpoints and the summary (default: $OUT)",
    )
    running.add_argument("--carry", type=Path, default=CARRY, help=f"default: {CARRY}")
    running.add_argument(
        "--work", type=Path, help="the runs' full directories (default: a new temporary folder)"
    )
    running.add_argument(
        "--device", default=RunConfig.device, help="cuda (default) or cpu (tests, smoke runs)"
    )
    for name, kind, what in (
        ("steps", int, "steps per run unless the budget caps them"),
        ("start_states", int, "start states per step (B)"),
        ("group_size", int, "samples per start state (G)"),
        ("budget_s", float, "seconds for the calibration and all runs, loading included"),
        ("calibration_steps", int, "steps of the calibration run, at least 2"),
        ("threads", int, "CPU threads"),
    ):
        default = getattr(RunConfig, name)
        running.add_argument(
            f"--{name.replace('_', '-')}", type=kind, default=default, help=f"{what} ({default:g})"
        )
    running.add_argument(
        "--runs",
        type=comma_list,
        default=RUN_NAMES,
        help=f"comma-separated, from {', '.join(RUN_NAMES)} (default: all)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            args.config = PackConfig(
                args.policy, args.world_model, tuple(Path(d) for d in args.data), args.out,
                args.episodes, args.wheels, args.limit_mib,
            )  # fmt: skip
        else:
            if args.out is None:
                raise ValueError("--out is required where $OUT is not set")
            args.config = RunConfig(
                args.out, args.carry, args.work, args.device, args.steps, args.start_states,
                args.group_size, args.budget_s, args.calibration_steps, args.threads, args.runs,
            )  # fmt: skip
    except ValueError as err:
        (packing if args.command == "pack" else running).error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "run":
            return run_all(args.config)
        manifest = pack(args.config)
    except (CarryTooLarge, CarryDamaged, DeviceMissing, OSError, ValueError) as err:
        # OSError: a missing folder or file, a non-empty --work; ValueError: no training
        # episodes, a checkpoint that is not one (CheckpointError)
        print(f"error: {err}", file=sys.stderr)
        return 2
    episodes = sum(len(names) for names in manifest["data"].values())
    print(
        f"{args.config.carry}: {manifest['carry_bytes'] / 2**20:.1f} MiB carried + "
        f"{manifest['repo_bytes'] / 2**20:.1f} MiB repository (limit {args.config.limit_mib:g} "
        f"MiB); {episodes} start-state episode(s); "
        f"wheels: {', '.join(manifest['wheels']) or 'none'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
