"""Episode events on /vla_rft/episode_event (std_msgs/String holding JSON).

    {"event": "start", "episode": "eval-reach-v3-none-001000", "task": "reach-v3",
     "instruction": "move the gripper to the target", "seed": 1000, "perturbation": "none",
     "max_steps": 150, "source": "policy"}
    {"event": "end", "episode": "...", "success": true, "reason": "success", "by": "sim",
     "steps": 42, "state": [0.1, 0.6, 0.2, 1.0]}

A start asks the simulated robot to reset (real robots ignore what they cannot do), the policy
to reset, and the recorder to open an episode; an end labels it (from the simulator, the
operator or the evaluation manager). An operator starts and labels episodes by hand with
`ros2 topic pub --once /vla_rft/episode_event std_msgs/msg/String "{data: '{\\"event\\": \\"end\\",
\\"success\\": true, \\"by\\": \\"operator\\"}'}"`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from vla_rft.contract.constants import PERTURBATION_KINDS


class EventError(ValueError):
    """An episode event that cannot be understood; the message says why."""


@dataclass(frozen=True)
class StartEvent:
    """Begin an episode."""

    episode: str = ""
    """Episode name (the recorder makes one up when empty)."""
    task: str = ""
    """Task name; the simulated robot switches to it."""
    instruction: str = ""
    """What the robot is told to do (also published on the instruction topic)."""
    seed: int | None = None
    """Simulated start; None lets the simulator pick."""
    perturbation: str = "none"
    """Start perturbation for the simulated robot."""
    max_steps: int | None = None
    """Step limit for the simulated robot; None keeps its own."""
    source: str = ""
    """How the episode is made (policy, teleop, ...), for the recorder."""
    robot: str = ""
    """Robot name for the recorder; empty keeps its own."""
    fps: float | None = None
    """Control rate for the recorder; None keeps its own."""
    graph: str = ""
    """The graph that sent it (GRAPH_ID_ENV); empty from an operator or another tool."""

    def __post_init__(self):
        if self.perturbation not in PERTURBATION_KINDS:
            raise EventError(
                f"start event: perturbation must be one of {PERTURBATION_KINDS}, "
                f"got {self.perturbation!r}"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise EventError(f"start event: max_steps must be >= 1, got {self.max_steps}")


@dataclass(frozen=True)
class EndEvent:
    """End (and label) the current episode."""

    episode: str = ""
    """Episode name, if the sender knows it."""
    success: bool = False
    """Whether the task was achieved."""
    reason: str = ""
    """success, max_steps, timeout, operator, ..."""
    by: str = ""
    """Who ended it: sim, operator, eval_manager."""
    steps: int | None = None
    """Steps the robot took, when known."""
    state: tuple[float, ...] = field(default_factory=tuple)
    """Final robot state, when known."""
    graph: str = ""
    """The graph that sent it (GRAPH_ID_ENV); empty from an operator or another tool."""


Event = StartEvent | EndEvent
_KINDS = {"start": StartEvent, "end": EndEvent}


def to_json(event: Event) -> str:
    kind = "start" if isinstance(event, StartEvent) else "end"
    payload = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(event).items()}
    return json.dumps({"event": kind, **payload}, sort_keys=True)


def parse_event(text: str) -> Event:
    """JSON text -> StartEvent | EndEvent; EventError names what is wrong."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as err:
        raise EventError(f"episode event is not JSON ({err}): {str(text)[:80]!r}") from None
    if not isinstance(data, dict):
        raise EventError(f"episode event must be a JSON object, got {type(data).__name__}")
    kind = data.pop("event", None)
    cls = _KINDS.get(kind)
    if cls is None:
        raise EventError(f"episode event kind must be one of {sorted(_KINDS)}, got {kind!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise EventError(f"{kind} event: unknown keys {unknown}; known: {sorted(known)}")
    _check_types(kind, data)
    if "state" in data:
        data["state"] = tuple(float(x) for x in data["state"])
    return cls(**data)


_TYPES = {
    "episode": str, "task": str, "instruction": str, "perturbation": str, "source": str,
    "robot": str, "reason": str, "by": str, "graph": str, "success": bool, "seed": int,
    "max_steps": int, "steps": int, "fps": (int, float), "state": list,
}  # fmt: skip


def _check_types(kind: str, data: dict) -> None:
    for key, value in data.items():
        expected = _TYPES[key]
        if value is None and key in ("seed", "max_steps", "steps", "fps"):
            continue
        wrong = not isinstance(value, expected) or (
            isinstance(value, bool) and expected is not bool
        )
        if key == "state" and not wrong:
            wrong = not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        if wrong:
            raise EventError(f"{kind} event: {key} has the wrong type ({value!r})")
