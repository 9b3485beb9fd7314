"""What `vla-rft quickstart` and `vla-rft flywheel` run: recipes, data, evaluation suite, gate.

Loaded from a YAML file (default `training/quickstart/pipeline.yaml`) with `--set` overrides,
like the training recipes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from vla_rft.sim.spec import SIM_IMAGE_SIZE

PERTURBATIONS = ("none", "object", "goal", "robot_init")

# Seconds per unit of work on the 2-core reference machine, for the stages' time estimates
# (measured in a whole quickstart run; its report lists the stage timings).
S_PER_EPISODE = 0.5
S_PER_WORLD_MODEL_STEP = 1.0
S_PER_POLICY_STEP = 0.2
S_PER_RFT_STEP = 1.7
EVAL_STEP_FRACTION = 0.75
"""Mean episode length over the step limit, quickstart policies (a failed episode runs to it)."""
S_PER_EVAL_RESET = 0.35
"""Wall time between two evaluation episodes in the node graph (reset, events)."""


@dataclass(frozen=True)
class CollectStage:
    """Expert demonstrations of the simulated robot."""

    tasks: tuple[str, ...] = ("reach-v3", "push-v3")
    """Meta-World v3 tasks."""
    episodes: int = 50
    """Episodes per task."""
    noise: float = 0.1
    """Std of Gaussian noise on the expert's actions (diversity for the world model)."""
    image_size: int = SIM_IMAGE_SIZE
    """Camera image side, pixels."""

    def __post_init__(self):
        if not self.tasks or self.episodes < 1 or self.noise < 0 or self.image_size < 8:
            raise ValueError("collect needs tasks, episodes >= 1, noise >= 0, image_size >= 8")


@dataclass(frozen=True)
class EvalSuite:
    """Closed-loop evaluation through the node graph; the gate compares models on it."""

    tasks: tuple[str, ...] = ("reach-v3", "push-v3")
    """Tasks evaluated."""
    perturbations: tuple[str, ...] = ("none", "object")
    """Start-state perturbations evaluated."""
    episodes: int = 10
    """Episodes per task and perturbation (seeds seed .. seed + episodes - 1)."""
    seed: int = 1000
    """Seed of episode 0 (held out from the training seeds, which start at 0)."""
    max_steps: int = 150
    """Step limit per episode."""
    timeout_s: float = 1800.0
    """Give up on the node graph after this long."""
    rate_hz: float = 30.0
    """Control rate of the evaluation graph (simulated robot and policy node). The simulator
    steps once per action, so a faster rate shortens the wall time (bench/bench_eval_rate.py)."""
    async_inference: bool = False
    """The policy node's `async_inference`. False: a tick that needs a chunk waits for it and
    the simulator waits for that action, so the episodes do not depend on the machine's speed or
    load (what a gate comparing two models needs). True, as on the robot: ticks go on with the
    current chunk while the next is computed, and a chunk that comes a tick later on a loaded
    machine changes the episode."""
    graphs: int = 1
    """Node graphs run at once, graph k on DDS domain ROS_DOMAIN_ID + k with the k-th
    contiguous share of the seeds of every task and perturbation; their reports merge into one.
    Each graph is rate-bound, so two share 2 cores (bench/bench_eval_rate.py --graphs 1,2
    measures the wall time and whether the episodes stay the same)."""

    def __post_init__(self):
        unknown = set(self.perturbations) - set(PERTURBATIONS)
        if (
            not self.tasks
            or not self.perturbations
            or unknown
            or min(self.episodes, self.max_steps) < 1
            or not 0 < self.rate_hz <= 1000
            or self.graphs < 1
        ):
            raise ValueError(
                f"eval needs tasks, perturbations from {PERTURBATIONS}, episodes >= 1, "
                f"0 < rate_hz <= 1000 and graphs >= 1 (unknown: {sorted(unknown)}, "
                f"rate_hz: {self.rate_hz}, graphs: {self.graphs})"
            )

    @property
    def num_episodes(self) -> int:
        return len(self.tasks) * len(self.perturbations) * self.episodes

    def estimated_seconds(self) -> float:
        """Wall time of the whole suite through the node graph, for progress estimates."""
        per_episode = EVAL_STEP_FRACTION * self.max_steps / self.rate_hz + S_PER_EVAL_RESET
        return self.num_episodes * per_episode / min(self.graphs, self.episodes)


@dataclass(frozen=True)
class FlywheelStage:
    """How a new round fine-tunes the current version on new episodes."""

    world_model_steps: int = 150
    """World-model fine-tuning steps (from the current version's weights)."""
    world_model_lr: float = 3e-4
    """Their peak learning rate (lower than pre-training)."""
    rft_steps: int = 60
    """VLA-RFT steps on the fine-tuned world model (from the current policy)."""
    max_drop: float = 0.05
    """The gate refuses a candidate whose success drops more than this (fraction) on any
    perturbation, or that is worse on average."""

    def __post_init__(self):
        if self.world_model_steps < 1 or self.rft_steps < 1 or self.world_model_lr <= 0:
            raise ValueError("flywheel needs world_model_steps, rft_steps >= 1 and lr > 0")
        if not 0 <= self.max_drop < 1:
            raise ValueError(f"max_drop must be in [0, 1), got {self.max_drop}")


@dataclass(frozen=True)
class PipelineConfig:
    """The whole loop's settings."""

    world_model_recipe: str = "training/quickstart/world_model.yaml"
    """Recipe of world-model pre-training."""
    policy_recipe: str = "training/quickstart/policy.yaml"
    """Recipe of policy pre-training (behaviour cloning)."""
    rft_recipe: str = "training/quickstart/rft.yaml"
    """Recipe of VLA-RFT."""
    collect: CollectStage = field(default_factory=CollectStage)
    """Demonstrations (quickstart only)."""
    eval: EvalSuite = field(default_factory=EvalSuite)
    """Evaluation suite."""
    flywheel: FlywheelStage = field(default_factory=FlywheelStage)
    """Fine-tuning on new episodes."""
    threads: int = 2
    """CPU threads for training."""

    def __post_init__(self):
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


RECIPE_FIELDS = ("world_model_recipe", "policy_recipe", "rft_recipe")
DEFAULT_PIPELINE_CONFIG = "training/quickstart/pipeline.yaml"
"""The pipeline config of `vla-rft quickstart` (and of `vla-rft flywheel` when the current version
recorded none), relative to the checkout."""
CHECKOUT = Path(__file__).resolve().parents[2]
"""The directory holding training/ (the repository root of this installation)."""


def load_pipeline_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """A pipeline config file with `key=value` overrides. A relative config path that does not
    exist from the working directory is taken from the checkout; a relative recipe path that does
    not is looked up beside the file and in the directories above it (the checkout's
    training/...), and stored absolute, so that a config recorded in a model version works from
    any directory."""
    from vla_rft.contract.config import load_config

    path = Path(path)
    if not path.is_absolute() and not path.is_file() and (CHECKOUT / path).is_file():
        path = CHECKOUT / path  # e.g. the default config, run from another directory
    config = load_config(PipelineConfig, path, overrides)
    here = path.resolve().parent
    found = {}
    for name in RECIPE_FIELDS:
        recipe = Path(getattr(config, name))
        if recipe.is_absolute() or recipe.is_file():
            continue
        for base in (here, *here.parents):
            if (base / recipe).is_file():
                found[name] = str(base / recipe)
                break
    return replace(config, **found)
