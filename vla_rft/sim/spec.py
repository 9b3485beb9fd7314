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
