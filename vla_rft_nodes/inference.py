"""Policy inference on its own thread: the control thread asks for a chunk and goes on.

    worker = InferenceWorker(lambda: load_policy(path, backend))  # loads on its thread
    policy = worker.wait_loaded()       # the policy, or the loader's exception
    worker.submit(Request(obs, tick, generation, stamp, reset_policy))   # False while busy
    result = worker.take(timeout, interrupted)  # a finished Result, or None
    worker.wake()                       # a waiting take() re-checks interrupted()

Loading, reset() and infer() all run on the worker's one thread (what GPU runtimes such as
TensorRT, whose CUDA context belongs to a thread, need).

With asynchronous inference a control tick keeps handing out the current chunk's actions while
the next chunk is computed, so a tick never waits for the model (the new chunk is aligned to the
tick it arrives at); a tick only waits when no chunk covers it (the first of an episode).
One request at a time; `Result.error` carries an exception raised by the policy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_rft.contract.constants import ACTION


@dataclass(frozen=True)
class Request:
    """An observation to infer a chunk from."""

    obs: dict[str, Any]
    """{'image', 'state', 'instruction'} as the Policy interface takes them."""
    tick: int
    """Broker tick the chunk's first action is for."""
    generation: int
    """The chunk queue's generation when asked (a reset since makes the answer stale)."""
    frame_stamp_ns: int
    """Stamp of the frame in `obs`."""
    reset_policy: bool = False
    """Call policy.reset() first (a new episode or instruction)."""


@dataclass(frozen=True)
class Result:
    request: Request
    chunk: np.ndarray | None
    """The policy's 'action' output, unchecked."""
    error: Exception | None
    seconds: float
    """Time policy.infer took."""


class InferenceWorker:
    """A thread that loads the policy, then runs policy.infer for one request at a time."""

    def __init__(self, load: Callable[[], Any]):
        self.policy = None
        self._load_error: Exception | None = None
        self._loaded = threading.Event()
        self._cv = threading.Condition()
        self._request: Request | None = None
        self._result: Result | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._loop, args=(load,), name="inference", daemon=True
        )
        self._thread.start()

    def wait_loaded(self):
        """The loaded policy; re-raises what the loader raised."""
        self._loaded.wait()
        if self._load_error is not None:
            raise self._load_error
        return self.policy

    @property
    def busy(self) -> bool:
        return self._busy

    def submit(self, request: Request) -> bool:
        """Start inferring `request`; False (and nothing done) if one is still running."""
        with self._cv:
            if self._busy or self._closed:
                return False
            self._request, self._busy = request, True
            self._cv.notify_all()
            return True

    def take(
        self, timeout: float = 0.0, interrupted: Callable[[], bool] = lambda: False
    ) -> Result | None:
        """The finished result (once), waiting up to `timeout` seconds for a running request;
        the wait ends early once `interrupted()` is true and `wake()` is called."""
        with self._cv:
            if self._result is None and self._busy and timeout > 0:
                self._cv.wait_for(
                    lambda: self._result is not None or self._closed or interrupted(), timeout
                )
            result, self._result = self._result, None
            return result

    def wake(self) -> None:
        """Make a waiting take() check its `interrupted` again (an e-stop, a deactivation)."""
        with self._cv:
            self._cv.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout)

    def _loop(self, load: Callable[[], Any]) -> None:
        try:
            self.policy = load()
        except Exception as err:  # handed to wait_loaded(), in the configuring thread
            self._load_error = err
        finally:
            self._loaded.set()
        if self._load_error is not None:
            return
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._request is not None or self._closed)
                if self._closed:
                    return
                request, self._request = self._request, None
            start = time.perf_counter()
            chunk, error = None, None
            try:
                if request.reset_policy:
                    self.policy.reset()
                chunk = self.policy.infer(request.obs)[ACTION]
            except Exception as err:  # reported to the control thread, which holds the robot
                error = err
            result = Result(request, chunk, error, time.perf_counter() - start)
            with self._cv:
                self._result, self._busy = result, False
                self._cv.notify_all()
