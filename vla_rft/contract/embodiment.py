"""The embodiment spec: what a robot sees, reports and takes, in one YAML file per robot.

    spec = load_embodiment("metaworld-sawyer")        # a built-in (contract/embodiments/*.yaml)
    spec = load_embodiment("my_arm.yaml")             # or any spec file
    spec.state_dim, spec.action_names, spec.cameras[0].topic, spec.action_low

Everything robot-specific that the nodes, the recorder, the simulator and the model package
agree on is here: cameras (name, topic, size), state and action names, units and limits, the
control rate. A new robot is a new spec file; no code changes (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from vla_rft.contract.config import ConfigError, from_dict

BUILTIN_DIR = Path(__file__).parent / "embodiments"
"""The specs shipped with vla_rft, one `<name>.yaml` each."""
ACTION_KINDS = ("ee_delta", "ee_velocity", "joint_position", "joint_velocity")


@dataclass(frozen=True)
class CameraSpec:
    """One camera of the robot."""

    name: str
    """Short name ('scene', 'wrist'); the first camera of a spec is its main camera."""
    topic: str
    """ROS 2 topic of its sensor_msgs/Image."""
    width: int
    """Image width in pixels, as published."""
    height: int
    """Image height in pixels, as published."""

    def __post_init__(self):
        if not self.name or not self.topic.startswith("/"):
            raise ValueError(f"camera needs a name and an absolute topic, got {self}")
        if not (1 <= self.width <= 8192 and 1 <= self.height <= 8192):
            raise ValueError(f"camera {self.name}: size {self.width}x{self.height} out of range")


@dataclass(frozen=True)
class EmbodimentSpec:
    """A robot as the stack sees it."""

    name: str
    """Robot name, stored with every episode and in every model package trained on it."""
    control_rate_hz: float
    """Actions per second the robot is built to take."""
    cameras: tuple[CameraSpec, ...]
    """Every camera; the first is the main one (the world model's)."""
    state_names: tuple[str, ...]
    """One name per entry of the state vector."""
    state_units: tuple[str, ...]
    """Unit of each state entry ('m', 'rad', '1' for normalised)."""
    action_kind: str
    """What an action commands: ee_delta, ee_velocity, joint_position or joint_velocity."""
    action_names: tuple[str, ...]
    """One name per action entry."""
    action_units: tuple[str, ...]
    """Unit of each action entry."""
    action_low: tuple[float, ...]
    """Smallest command per action entry; the policy node clips to it."""
    action_high: tuple[float, ...]
    """Largest command per action entry."""
    max_action_change: tuple[float, ...]
    """Largest change of each action entry from one control tick to the next."""
    hold_keep: tuple[str, ...] = ()
    """Action entries that keep their last command while the robot holds (a gripper); the
    others hold at zero (ee_delta, velocities) or at the last command (joint_position)."""

    def __post_init__(self):
        _check(bool(self.name.strip()), "name is empty")
        _check(
            math.isfinite(self.control_rate_hz) and self.control_rate_hz > 0,
            f"control_rate_hz must be positive, got {self.control_rate_hz}",
        )
        _check(bool(self.cameras), "at least one camera")
        for what, names in (
            ("camera names", [c.name for c in self.cameras]),
            ("camera topics", [c.topic for c in self.cameras]),
            ("state_names", self.state_names),
            ("action_names", self.action_names),
        ):
            _check(len(set(names)) == len(names), f"{what} repeat: {list(names)}")
        _check(bool(self.state_names) and bool(self.action_names), "state and action names")
        _check(self.action_kind in ACTION_KINDS, f"action_kind must be one of {ACTION_KINDS}")
        _check(len(self.state_units) == self.state_dim, "one state unit per state name")
        for field_name in ("action_units", "action_low", "action_high", "max_action_change"):
            size = len(getattr(self, field_name))
            _check(
                size == self.action_dim, f"{field_name} has {size} entries, not {self.action_dim}"
            )
        for d, (lo, hi) in enumerate(zip(self.action_low, self.action_high, strict=True)):
            _check(lo < hi, f"action_low[{d}] = {lo} must be below action_high[{d}] = {hi}")
        _check(all(x > 0 for x in self.max_action_change), "max_action_change must be positive")
        unknown = [n for n in self.hold_keep if n not in self.action_names]
        _check(not unknown, f"hold_keep names {unknown} are not action names")

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def main_camera(self) -> CameraSpec:
        return self.cameras[0]

    @property
    def hold_keep_dims(self) -> tuple[int, ...]:
        """Indices of `hold_keep` in the action vector."""
        return tuple(self.action_names.index(n) for n in self.hold_keep)

    def summary(self) -> dict:
        """What a model package records of the embodiment it was trained for."""
        return {
            "name": self.name,
            "state_names": list(self.state_names),
            "action_names": list(self.action_names),
            "cameras": [c.name for c in self.cameras],
        }

    def camera(self, name: str) -> CameraSpec:
        """The camera called `name`; ValueError naming the robot's cameras if there is none."""
        for camera in self.cameras:
            if camera.name == name:
                return camera
        known = [c.name for c in self.cameras]
        raise ValueError(f"embodiment {self.name!r} has no camera {name!r} (it has {known})")

    def mismatches(self, trained_for: dict | None, state_dim: int, action_dim: int) -> list[str]:
        """How a model package (its recorded embodiment summary and dimensions) disagrees with
        this robot; empty when it fits."""
        problems = []
        if state_dim != self.state_dim:
            problems.append(f"state has {state_dim} entries in the package, {self.state_dim} here")
        if action_dim != self.action_dim:
            problems.append(
                f"actions have {action_dim} entries in the package, {self.action_dim} here"
            )
        if trained_for:
            for key in ("name", "state_names", "action_names"):
                theirs, ours = trained_for.get(key), self.summary()[key]
                if theirs is not None and theirs != ours:
                    problems.append(f"{key}: package {theirs}, robot {ours}")
        return problems


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def builtin_embodiments() -> list[str]:
    """Names of the shipped specs."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def embodiment_path(name_or_path: str | Path) -> Path:
    """A built-in spec's file by name, or the given file."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return Path(text)
    path = BUILTIN_DIR / f"{text}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown embodiment {text!r}: not a built-in ({', '.join(builtin_embodiments())}) "
            "and not a .yaml path"
        )
    return path


def load_embodiment(name_or_path: str | Path) -> EmbodimentSpec:
    """The spec named (built-in) or at a path; ConfigError naming the file and the problem.
    A spec with `base: <built-in name or path>` takes every field it does not give from that
    spec (the same robot with other cameras)."""
    path = embodiment_path(name_or_path)
    data = _read_spec(path)
    if "base" in data:
        base = data.pop("base")
        if embodiment_path(base) == path:
            raise ConfigError(f"embodiment spec {path}: it is its own base")
        data = {**_read_spec(embodiment_path(base)), **data}
        data.pop("base", None)
    try:
        return from_dict(EmbodimentSpec, data)
    except ValueError as err:  # ConfigError included
        raise ConfigError(f"embodiment spec {path}: {err}") from None


cached_embodiment = functools.cache(load_embodiment)
"""`load_embodiment`, each spec read once per process (for code that looks a spec up often: a
node's control thread, every simulated robot)."""


def _read_spec(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"embodiment spec {path}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"embodiment spec {path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"embodiment spec {path}: expected a mapping of fields")
    return data
