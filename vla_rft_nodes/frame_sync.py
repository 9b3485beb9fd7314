"""Frames of several cameras paired by header stamp (approximate time), for the policy node and
the recorder; and the robot state that goes with a frame (StateSync), for the policy node.

    sync = CameraSync(("gripperPOV",), max_skew_s=0.02, counters)
    sync.add("gripperPOV", stamp_ns, image)        # each further camera's frames, as they come
    sync.ready(main_stamp_ns)                       # every further camera has a frame to pair
    sync.pair(main_stamp_ns, waited_s)              # {camera: image}, WAIT or None (unpaired)

The main camera's newest frame is paired with, for each further camera, the frame nearest to it
in stamp if that is at most `max_skew_s` away. When none is, a better one may still be on its
way (the camera's newest frame is older than the main one) for up to `max_skew_s` after the
main frame arrived: WAIT. After that the main frame cannot be paired: it is counted once as
`unpaired_frames`, and the policy node holds instead of acting on a stale pair.

    states = StateSync(max_skew_s=0.02, counters)
    states.add(source_ns, state)                    # each state, with when it was published
    states.pair(frame_source_ns, waited_s)          # the frame's state, or WAIT

A state message has no stamp, so a frame's state is the one *published* nearest to the frame
(DDS source timestamps), if at most `max_skew_s` away: a robot publishes a frame and its state
together, and `ros2 bag play` does too, but they travel on two topics and either may be handled
first. While no state is that close and a newer one may still come, the frame waits, for up to
`max_skew_s`; after that it goes with the newest state (counted once as `far_states`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

KEEP = 8
"""Frames kept per further camera (a quarter of a second at 30 Hz)."""
STATES_KEPT = 64
"""States kept for pairing (0.64 s of a 100 Hz joint state stream)."""

WAIT = "wait"
"""`CameraSync.pair` and `StateSync.pair`: a frame (a state) close enough may still arrive."""


def nearest(frames: list[tuple[int, Any]], stamp_ns: int) -> tuple[int, Any] | None:
    """The (stamp, frame) nearest in stamp to `stamp_ns` (the newer one on a tie), or None."""
    return min(reversed(frames), key=lambda f: abs(f[0] - stamp_ns), default=None)


class _Pairing:
    """What both pairings share: the skew within which two messages belong together, and a
    counter bumped once per frame that could not be paired (the frame is asked about again
    on every tick until a newer one replaces it).

    Messages are added on the executor thread and paired on the control thread, so each pairing
    reads a copy of its deque (`list(deque)` copies without releasing the GIL)."""

    def __init__(self, max_skew_s: float, counters=None):
        self.max_skew_s = max_skew_s
        self.max_skew_ns = round(max_skew_s * 1e9)
        self.counters = counters
        self._counted: int | None = None  # the stamp of the last frame counted

    def _count_once(self, stamp_ns: int, counter: str) -> None:
        if self._counted != stamp_ns and self.counters is not None:
            self._counted = stamp_ns
            self.counters.add(counter)


class CameraSync(_Pairing):
    """The further cameras' recent frames, and their pairing with a main camera frame."""

    def __init__(self, cameras: tuple[str, ...], max_skew_s: float, counters=None):
        super().__init__(max_skew_s, counters)
        self.cameras = tuple(cameras)
        self.frames: dict[str, deque[tuple[int, Any]]] = {
            name: deque(maxlen=KEEP) for name in self.cameras
        }

    def add(self, name: str, stamp_ns: int, frame: Any) -> None:
        self.frames[name].append((stamp_ns, frame))

    def clear(self) -> None:
        """Forget every frame (a new episode)."""
        for frames in self.frames.values():
            frames.clear()

    def _snapshot(self) -> dict[str, list[tuple[int, Any]]]:
        """A copy of each further camera's recent frames, read once per pairing."""
        return {name: list(frames) for name, frames in self.frames.items()}

    def _close(self, stamp_ns: int, snapshot: dict[str, list[tuple[int, Any]]]) -> dict[str, Any]:
        """Each further camera's frame within the skew of `stamp_ns` (only those that have one)."""
        found = {}
        for name, frames in snapshot.items():
            best = nearest(frames, stamp_ns)
            if best is not None and abs(best[0] - stamp_ns) <= self.max_skew_ns:
                found[name] = best[1]
        return found

    def ready(self, stamp_ns: int) -> bool:
        """Every further camera has a frame within the skew of the main frame's `stamp_ns`."""
        return len(self._close(stamp_ns, self._snapshot())) == len(self.cameras)

    def pair(self, stamp_ns: int, waited_s: float) -> dict[str, Any] | str | None:
        """{camera: frame} for the main frame stamped `stamp_ns` that arrived `waited_s` ago;
        WAIT while a close enough frame may still come; None (counted once per main frame as
        unpaired_frames) when it cannot be paired."""
        snapshot = self._snapshot()
        found = self._close(stamp_ns, snapshot)
        if len(found) == len(self.cameras):
            return found
        may_come = all(
            not frames or frames[-1][0] < stamp_ns
            for name, frames in snapshot.items()
            if name not in found
        )
        if may_come and waited_s < self.max_skew_s:
            return WAIT
        self._count_once(stamp_ns, "unpaired_frames")
        return None


class StateSync(_Pairing):
    """The robot's recent states by publication time, and the one that goes with a frame."""

    def __init__(self, max_skew_s: float, counters=None):
        super().__init__(max_skew_s, counters)
        self.states: deque[tuple[int, Any]] = deque(maxlen=STATES_KEPT)

    def add(self, source_ns: int, state: Any) -> None:
        self.states.append((source_ns, state))

    def newest(self) -> Any:
        """The newest state, or None before the first."""
        states = list(self.states)
        return states[-1][1] if states else None

    def pair(self, source_ns: int, waited_s: float) -> Any:
        """The state for the frame published at `source_ns` that arrived `waited_s` ago: the
        one published nearest to it if at most max_skew_s away; WAIT while none is and a newer
        one may still come; else the newest (None before the first state)."""
        states = list(self.states)
        best = nearest(states, source_ns)
        if best is None or abs(best[0] - source_ns) <= self.max_skew_ns:
            return None if best is None else best[1]
        if states[-1][0] < source_ns and waited_s < self.max_skew_s:
            return WAIT
        self._count_once(source_ns, "far_states")
        return states[-1][1]
