"""The episode: what one run of a robot (real or simulated) leaves behind.

Per step an RGB image, the proprio state, the action taken and a timestamp; per episode the
instruction, whether it succeeded, and where it came from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from vla_rft.contract.constants import EPISODE_SCHEMA_VERSION


class EpisodeError(ValueError):
    """An episode (on disk or in memory) that breaks the contract; names the file and the fault."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path is not None else reason)


class EpisodeChecksumError(EpisodeError):
    """An episode file whose bytes changed after they were written (an MCAP chunk CRC fails)."""


@dataclass
class EpisodeMeta:
    """Per-episode facts, where `ros2 bag info` (metadata.yaml) and Foxglove (events) find them."""

    task: str
    """Task name, e.g. 'push-v3'."""
    instruction: str
    """Natural-language instruction the robot was given."""
    robot: str
    """Robot (or simulator) that produced the episode."""
    fps: float
    """Control rate the steps were taken at."""
    source: str
    """How the episode was made: 'expert', 'policy', 'teleop', 'import', ..."""
    success: bool = False
    """Whether the task was achieved (set when the episode ends)."""
    state_names: tuple[str, ...] = ()
    """One name per state dimension."""
    action_names: tuple[str, ...] = ()
    """One name per action dimension."""
    cameras: dict[str, str] = field(default_factory=dict)
    """Camera name -> the topic the robot published it on, main camera first (its frames are
    `Episode.images`; the others are `Episode.camera_images`); empty in older episodes."""
    start_time_ns: int = 0
    """Wall-clock time of step 0, nanoseconds since the epoch."""
    schema_version: int = EPISODE_SCHEMA_VERSION
    """Episode layout version (see constants)."""
    extra: dict = field(default_factory=dict)
    """Free-form provenance: seed, perturbation, policy version, recovery report, ..."""

    def __post_init__(self):
        if not self.instruction.strip():
            raise EpisodeError(None, "the instruction is empty")
        if not self.task.strip():
            raise EpisodeError(None, "the task name is empty")
        if not (self.fps > 0 and np.isfinite(self.fps)):
            raise EpisodeError(None, f"fps must be positive, got {self.fps}")
        self.state_names = tuple(self.state_names)
        self.action_names = tuple(self.action_names)
        self.cameras = dict(self.cameras)

    @property
    def further_cameras(self) -> tuple[str, ...]:
        """Names of the cameras recorded beside the main one."""
        return tuple(self.cameras)[1:]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EpisodeMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Episode:
    """A whole episode in memory. T steps; shapes below."""

    images: np.ndarray
    """uint8 [T, H, W, 3] RGB frames."""
    states: np.ndarray
    """float32 [T, S] proprio state observed with each frame."""
    actions: np.ndarray
    """float32 [T, A] action taken after observing step t."""
    timestamps: np.ndarray
    """float64 [T] seconds since the first step."""
    meta: EpisodeMeta
    camera_images: dict[str, np.ndarray] = field(default_factory=dict)
    """Further camera name -> uint8 [T, H, W, 3], one frame per step (meta.further_cameras)."""

    def __len__(self) -> int:
        return len(self.images)

    def validate(self, path=None) -> Episode:
        """Check shapes, dtypes and values; raise EpisodeError naming `path` and the fault."""
        t = len(self.images)
        if t == 0:
            raise EpisodeError(path, "the episode has no steps")
        if set(self.camera_images) != set(self.meta.further_cameras):
            raise EpisodeError(
                path,
                f"camera frames of {sorted(self.camera_images)} for the further cameras "
                f"{list(self.meta.further_cameras)}",
            )
        for name, frames in (("images", self.images), *self.camera_images.items()):
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
                raise EpisodeError(
                    path, f"{name} must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}"
                )
            if len(frames) != t:
                raise EpisodeError(path, f"{name} has {len(frames)} frames for {t} steps")
        for name, arr in (("states", self.states), ("actions", self.actions)):
            if arr.ndim != 2 or len(arr) != t:
                raise EpisodeError(path, f"{name} must be [T={t}, D], got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                step = int(np.argwhere(~np.isfinite(arr))[0, 0])
                raise EpisodeError(path, f"{name} hold NaN or inf at step {step}")
        if self.timestamps.shape != (t,):
            raise EpisodeError(path, f"timestamps must be [T={t}], got {self.timestamps.shape}")
        if t > 1 and np.any(np.diff(self.timestamps) < 0):
            raise EpisodeError(path, "timestamps go backwards")
        for names, arr, what in (
            (self.meta.state_names, self.states, "state"),
            (self.meta.action_names, self.actions, "action"),
        ):
            if names and len(names) != arr.shape[1]:
                raise EpisodeError(path, f"{len(names)} {what} names for {arr.shape[1]} dimensions")
        return self

    def problems(self) -> list[str]:
        """What makes a readable episode unfit for training (`vla-rft episodes check` reports
        them): more steps than the limit it was started with, or steps whose stamps do not
        advance (messages of another graph on the same DDS domain interleaved with its own)."""
        found = []
        limit = self.meta.extra.get("max_steps")
        if isinstance(limit, int) and len(self) > limit:
            found.append(f"{len(self)} steps, more than its limit of {limit}")
        stalled = np.flatnonzero(np.diff(self.timestamps) <= 0) + 1
        if len(stalled):
            found.append(
                f"{len(stalled)} steps stamped no later than the one before (first: step "
                f"{int(stalled[0])}): interleaved messages?"
            )
        return found
