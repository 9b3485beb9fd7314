"""Which frame and state an action belongs to, from when each was published.

A recorder cannot pair an action with "the newest frame received": the camera's frame and the
policy's action computed from it travel on different topics, and the action can arrive first
(the policy answers within a millisecond from its queue of actions). It then got the previous
frame, and `vla-rft episodes check` found steps stamped like the one before them. Instead, each
message is kept with its DDS source timestamp (when its writer published it) and an action is
paired with the newest frame and state published before it. While no frame (or state) newer than
the last step's has arrived, the action waits: until one published before it arrives (the one the
policy saw), or one published after it (then nothing newer is coming for it: the policy acted
twice on one frame), or the episode ends.
"""

from __future__ import annotations

from collections import deque
from typing import Any

KEEP = 16
"""Frames and states kept for pairing (half a second at 30 Hz)."""
MAX_PENDING = 64
"""Actions left waiting for a frame (a camera that stopped) before the oldest is paired anyway."""


class StepPairing:
    """Frames, states and actions in, (frame, state, action) steps out, in action order."""

    def __init__(self):
        self.frames: deque[tuple[int, Any]] = deque(maxlen=KEEP)  # (source ns, frame)
        self.states: deque[tuple[int, Any]] = deque(maxlen=KEEP)
        self.pending: deque[tuple[int, Any]] = deque()  # actions not yet paired
        self.last_ns: tuple[int | None, int | None] = (None, None)  # the last step's frame, state

    def clear(self) -> None:
        """Forget everything (a new episode: only what comes after its start belongs to it)."""
        self.frames.clear()
        self.states.clear()
        self.pending.clear()
        self.last_ns = (None, None)

    def frame(self, source_ns: int, frame: Any) -> None:
        self.frames.append((source_ns, frame))

    def state(self, source_ns: int, state: Any) -> None:
        self.states.append((source_ns, state))

    def action(self, source_ns: int, action: Any) -> None:
        self.pending.append((source_ns, action))

    def steps(self, final: bool = False) -> tuple[list[tuple[Any, Any, Any]], int]:
        """(the (frame, state, action) steps that can be written now, how many actions were
        dropped for having no frame or state published before them); `final`: all of them (the
        episode ends)."""
        out, dropped = [], 0
        while self.pending:
            source_ns, action = self.pending[0]
            frame = _newest_before(self.frames, source_ns)
            state = _newest_before(self.states, source_ns)
            known = all(
                _settled(items, found, last, source_ns)
                for items, found, last in zip(
                    (self.frames, self.states), (frame, state), self.last_ns, strict=True
                )
            )
            if not (known or final or len(self.pending) > MAX_PENDING):
                break
            self.pending.popleft()
            if frame is None or state is None:
                dropped += 1
                continue
            self.last_ns = (frame[0], state[0])
            out.append((frame[1], state[1], action))
        return out, dropped


def _settled(items, found, last_ns, source_ns: int) -> bool:
    """Nothing newer can still come for an action published at `source_ns`: the newest item
    before it is not the last step's, or one published after it has arrived."""
    return (found is not None and found[0] != last_ns) or any(ns > source_ns for ns, _ in items)


def _newest_before(items: deque[tuple[int, Any]], source_ns: int) -> tuple[int, Any] | None:
    """The newest (source ns, item) published before `source_ns`, or None."""
    for ns, item in reversed(items):
        if ns < source_ns:
            return ns, item
    return None
