"""Names shared by every part of vla_rft: topics, message types, keys, schema versions, the
choices a user names (backends, perturbations) and the control defaults.

Change a name here and every writer, reader, node and test follows.
"""

from typing import Literal, get_args

from vla_rft.contract.qos import QoS

# --- Episode files (rosbag2 MCAP) ------------------------------------------------------------
EPISODE_SCHEMA_VERSION = 1
"""Version of the episode layout below; readers refuse versions they do not know."""
SUPPORTED_EPISODE_SCHEMA_VERSIONS = (1,)

PARTIAL_PREFIX = ".partial-"
"""An episode being written lives under this prefix and is renamed when complete."""
TRUNCATED_MARK = ".truncated-"
"""`.partial-<name>.truncated-<ns>` holds a finished episode whose file was cut short, set aside
by recovery; the salvaged steps go back to `<name>`."""
LABELS_FILE = "labels.jsonl"
"""Beside an episode's bag: the relabels made after it was written (`vla-rft episodes label`),
one JSON line each, the newest last; readers take the newest outcome, the bag is never edited."""
QUARANTINE_PREFIX = ".quarantine-"
"""An interrupted episode with no complete step is moved here by recovery, files as found."""
EXPERT_ACTIONS_KEY = "expert_actions"
"""`EpisodeMeta.extra` key: the scripted expert's clean action at every step ([T][A] numbers),
beside the executed ones, which `vla-rft collect --noise` perturbs; the RFT reference can use it."""

# --- Topics -----------------------------------------------------------------------------------
IMAGE_TOPIC = "/camera/image_raw"
"""The main camera's frames in an episode (and the simulated robot's main camera)."""
CAMERA_TOPIC_FORMAT = "/camera/{name}/image_raw"
"""An episode's further camera `name` (EpisodeMeta.cameras after the first) is recorded on
`CAMERA_TOPIC_FORMAT.format(name=name)`."""
STATE_TOPIC = "/vla_rft/state"
ACTION_TOPIC = "/vla_rft/action"
INSTRUCTION_TOPIC = "/vla_rft/instruction"
EPISODE_EVENT_TOPIC = "/vla_rft/episode_event"
ESTOP_TOPIC = "/vla_rft/estop"
ACTION_TRAJECTORY_TOPIC = "/vla_rft/action_trajectory"
"""The policy node's JointTrajectory option: each new action chunk, one point per tick."""
STATUS_TOPIC = "/vla_rft/status"
"""Every node's counters and state as JSON, latched per node (std_msgs/String)."""
STANDIN_SOURCE = "standin"
"""EpisodeMeta.source of an episode the stand-in policy drove (its actions mean nothing): the
flywheel leaves such episodes out unless asked."""
GRAPH_ID_ENV = "VLA_RFT_GRAPH_ID"
"""Environment variable naming the graph a node belongs to: `vla-rft bringup` and the launch
file give every node of one graph the same new id; it is in each status message and in the
episode events the graph's nodes send, and nodes ignore another graph's events."""
MAX_INSTRUCTION_CHARS = 500
"""Default bound on an instruction received on the topic (longer ones are refused)."""

# --- ROS 2 message types ----------------------------------------------------------------------
IMAGE_TYPE = "sensor_msgs/msg/Image"
FLOATS_TYPE = "std_msgs/msg/Float32MultiArray"
DOUBLES_TYPE = "std_msgs/msg/Float64MultiArray"
STRING_TYPE = "std_msgs/msg/String"
BOOL_TYPE = "std_msgs/msg/Bool"
TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
TWIST_STAMPED_TYPE = "geometry_msgs/msg/TwistStamped"
"""Every ROS 2 message type the nodes speak (vla_rft_nodes/dds_types.py defines each)."""

IMAGE_MSGTYPE = IMAGE_TYPE
STATE_MSGTYPE = FLOATS_TYPE
ACTION_MSGTYPE = FLOATS_TYPE
INSTRUCTION_MSGTYPE = STRING_TYPE
EPISODE_EVENT_MSGTYPE = STRING_TYPE
ESTOP_MSGTYPE = BOOL_TYPE
ACTION_TRAJECTORY_MSGTYPE = TRAJECTORY_TYPE
STATUS_MSGTYPE = STRING_TYPE
"""The type on each topic above."""

EPISODE_TOPIC_QOS = {
    IMAGE_TOPIC: QoS.SENSOR_DATA,
    STATE_TOPIC: QoS.SENSOR_DATA,
    ACTION_TOPIC: QoS.RELIABLE,
    INSTRUCTION_TOPIC: QoS.LATCHED,
    EPISODE_EVENT_TOPIC: QoS.RELIABLE,
}
"""How the recorder subscribes to each recorded topic, and the QoS an episode offers when
`ros2 bag play` republishes it (the instruction latched, images as sensor data)."""
EPISODE_BAG_VERSION = 8
"""rosbag2 metadata version episodes are written in: ROS 2 Humble and Jazzy both read 8 (9 writes
offered_qos_profiles as a list, which Humble cannot parse: ros2/rosbag2#2013)."""

EPISODE_TOPICS = {
    IMAGE_TOPIC: IMAGE_MSGTYPE,
    STATE_TOPIC: STATE_MSGTYPE,
    ACTION_TOPIC: ACTION_MSGTYPE,
    INSTRUCTION_TOPIC: INSTRUCTION_MSGTYPE,
    EPISODE_EVENT_TOPIC: EPISODE_EVENT_MSGTYPE,
}

# --- Observation / batch keys -----------------------------------------------------------------
OBS_IMAGE = "image"
"""uint8 [H, W, 3] RGB frame of the main camera."""
OBS_IMAGES = "images"
"""{camera name: uint8 [H, W, 3]} frames of the further cameras (absent or empty: one camera);
a policy reads the ones its `PolicySpec.cameras` name after the first."""
OBS_STATE = "state"
"""float32 [state_dim] proprioceptive robot state."""
OBS_INSTRUCTION = "instruction"
"""str natural-language instruction."""
ACTION = "action"
"""float32 [action_dim] (one step) or [H, action_dim] (a chunk)."""

# --- Simulated robot (Meta-World Sawyer) -----------------------------------------------------
SIM_EMBODIMENT = "metaworld-sawyer"
"""The simulated robot's embodiment spec (contract/embodiments/metaworld-sawyer.yaml): its
cameras, state and action names, limits and control rate."""
SIM_WRIST_EMBODIMENT = "metaworld-sawyer-wrist"
"""The same robot with a second, wrist camera (gripperPOV): `vla-rft collect --embodiment`,
the sim robot node's `embodiment` parameter."""

# --- Choices a user names -----------------------------------------------------------------------
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
"""Inference backends of `vla_rft.runtime.load_policy` ('auto': TensorRT where an engine and a
GPU are there, else ONNX Runtime, else torch for a checkpoint)."""
PerturbationKind = Literal["none", "object", "goal", "robot_init"]
PERTURBATION_KINDS: tuple[str, ...] = get_args(PerturbationKind)
"""Start-state perturbations of an evaluation episode (`vla_rft.sim.perturbations`)."""

# --- Control defaults: one value for the node graph, `vla-rft eval` and corrections -------------
REPLAN_EVERY = 4
"""Control ticks between policy calls (a new chunk every REPLAN_EVERY actions)."""
