"""The simulated robot's embodiment spec (contract/embodiments/metaworld-sawyer.yaml), read once
without MuJoCo: its camera, its names and limits, for every default that is about the sim."""

from vla_rft.contract.constants import SIM_EMBODIMENT
from vla_rft.contract.embodiment import EmbodimentSpec, load_embodiment

SAWYER: EmbodimentSpec = load_embodiment(SIM_EMBODIMENT)
"""Meta-World's Sawyer as the stack sees it."""
SIM_CAMERA: str = SAWYER.main_camera.name
"""The Meta-World camera the robot is filmed from by default."""
SIM_IMAGE_SIZE: int = SAWYER.main_camera.width
"""Default side of the square camera image, pixels."""
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
"""Cameras every Meta-World v3 scene defines."""


def sim_problems(embodiment: str, spec: EmbodimentSpec, cameras: tuple[str, ...]) -> list[str]:
    """Why the spec named `embodiment`, filmed from the Meta-World `cameras`, cannot be the
    simulated robot (empty when it can): it must be the Sawyer, and each camera a scene camera."""
    problems = []
    mismatches = spec.mismatches(SAWYER.summary(), SAWYER.state_dim, SAWYER.action_dim)
    if mismatches:
        problems.append(f"embodiment {embodiment!r} is not the Sawyer: {mismatches}")
    problems += [f"camera must be one of {CAMERAS}, got {c!r}" for c in cameras if c not in CAMERAS]
    return problems
