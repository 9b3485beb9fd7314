"""Videos written with PyAV (LeRobot's encoders: AV1 through SVT-AV1, h264 through x264).

SVT-AV1 switches the thread that drives it to real-time scheduling (SCHED_FIFO) when it runs
as root, and leaves it so: every process started afterwards inherits it, and a busy real-time
process starves the machine. `encode_video` puts the caller's scheduling back when it is done.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

ENCODERS = {"av1": "libsvtav1", "h264": "libx264"}
"""Codec name (as LeRobot's info.json records it) -> the PyAV encoder."""


@contextlib.contextmanager
def keep_scheduling():
    """Restore the calling thread's scheduling policy and priority on the way out."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)


def encode_video(path: str | Path, frames: np.ndarray, fps: float, codec: str, crf: int) -> None:
    """RGB uint8 [T, H, W, 3] -> an mp4 at `path` (yuv420p, `crf` quality, lower is better)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with keep_scheduling(), av.open(str(path), "w") as container:
        stream = container.add_stream(ENCODERS[codec], rate=round(fps), options={"crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
