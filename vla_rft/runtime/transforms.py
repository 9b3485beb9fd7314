"""Pre- and post-processing of the policy, in numpy, in one place.

Training, export checks and the robot's policy node all go through these, so that the network
sees the same numbers everywhere:

    image   uint8 [..., H, W, 3] RGB ──fit_square──▶ float32 [..., 3, S, S] in [-1, 1]
    state   float32 [..., S] ──(x - mean) / std──▶ normalised
    action  normalised [..., K, A] ──x * std + mean, clip to [low, high]──▶ robot units

Mean and std are the training split's (`NormStats` in checkpoints); dimensions that never varied
(std < 1e-6) are only centred, as `vla_rft.data.normalization` does for the data set. No torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vla_rft.contract.constants import OBS_IMAGES
from vla_rft.contract.image import fit_square
from vla_rft.contract.instruction import check_instruction

_MIN_STD = 1e-6


@dataclass(frozen=True)
class ImageTransform:
    """uint8 RGB images -> the network's float input."""

    size: int
    """Square side the network expects; other frames go through `fit_square` (centre crop,
    INTER_AREA), as the data set's cache does."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim < 3 or image.shape[-1] != 3:
            raise ValueError(
                f"image must be uint8 [..., H, W, 3] RGB, got {image.dtype} {list(image.shape)}"
            )
        image = fit_square(image, self.size)
        scaled = image.astype(np.float32) * (2.0 / 255.0) - 1.0
        return np.ascontiguousarray(np.moveaxis(scaled, -1, -3))  # [..., 3, S, S]


@dataclass(frozen=True)
class Normalizer:
    """Per-dimension (x - mean) / std and back."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_stats(cls, stats: dict) -> Normalizer:
        """From an ArrayStats dict as checkpoints store it ({"mean": [...], "std": [...], ...})."""
        return cls(tuple(map(float, stats["mean"])), tuple(map(float, stats["std"])))

    def __post_init__(self):
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean ({len(self.mean)}) and std ({len(self.std)}) must match")

    @property
    def _scale(self) -> np.ndarray:
        std = np.asarray(self.std, np.float32)
        return np.where(std < _MIN_STD, 1.0, std).astype(np.float32)

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim < 1 or x.shape[-1] != len(self.mean):
            raise ValueError(f"{what} must end in {len(self.mean)} entries, got {list(x.shape)}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what} holds NaN or inf: {x.tolist()}")
        return x

    def normalize(self, x: np.ndarray, what: str = "value") -> np.ndarray:
        return (self._check(x, what) - np.asarray(self.mean, np.float32)) / self._scale

    def unnormalize(self, x: np.ndarray, what: str = "value") -> np.ndarray:
        return self._check(x, what) * self._scale + np.asarray(self.mean, np.float32)


@dataclass(frozen=True)
class ActionTransform:
    """Normalised chunks -> robot actions, clipped to the robot's range."""

    normalizer: Normalizer
    low: float = -1.0
    """Smallest command the robot accepts per dimension (Meta-World: -1)."""
    high: float = 1.0
    """Largest command the robot accepts per dimension (Meta-World: 1)."""

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        actions = self.normalizer.unnormalize(chunk, "action chunk")
        return np.clip(actions, self.low, self.high).astype(np.float32)


@dataclass(frozen=True)
class PolicyTransforms:
    """Everything between raw observations and the network, and back to robot actions."""

    image: ImageTransform
    state: Normalizer
    action: ActionTransform

    @classmethod
    def from_stats(cls, image_size: int, norm_stats: dict, low=-1.0, high=1.0) -> PolicyTransforms:
        """From the `norm_stats` dict of a checkpoint (NormStats.to_dict())."""
        return cls(
            ImageTransform(image_size),
            Normalizer.from_stats(norm_stats["state"]),
            ActionTransform(Normalizer.from_stats(norm_stats["action"]), low, high),
        )

    def observation(self, image: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 [..., H, W, 3], float [..., S]) -> (float32 [..., 3, S, S], float32 [..., S])."""
        return self.image(image), self.state.normalize(state, "state")


def further_images(obs: dict, cameras: tuple[str, ...]) -> list[np.ndarray]:
    """The frames of the further cameras `cameras[1:]` from obs["images"], in that order;
    ValueError naming each camera the observation lacks."""
    given = obs.get(OBS_IMAGES) or {}
    missing = [name for name in cameras[1:] if name not in given]
    if missing:
        raise ValueError(
            f"the policy sees the cameras {list(cameras)}: the observation has no frame of "
            f"{missing} in obs[{OBS_IMAGES!r}] (it has {sorted(given) or 'none'})"
        )
    return [np.asarray(given[name]) for name in cameras[1:]]


def embedding_table(
    table: object, where: str, error: type[ValueError] = ValueError
) -> dict[str, np.ndarray]:
    """Stored training-instruction embeddings ({sentence: [E] numbers}, as a checkpoint or a
    manifest holds them) -> float32 arrays; `error` naming `where` if they are not such a table."""
    if not isinstance(table, dict):
        raise error(
            f"{where}: instruction_embeddings must map sentence -> [floats], "
            f"got a {type(table).__name__}"
        )
    known = {}
    for text, values in table.items():
        try:
            known[text] = np.asarray(values, np.float32)
        except (TypeError, ValueError):
            known[text] = None
        if known[text] is None or known[text].ndim != 1:
            raise error(f"{where}: the embedding of {text[:60]!r} is not a list of numbers")
    if len({e.shape for e in known.values()}) > 1:
        raise error(f"{where}: instruction embeddings of different sizes")
    return known


@dataclass
class InstructionCache:
    """instruction -> embedding float32 [E], each distinct instruction encoded once.

    `known` comes prefilled from the checkpoint (the training instructions), so a robot given
    one of those never loads the sentence encoder; `encode` (text -> [E]) is called, and its
    result kept, for any other instruction.
    """

    known: dict[str, np.ndarray] = field(default_factory=dict)
    encode: Callable[[str], np.ndarray] | None = None

    def __call__(self, text: object) -> np.ndarray:
        text = check_instruction(text)
        if text not in self.known:
            if self.encode is None:
                raise ValueError(
                    f"instruction {text!r} was not seen in training and no sentence encoder is "
                    f"available; known: {sorted(self.known)}"
                )
            self.known[text] = np.asarray(self.encode(text), dtype=np.float32)
        return self.known[text]
