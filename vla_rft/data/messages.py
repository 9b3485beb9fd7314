"""Conversions between numpy arrays and ROS 2 messages (rosbags message classes).

Shared by the episode store and the nodes, so that a frame crosses the wire, the disk and the
policy in one agreed form: RGB uint8 [H, W, 3].
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
from rosbags.typesys import Stores, get_typestore

ENCODING_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
"""Image encodings every host accepts, with their channel count (all 8-bit)."""


class MessageError(ValueError):
    """A message that cannot be turned into the data it should carry."""


@cache
def typestore():
    """ROS 2 Humble message definitions (identical for the types used here in Jazzy)."""
    return get_typestore(Stores.ROS2_HUMBLE)


def _types():
    return typestore().types


def _stamp(stamp_ns: int):
    return _types()["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)


def check_rgb_image(image: np.ndarray) -> np.ndarray:
    """The image if it is RGB uint8 [H, W, 3], else MessageError naming what it is."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise MessageError(
            f"expected an RGB uint8 image of shape [H, W, 3], got "
            f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
        )
    if image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise MessageError(f"expected an RGB uint8 image of shape [H, W, 3], got {image.shape}")
    return image


def image_to_msg(image: np.ndarray, stamp_ns: int, frame_id: str = "camera"):
    """RGB uint8 [H, W, 3] -> sensor_msgs/msg/Image (rgb8)."""
    h, w, _ = check_rgb_image(image).shape
    t = _types()
    header = t["std_msgs/msg/Header"](stamp=_stamp(stamp_ns), frame_id=frame_id)
    data = np.ascontiguousarray(image).reshape(-1)
    return t["sensor_msgs/msg/Image"](
        header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3, data=data
    )


def image_layout(encoding: str, height: int, width: int, step: int, nbytes: int) -> int:
    """Check the fields of a sensor_msgs/Image against its data; returns the channel count.

    Every host runs this before converting, so that each accepts the same encodings and rejects
    a size that does not match the data with the same reason.
    """
    channels = ENCODING_CHANNELS.get(encoding)
    if channels is None:
        raise MessageError(
            f"unsupported image encoding {encoding!r}; accepted: {', '.join(ENCODING_CHANNELS)}"
        )
    h, w, step = int(height), int(width), int(step)
    if h == 0 or w == 0:
        raise MessageError(f"empty image ({w}x{h})")
    if step < w * channels:
        raise MessageError(f"row step {step} is shorter than width {w} x {channels} channels")
    if nbytes != step * h:
        raise MessageError(
            f"image data has {nbytes} bytes but {w}x{h} {encoding} with step {step} "
            f"needs {step * h}"
        )
    return channels


def _byte_array(data) -> np.ndarray:
    """uint8 [N] view of message data: bytes, array.array, numpy arrays or a list of ints."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8)


def decode_image(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """Fields of a sensor_msgs/Image in any of ENCODING_CHANNELS -> RGB uint8 [H, W, 3].

    `data` may be bytes (the Cyclone DDS host), array.array (rclpy) or a numpy array
    (rosbags). The result may be a read-only view of `data` when no conversion is needed.
    """
    pixels = _byte_array(data)
    channels = image_layout(encoding, height, width, step, pixels.size)
    h, w, step = int(height), int(width), int(step)
    pixels = pixels.reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding.startswith("bgr"):
        pixels = pixels[:, :, 2::-1]
    return np.ascontiguousarray(pixels[:, :, :3])


def msg_to_image(msg) -> np.ndarray:
    """sensor_msgs/msg/Image in any of ENCODING_CHANNELS -> RGB uint8 [H, W, 3]."""
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def compressed_msg_to_image(msg) -> np.ndarray:
    """sensor_msgs/msg/CompressedImage (JPEG or PNG, as image_transport writes) -> RGB uint8
    [H, W, 3]. image_transport encodes colour frames as bgr8, which OpenCV decodes as BGR."""
    import cv2  # only the importers decode compressed frames; the robot side needs no OpenCV

    if "compresseddepth" in msg.format.lower().replace(" ", ""):
        raise MessageError(f"depth images are not supported (format {msg.format!r})")
    bgr = cv2.imdecode(_byte_array(msg.data), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MessageError(
            f"cannot decode the compressed image (format {msg.format!r}, "
            f"{len(msg.data)} bytes); JPEG and PNG are accepted"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def array_to_msg(values: np.ndarray, labels: tuple[str, ...] = ()):
    """float32 [N] -> std_msgs/msg/Float32MultiArray; `labels` name the entries, comma-separated."""
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    t = _types()
    dim = t["std_msgs/msg/MultiArrayDimension"](
        label=",".join(labels), size=values.size, stride=values.size
    )
    layout = t["std_msgs/msg/MultiArrayLayout"](dim=[dim], data_offset=0)
    return t["std_msgs/msg/Float32MultiArray"](layout=layout, data=values)


def msg_to_array(msg, expected_size: int | None = None) -> np.ndarray:
    """std_msgs/msg/Float32MultiArray -> float32 [N], checking size and finiteness."""
    values = np.asarray(msg.data, dtype=np.float32).reshape(-1)
    if expected_size is not None and values.size != expected_size:
        raise MessageError(f"expected {expected_size} values, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise MessageError(f"non-finite values in {values.tolist()}")
    return values


def string_to_msg(text: str):
    """str -> std_msgs/msg/String."""
    return _types()["std_msgs/msg/String"](data=text)


def json_to_msg(payload: dict):
    """dict -> std_msgs/msg/String holding compact JSON (episode events)."""
    return string_to_msg(json.dumps(payload, sort_keys=True))


def serialize(msg) -> bytes:
    """Message -> ROS 2 CDR bytes (what rosbag2 stores and DDS sends)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, msgtype: str):
    """ROS 2 CDR bytes -> message of `msgtype`."""
    return typestore().deserialize_cdr(data, msgtype)
