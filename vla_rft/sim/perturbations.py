"""Start-state perturbations for robustness evaluation.

VLA-RFT (arXiv 2510.00406) tests policies on episodes whose start differs from the training
distribution by a few centimetres: the object moved, the goal moved, or the robot starting
elsewhere. A `Perturbation` says what moves and how far (metres); the direction is random.
The object and the goal move in the table plane (x, y); the hand's start moves in 3-D.

Offsets are drawn from a numpy Generator the caller passes in, so a seeded Generator replays
the same offset. This module needs neither MuJoCo nor Meta-World.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_rft.contract.constants import PERTURBATION_KINDS, PerturbationKind

MAX_OFFSET_M = 0.15
"""Largest accepted shift, metres (15 cm): well past any robustness test, and it catches
centimetres typed as metres (5 for 0.05)."""


@dataclass(frozen=True)
class Perturbation:
    """Move one part of the start state by a random offset of bounded length."""

    kind: PerturbationKind = "none"
    """What moves: nothing, the object, the goal, or the robot's initial hand position."""
    min_offset_m: float = 0.0
    """Shortest shift, metres."""
    max_offset_m: float = 0.0
    """Longest shift, metres (the length is drawn uniformly between the two)."""

    def __post_init__(self) -> None:
        if self.kind not in PERTURBATION_KINDS:
            raise ValueError(
                f"perturbation kind must be one of {PERTURBATION_KINDS}, got {self.kind!r}"
            )
        for name in ("min_offset_m", "max_offset_m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number of metres, got {value!r}")
            if not 0.0 <= value <= MAX_OFFSET_M:
                raise ValueError(
                    f"{name} must lie in [0, {MAX_OFFSET_M}] metres, got {value} "
                    "(offsets are metres: 5 cm is 0.05)"
                )
        if self.min_offset_m > self.max_offset_m:
            raise ValueError(
                f"min_offset_m ({self.min_offset_m}) exceeds max_offset_m ({self.max_offset_m})"
            )
        if self.kind == "none" and self.max_offset_m != 0.0:
            raise ValueError("a 'none' perturbation must have zero offsets")
        if self.kind != "none" and self.max_offset_m == 0.0:
            raise ValueError(f"a {self.kind!r} perturbation needs max_offset_m > 0")

    @property
    def horizontal(self) -> bool:
        """True when the offset stays in the table plane (object, goal); False for the hand."""
        return self.kind in ("object", "goal")

    def sample_offset(self, rng: np.random.Generator) -> np.ndarray:
        """A random offset, float64 [3] (x, y, z) metres in Meta-World's world frame."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        if self.kind == "none":
            return np.zeros(3)
        length = rng.uniform(self.min_offset_m, self.max_offset_m)
        return length * (_horizontal_direction(rng) if self.horizontal else _direction_3d(rng))


def _horizontal_direction(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0.0, 2.0 * math.pi)
    return np.array([math.cos(angle), math.sin(angle), 0.0])


def _direction_3d(rng: np.random.Generator) -> np.ndarray:
    """Uniform on the unit sphere (a normalised Gaussian vector)."""
    vector = rng.standard_normal(3)
    return vector / np.linalg.norm(vector)


PERTURBATIONS: dict[str, Perturbation] = {
    "none": Perturbation("none"),
    "object": Perturbation("object", min_offset_m=0.025, max_offset_m=0.05),
    "goal": Perturbation("goal", min_offset_m=0.025, max_offset_m=0.05),
    "robot_init": Perturbation("robot_init", min_offset_m=0.025, max_offset_m=0.05),
}
"""Named presets: object or goal shifted 2.5-5 cm in a random horizontal direction; the initial
hand position shifted 2.5-5 cm in a random 3-D direction."""


def get_perturbation(perturbation: Perturbation | str) -> Perturbation:
    """A Perturbation given itself or a preset name; ValueError naming the presets otherwise."""
    if isinstance(perturbation, Perturbation):
        return perturbation
    if isinstance(perturbation, str) and perturbation in PERTURBATIONS:
        return PERTURBATIONS[perturbation]
    raise ValueError(
        f"unknown perturbation {perturbation!r}; "
        f"use a Perturbation or one of {sorted(PERTURBATIONS)}"
    )
