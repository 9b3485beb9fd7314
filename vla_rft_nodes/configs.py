"""Typed parameters of every node: one frozen dataclass per node, validated on construction.

Both hosts fill them from the same ROS 2 parameter files (`config/*.yaml`, the
`<node>: {ros__parameters: {...}}` layout): rclpy declares one ROS parameter per field (the field's
docstring becomes its description), the Cyclone DDS host reads the YAML itself and takes
`--set key=value` overrides. Fields are flat (no nesting) so that they are plain ROS parameters;
floats must be written as floats in YAML (`30.0`), as rclpy refuses an integer for a double.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import math
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vla_rft.contract.config import ConfigError, from_dict, parse_overrides
from vla_rft.contract.constants import (
    BACKENDS,
    EPISODE_BAG_VERSION,
    MAX_INSTRUCTION_CHARS,
    PERTURBATION_KINDS,
    REPLAN_EVERY,
    SIM_EMBODIMENT,
)
from vla_rft.contract.embodiment import EmbodimentSpec, cached_embodiment
from vla_rft.sim.instructions import TASK_INSTRUCTIONS, unknown_task
from vla_rft.sim.spec import SIM_CAMERA, SIM_IMAGE_SIZE, sim_problems
from vla_rft_nodes.robot_interfaces import check_interfaces

T = TypeVar("T")

TRIGGERS = ("camera", "timer")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive(name: str, value: float) -> None:
    _require(math.isfinite(value) and value > 0, f"{name} must be a positive number, got {value}")


@dataclass(frozen=True)
class PolicyNodeConfig:
    """The policy node: camera, state and instruction in, one action per control tick out."""

    model_path: str = "models/current"
    """Exported policy package (or checkpoint for the torch backend) given to the factory."""
    backend: str = "auto"
    """Inference backend: auto, onnxruntime, tensorrt or torch."""
    policy_factory: str = "vla_rft.runtime.loader:load_policy"
    """'module:function' called as function(model_path, backend) -> Policy at configure."""
    control_rate_hz: float = 30.0
    """Control ticks per second; each tick publishes one action (or a hold)."""
    trigger: str = "camera"
    """'camera': an action per new frame, at most control_rate_hz (holds keep going out at the
    control rate without frames); 'timer': an action every tick, on the newest frame."""
    replan_every: int = REPLAN_EVERY
    """Ticks between policy calls (1 = a new chunk every tick)."""
    async_inference: bool = True
    """Ticks go on with the current chunk while the next is computed (control latency does not
    depend on the model; actions at most one inference old); false: a tick that asks for a chunk
    waits for it (its action comes from its own frame)."""
    temporal_ensemble: bool = False
    """Average overlapping chunk predictions for the same tick (ACT)."""
    ensemble_decay: float = 0.01
    """Weight exp(-decay * age) of older predictions when ensembling."""
    embodiment: str = SIM_EMBODIMENT
    """The robot: a built-in embodiment spec's name or a spec file (cameras, state and action
    names, action limits; vla_rft/contract/embodiment.py). The policy package must have been
    trained for it: configure checks the package's manifest against it."""
    image_timeout_s: float = 0.5
    """Watchdog: hold the robot when the newest camera frame is older than this."""
    max_camera_skew_s: float = 0.02
    """A policy with further cameras acts on a main frame only with, from each, a frame at most
    this far from it in stamp; otherwise it holds (counted as unpaired_frames)."""
    max_state_skew_s: float = 0.02
    """A frame acts with the state published nearest to it (DDS source timestamps) if at most
    this far from it, waiting up to this long for one; otherwise with the newest state (counted
    as far_states). Keep it below the time between two states."""
    state_timeout_s: float = 0.5
    """Watchdog: hold the robot when the newest state is older than this."""
    publish_trajectory: bool = False
    """Also publish every new chunk as trajectory_msgs/JointTrajectory."""
    state_msg: str = "float32_array"
    """Type on /vla_rft/state: float32_array (the state vector) or joint_state
    (sensor_msgs/JointState, positions of state_joint_names); see robot_interfaces.py."""
    state_joint_names: tuple[str, ...] = ()
    """state_msg joint_state: the joints whose positions make the state vector, in its order."""
    command_msg: str = "none"
    """Also publish each action on /vla_rft/command as: none, twist_stamped (MoveIt Servo),
    float64_array (forward command controller) or joint_trajectory (joint trajectory
    controller)."""
    command_scale: tuple[float, ...] = ()
    """Per action dimension: command = action * scale (e.g. m/s per unit); empty = 1."""
    command_axes: tuple[str, ...] = ()
    """command_msg twist_stamped: per action dimension, the twist component it drives
    ('linear.x' ... 'angular.z') or '' (none, e.g. the gripper)."""
    command_frame_id: str = "base_link"
    """command_msg twist_stamped: the frame of the twist."""
    command_joint_names: tuple[str, ...] = ()
    """command_msg joint_trajectory: one joint name per action dimension."""
    command_time_s: float = 0.1
    """command_msg joint_trajectory: time_from_start of the commanded point."""
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS
    """Longer instructions are refused (counted, logged as an excerpt)."""
    estop_wait_s: float = 1.0
    """After activation, hold until the e-stop's latched state is heard, at most this long."""
    estop_required: bool = False
    """True: keep holding after estop_wait_s until an e-stop state is heard (a robot whose
    e-stop publishes a latched state); false: act without one after the wait."""
    autostart: bool = True
    """Configure and activate at start (the launch file sets false and drives the lifecycle)."""
    status_period_s: float = 1.0
    """Seconds between status messages."""

    def __post_init__(self):
        _require(bool(self.model_path.strip()), "model_path is empty")
        _positive("max_instruction_chars", self.max_instruction_chars)
        _require(
            math.isfinite(self.estop_wait_s) and self.estop_wait_s >= 0,
            f"estop_wait_s must be a number >= 0, got {self.estop_wait_s}",
        )
        _require(self.backend in BACKENDS, f"backend must be one of {BACKENDS}: {self.backend!r}")
        _require(
            self.policy_factory.count(":") == 1,
            f"policy_factory must be 'module:function', got {self.policy_factory!r}",
        )
        _require(self.trigger in TRIGGERS, f"trigger must be one of {TRIGGERS}: {self.trigger!r}")
        for name in (
            "control_rate_hz", "image_timeout_s", "state_timeout_s", "status_period_s",
            "max_camera_skew_s", "max_state_skew_s",
        ):  # fmt: skip
            _positive(name, getattr(self, name))
        _require(self.replan_every >= 1, f"replan_every must be >= 1, got {self.replan_every}")
        _require(self.ensemble_decay >= 0, f"ensemble_decay must be >= 0: {self.ensemble_decay}")
        try:
            check_interfaces(self, self.spec)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    @property
    def spec(self) -> EmbodimentSpec:
        """The embodiment spec named by `embodiment` (ConfigError if it cannot be loaded)."""
        return cached_embodiment(self.embodiment)


@dataclass(frozen=True)
class RecorderNodeConfig:
    """The episode recorder: every step that crossed the wire, one episode per start/end."""

    out_dir: str = "data/recorded"
    """Directory the episodes are written to (one rosbag2 MCAP directory each)."""
    embodiment: str = SIM_EMBODIMENT
    """The robot: a built-in embodiment spec's name or a spec file; its name, state and action
    names are stored with each episode (the start event may name another robot), and every
    camera it names is recorded."""
    fps: float = 30.0
    """Control rate stored with each episode unless the start event gives one."""
    source: str = "policy"
    """How the episodes are made (policy, teleop, ...) unless the start event says."""
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS
    """Longer instructions on the topic are refused (counted, logged as an excerpt)."""
    bag_version: int = EPISODE_BAG_VERSION
    """rosbag2 metadata version of the episodes: 8 opens in ROS 2 Humble and Jazzy, 9 in Jazzy
    and later only."""
    recover_on_start: bool = True
    """Complete episodes a killed recorder left partial in out_dir when starting."""
    status_period_s: float = 1.0
    """Seconds between status messages."""

    def __post_init__(self):
        _require(bool(self.out_dir.strip()), "out_dir is empty")
        _require(bool(self.source.strip()), "source is empty")
        _require(self.bag_version in (8, 9), f"bag_version must be 8 or 9, got {self.bag_version}")
        _positive("fps", self.fps)
        _positive("status_period_s", self.status_period_s)
        _positive("max_instruction_chars", self.max_instruction_chars)
        self.spec  # noqa: B018 (a spec that does not load is a configuration error)

    @property
    def spec(self) -> EmbodimentSpec:
        """The embodiment spec named by `embodiment`."""
        return cached_embodiment(self.embodiment)


@dataclass(frozen=True)
class SimRobotNodeConfig:
    """The simulated robot: a Meta-World task behind the camera, state and action topics."""

    task: str = "reach-v3"
    """Task simulated unless a start event names another."""
    image_size: int = SIM_IMAGE_SIZE
    """Side of the square camera image, pixels."""
    camera: str = SIM_CAMERA
    """Meta-World camera the main image comes from."""
    embodiment: str = SIM_EMBODIMENT
    """The simulated robot's spec (a built-in name or a file): each of its cameras is published
    on its topic, the further ones rendered from the Meta-World camera of that name
    (metaworld-sawyer-wrist adds the wrist camera, at a render per step)."""
    max_steps: int = 150
    """Steps after which an episode ends without success unless the start event says."""
    rate_hz: float = 30.0
    """Camera frames (and robot steps) per second."""
    frame_id: str = "camera"
    """frame_id of the image header."""
    status_period_s: float = 1.0
    """Seconds between status messages."""

    def __post_init__(self):
        _require(self.task in TASK_INSTRUCTIONS, unknown_task(self.task))
        _require(
            16 <= self.image_size <= 1024, f"image_size must be in [16, 1024]: {self.image_size}"
        )
        _require(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        further = tuple(c.name for c in self.spec.cameras[1:])
        problems = sim_problems(self.embodiment, self.spec, further)
        _require(not problems, "; ".join(problems))
        _positive("rate_hz", self.rate_hz)
        _positive("status_period_s", self.status_period_s)

    @property
    def spec(self) -> EmbodimentSpec:
        """The embodiment spec named by `embodiment`."""
        return cached_embodiment(self.embodiment)


@dataclass(frozen=True)
class EvalManagerNodeConfig:
    """The evaluation manager: N episodes through the graph, then the `vla-rft eval` report."""

    tasks: tuple[str, ...] = ("reach-v3",)
    """Meta-World tasks to evaluate."""
    perturbations: tuple[str, ...] = ("none",)
    """Start perturbations (none, object, goal, robot_init)."""
    episodes: int = 3
    """Episodes per task and perturbation; episode i starts from seed + i."""
    seed: int = 1000
    """Seed of episode 0."""
    max_steps: int = 150
    """Step limit per episode, sent to the simulated robot."""
    episode_timeout_s: float = 60.0
    """Wall-clock limit per episode; it is ended as a failure after that."""
    startup_timeout_s: float = 120.0
    """How long to wait for the nodes in wait_for_nodes to be active."""
    wait_for_nodes: tuple[str, ...] = ("sim_robot_node", "policy_node")
    """Nodes whose status must say 'active' before the first episode."""
    settle_s: float = 0.3
    """Pause between the end of one episode and the start of the next."""
    out_dir: str = "runs/eval/bringup/{time}"
    """Directory for report.json, report.md and the episode strip and GIF; {time} becomes the
    start time (YYYYmmdd-HHMMSS), so runs never overwrite each other. A directory that already
    holds a report is refused."""
    save_media: bool = True
    """Keep the frames of the first success and failure for the strip and GIF."""
    exit_when_done: bool = True
    """Stop the node (and `vla-rft bringup`) once the report is written."""
    status_period_s: float = 1.0
    """Seconds between status messages."""

    def __post_init__(self):
        _require(bool(self.tasks), "tasks is empty")
        unknown = [t for t in self.tasks if t not in TASK_INSTRUCTIONS]
        _require(not unknown, "; ".join(unknown_task(t) for t in unknown))
        bad = [p for p in self.perturbations if p not in PERTURBATION_KINDS]
        _require(
            bool(self.perturbations) and not bad,
            f"perturbations must be among {PERTURBATION_KINDS}, got {self.perturbations}",
        )
        _require(self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}")
        _require(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        for name in ("episode_timeout_s", "startup_timeout_s", "status_period_s"):
            _positive(name, getattr(self, name))
        _require(self.settle_s >= 0, f"settle_s must be >= 0, got {self.settle_s}")
        _require(bool(self.out_dir.strip()), "out_dir is empty")
        _require(
            "{time}" in self.out_dir or not (Path(self.out_dir) / "report.json").exists(),
            f"out_dir {self.out_dir} already holds a report.json; give a new directory (the "
            "default makes one per run)",
        )

    def run_dir(self, now: float | None = None) -> Path:
        """out_dir with {time} filled in."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
        return Path(self.out_dir.replace("{time}", stamp))


NODE_CONFIGS: dict[str, type] = {
    "policy_node": PolicyNodeConfig,
    "recorder_node": RecorderNodeConfig,
    "sim_robot_node": SimRobotNodeConfig,
    "eval_manager_node": EvalManagerNodeConfig,
}
"""Node name (= executable name) -> its parameters."""


# --- Parameter files ---------------------------------------------------------------------------


def read_params_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """The `ros__parameters` of `node_name` in a ROS 2 parameter file ('/**' entries first)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"parameter file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"parameter file {path}: expected node names at the top level")
    params: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        entry = data.get(key)
        if entry is None:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("ros__parameters"), dict):
            raise ConfigError(f"parameter file {path}: '{key}' needs a ros__parameters mapping")
        params.update(entry["ros__parameters"])
    return params


def load_node_config(
    cls: type[T],
    params_file: str | Path | None = None,
    node_name: str = "",
    overrides: list[str] | None = None,
) -> T:
    """Defaults, then the node's entry in `params_file`, then `key=value` overrides."""
    data: dict[str, Any] = {}
    if params_file is not None:
        data.update(read_params_file(params_file, node_name))
    data.update(parse_overrides(overrides))
    return config_from_params(cls, data)


def config_from_params(cls: type[T], params: dict[str, Any]) -> T:
    """Build `cls` from flat parameter values (lists for tuples); ConfigError names the key."""
    plain = {k: list(v) if _is_sequence(v) else v for k, v in params.items()}
    try:
        return from_dict(cls, plain)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"{cls.__name__}: {err}") from None


def _is_sequence(value: Any) -> bool:
    return not isinstance(value, (str, bytes, dict)) and hasattr(value, "__iter__")


def default_params(cls: type) -> dict[str, Any]:
    """Field name -> default value (tuples as lists), as ROS parameters are declared."""
    defaults = cls()
    return {
        f.name: list(getattr(defaults, f.name))
        if isinstance(getattr(defaults, f.name), tuple)
        else getattr(defaults, f.name)
        for f in dataclasses.fields(cls)
    }


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it (for ROS parameter descriptions)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def parameter_table(cls: type) -> str:
    """Markdown table of a node's parameters: name, default, description (for docs/NODES.md)."""
    docs = field_docs(cls)
    rows = ["| parameter | default | meaning |", "| --- | --- | --- |"]
    for name, default in default_params(cls).items():
        rows.append(f"| `{name}` | `{default}` | {docs.get(name, '')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    for node_name, node_config in NODE_CONFIGS.items():
        print(f"### {node_name}\n\n{parameter_table(node_config)}\n")
