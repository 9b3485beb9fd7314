"""The simulated robot: Meta-World v3 tasks with instructions, seeded starts and perturbations.

`MetaWorldRobot` and `SimConfig` need the `sim` extra (MuJoCo, Meta-World) and load it on first
use, so that instructions and perturbations stay importable without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vla_rft.contract.constants import PERTURBATION_KINDS
from vla_rft.sim.instructions import TASK_INSTRUCTIONS, instruction_for
from vla_rft.sim.perturbations import PERTURBATIONS, Perturbation, get_perturbation
from vla_rft.sim.spec import CAMERAS, SAWYER, SIM_CAMERA, SIM_IMAGE_SIZE

if TYPE_CHECKING:
    from vla_rft.sim.metaworld_robot import MetaWorldRobot, SimConfig

_NEED_SIMULATOR = ("MetaWorldRobot", "SimConfig")

__all__ = [
    "CAMERAS",
    "PERTURBATIONS",
    "PERTURBATION_KINDS",
    "SAWYER",
    "SIM_CAMERA",
    "SIM_IMAGE_SIZE",
    "TASK_INSTRUCTIONS",
    "MetaWorldRobot",
    "Perturbation",
    "SimConfig",
    "get_perturbation",
    "instruction_for",
]


def __getattr__(name: str) -> Any:
    if name in _NEED_SIMULATOR:
        from vla_rft.sim import metaworld_robot

        return getattr(metaworld_robot, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
