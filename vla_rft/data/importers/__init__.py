"""Importers: data from outside (LeRobot data sets, rosbag2 bags) into vla_rft episodes.
`vla-rft import lerobot|rosbag ...` is the command line (`command.py`)."""

from vla_rft.data.importers.common import DataImportError, ImportSummary
from vla_rft.data.importers.lerobot import LeRobotImportConfig, import_lerobot
from vla_rft.data.importers.rosbag import RosbagImportConfig, import_rosbag

__all__ = [
    "DataImportError",
    "ImportSummary",
    "LeRobotImportConfig",
    "RosbagImportConfig",
    "import_lerobot",
    "import_rosbag",
]
