"""Hands out one action per control tick from the action chunks a policy predicts.

The policy predicts K actions at once; executing all of them open-loop is fast but ignores new
observations. The broker asks for a new chunk every `replan_every` ticks (1 <= replan_every <= K)
and, with temporal ensembling (ACT, Zhao et al. 2023), averages every prediction made so far for
the current tick, weighting older predictions by exp(-ensemble_decay * age).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from vla_rft.contract.constants import REPLAN_EVERY


@dataclass(frozen=True)
class ChunkBrokerConfig:
    """How chunks become per-tick actions."""

    replan_every: int = REPLAN_EVERY
    """Ticks between policy calls; the chunk length executes it open-loop."""
    temporal_ensemble: bool = False
    """Average overlapping predictions for the same tick."""
    ensemble_decay: float = 0.01
    """Weight exp(-decay * age) of a prediction made `age` ticks ago (ACT uses 0.01)."""

    def __post_init__(self):
        if self.replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {self.replan_every}")
        if self.ensemble_decay < 0:
            raise ValueError(f"ensemble_decay must be >= 0, got {self.ensemble_decay}")


class ChunkBroker:
    """broker.needs_chunk() -> policy.infer -> broker.add_chunk(chunk); broker.next_action()."""

    def __init__(self, config: ChunkBrokerConfig | None = None):
        self.config = config or ChunkBrokerConfig()
        self.reset()

    def reset(self) -> None:
        """Drop every pending prediction (new episode or new instruction)."""
        self.tick = 0
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (tick of its first action, [K, A])
        self._last_chunk_tick: int | None = None

    def needs_chunk(self) -> bool:
        """True when the policy should be asked for a new chunk before the next tick."""
        if self._last_chunk_tick is None:
            return True
        if self.tick - self._last_chunk_tick >= self.config.replan_every:
            return True
        return not any(start + len(c) > self.tick for start, c in self._chunks)

    def add_chunk(self, chunk: np.ndarray) -> None:
        """A new prediction [K, A] whose first action is for the current tick."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 2 or len(chunk) == 0:
            raise ValueError(f"an action chunk is [K, A] with K >= 1, got shape {chunk.shape}")
        if not np.all(np.isfinite(chunk)):
            raise ValueError("the action chunk holds NaN or inf")
        if not self.config.temporal_ensemble:
            self._chunks.clear()
        self._chunks.append((self.tick, chunk))
        self._last_chunk_tick = self.tick

    def next_action(self) -> np.ndarray:
        """The action [A] for the current tick; advances the tick. Raises if none is pending."""
        while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) <= self.tick:
            self._chunks.popleft()  # predictions that no longer reach this tick
        live = [(start, c) for start, c in self._chunks if start <= self.tick < start + len(c)]
        if not live:
            raise RuntimeError(f"no action chunk covers tick {self.tick}; call add_chunk first")
        if self.config.temporal_ensemble:
            ages = np.array([self.tick - start for start, _ in live], dtype=np.float64)
            weights = np.exp(-self.config.ensemble_decay * ages)
            actions = np.stack([c[self.tick - start] for start, c in live])
            action = (weights[:, None] * actions).sum(0) / weights.sum()
        else:
            start, chunk = live[-1]
            action = chunk[self.tick - start]
        self.tick += 1
        return action.astype(np.float32)
