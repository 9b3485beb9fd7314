"""How a camera frame becomes the square image a model sees: one function for training (the data
set's cache), import and the robot (the policy's transforms), declared in every model package.

    fit_square(frames uint8 [..., H, W, 3], size) -> uint8 [..., size, size, 3]

The centre square (side min(H, W)) is cut out, then resized with area interpolation: a 640x480
camera loses 80 columns on each side and keeps its aspect ratio, where a plain resize would
squash it. Square frames are only resized. OpenCV is imported on the first frame that needs it.
"""

from __future__ import annotations

import numpy as np

IMAGE_FIT = "center_crop_area"
"""The name model packages record for `fit_square` (manifest `extra["image_fit"]`)."""


def fit_square(frames: np.ndarray, size: int | None) -> np.ndarray:
    """Centre-crop to a square and resize to `size` (None: unchanged)."""
    frames = np.asarray(frames)
    height, width = frames.shape[-3:-1]
    if size is None or (height, width) == (size, size):
        return frames
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = frames[..., top : top + side, left : left + side, :]
    if side == size:
        return np.ascontiguousarray(square)
    import cv2

    flat = square.reshape(-1, side, side, 3)
    out = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in flat]
    return np.stack(out).reshape(*frames.shape[:-3], size, size, 3)
