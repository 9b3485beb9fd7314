"""What stands between a policy's output and the robot: pure functions and small classes.

    watchdog.feed(now); watchdog.stale(now)         no fresh input -> hold
    estop.engage(reason); estop.engaged             latched until release()
    limiter(action, previous) -> (action, clipped)  range and per-tick change limits
    check_chunk(chunk, action_dim)                  NaN/inf and shape guard
    hold_action(previous, spec)                     no motion, gripper kept

Numpy only; the policy node calls these from its control thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_rft.contract.embodiment import EmbodimentSpec


class UnsafeChunk(ValueError):
    """A policy output that must not reach the robot (wrong shape, NaN or inf)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


def check_chunk(chunk: object, action_dim: int) -> np.ndarray:
    """The chunk as float32 [K, action_dim]; UnsafeChunk('shape' | 'nonfinite') otherwise."""
    arr = np.asarray(chunk, dtype=np.float32)
    if arr.ndim == 1 and arr.size == action_dim:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != action_dim:
        raise UnsafeChunk(
            "shape", f"the policy returned an action chunk of shape {list(arr.shape)}, "
            f"expected [K, {action_dim}]"
        )  # fmt: skip
    bad = ~np.isfinite(arr)
    if bad.any():
        k, d = np.argwhere(bad)[0]
        raise UnsafeChunk(
            "nonfinite",
            f"the policy returned {int(bad.sum())} non-finite values (first: step {k}, "
            f"dimension {d} = {arr[k, d]})",
        )
    return arr


def hold_action(previous: np.ndarray | None, spec: EmbodimentSpec) -> np.ndarray | None:
    """The command that keeps the robot still.

    Displacements and velocities: zeros, except the spec's `hold_keep` entries (a gripper),
    which keep the previous command. Positions (action_kind joint_position): the previous
    command; None before the first one, as there is no safe position to send."""
    if spec.action_kind == "joint_position":
        return None if previous is None else np.array(previous, np.float32)
    action = np.zeros(spec.action_dim, np.float32)
    keep = list(spec.hold_keep_dims)
    if previous is not None and keep:
        action[keep] = previous[keep]
    return action


@dataclass(frozen=True)
class ActionLimiter:
    """Clip to [low, high] per dimension, then limit the change from the previous action."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    max_change: tuple[float, ...]

    def __call__(self, action: np.ndarray, previous: np.ndarray | None) -> tuple[np.ndarray, int]:
        """(limited action float32 [A], number of dimensions that were limited)."""
        action = np.asarray(action, dtype=np.float32)
        limited = np.clip(action, self.low, self.high)
        if previous is not None:
            step = np.asarray(self.max_change, np.float32)
            limited = np.clip(limited, previous - step, previous + step)
        changed = int(np.count_nonzero(~np.isclose(limited, action, rtol=0, atol=1e-7)))
        return limited.astype(np.float32), changed

    def chunk(self, chunk: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        """Limit every step of a chunk [K, A] in order, as the ticks would."""
        out = []
        for action in chunk:
            previous, _ = self(action, previous)
            out.append(previous)
        return np.stack(out)


class Watchdog:
    """Age of the newest input; stale when older than `timeout_s` (or never fed)."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.last: float | None = None

    def feed(self, now: float) -> None:
        self.last = now

    def age(self, now: float) -> float:
        return float("inf") if self.last is None else now - self.last

    def stale(self, now: float) -> bool:
        return self.age(now) > self.timeout_s


class EStopLatch:
    """Once engaged, stays engaged until release(); the reason of the first engagement is kept."""

    def __init__(self):
        self.reason: str | None = None

    @property
    def engaged(self) -> bool:
        return self.reason is not None

    def engage(self, reason: str) -> bool:
        """Engage; True if it was not engaged before."""
        first = self.reason is None
        if first:
            self.reason = reason
        return first

    def release(self) -> None:
        self.reason = None
