"""The chunk broker's timing: when it asks for chunks, which action each tick gets."""

from __future__ import annotations

import numpy as np
import pytest

from vla_rft.runtime.chunk_broker import ChunkBroker, ChunkBrokerConfig


def _chunk(first: float, k: int = 4) -> np.ndarray:
    """Chunk whose action i is [first + i, -(first + i)]."""
    values = first + np.arange(k, dtype=np.float32)
    return np.stack([values, -values], axis=1)


def test_open_loop_chunks_replan_every_k_ticks():
    broker = ChunkBroker(ChunkBrokerConfig(replan_every=4))
    calls, actions = [], []
    for tick in range(10):
        if broker.needs_chunk():
            calls.append(tick)
            broker.add_chunk(_chunk(100 * tick))
        actions.append(broker.next_action()[0])
    assert calls == [0, 4, 8]
    assert actions == [0, 1, 2, 3, 400, 401, 402, 403, 800, 801]


def test_replanning_more_often_than_the_chunk_length_uses_the_newest_chunk():
    broker = ChunkBroker(ChunkBrokerConfig(replan_every=2))
    out = []
    for tick in range(6):
        if broker.needs_chunk():
            broker.add_chunk(_chunk(100 * tick))
        out.append(broker.next_action()[0])
    assert out == [0, 1, 200, 201, 400, 401]


def test_temporal_ensembling_averages_overlapping_predictions():
    broker = ChunkBroker(
        ChunkBrokerConfig(replan_every=1, temporal_ensemble=True, ensemble_decay=0.0)
    )
    broker.add_chunk(_chunk(0))  # predicts 0,1,2,3 for ticks 0..3
    assert broker.next_action()[0] == 0
    broker.add_chunk(_chunk(10))  # predicts 10,11,12,13 for ticks 1..4
    assert broker.next_action()[0] == pytest.approx((1 + 10) / 2)
    broker.add_chunk(_chunk(20))  # ticks 2..5
    assert broker.next_action()[0] == pytest.approx((2 + 11 + 20) / 3)


def test_ensemble_decay_favours_older_predictions_as_in_act():
    broker = ChunkBroker(
        ChunkBrokerConfig(replan_every=1, temporal_ensemble=True, ensemble_decay=1.0)
    )
    broker.add_chunk(_chunk(0))
    broker.next_action()
    broker.add_chunk(_chunk(10))
    w_old, w_new = np.exp(-1.0), 1.0
    assert broker.next_action()[0] == pytest.approx((w_old * 1 + w_new * 10) / (w_old + w_new))


def test_reset_drops_pending_actions_and_bad_chunks_are_refused():
    broker = ChunkBroker()
    broker.add_chunk(_chunk(0))
    broker.next_action()
    broker.reset()
    assert broker.needs_chunk() and broker.tick == 0
    with pytest.raises(RuntimeError, match="no action chunk covers tick 0"):
        broker.next_action()
    with pytest.raises(ValueError, match="NaN"):
        broker.add_chunk(np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match=r"\[K, A\]"):
        broker.add_chunk(np.zeros(4))
