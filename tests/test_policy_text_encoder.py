"""The instruction encoder: our BERT on the bundled all-MiniLM-L6-v2 weights gives the same
embeddings as sentence-transformers, independent of batch padding, and means something."""

from __future__ import annotations

import numpy as np
import pytest

from vla_rft.models.policy.text_encoder import SentenceEncoder, bundled_model_dir


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder()


def test_embeddings_are_unit_vectors_independent_of_padding(encoder):
    short = "open the drawer"
    alone = encoder(short)
    batch = encoder.encode([short, "pick up the puck and place it at the target behind the wall"])
    assert alone.shape == (384,) and alone.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batch[0], alone, atol=1e-5)


def test_similar_instructions_are_closer(encoder):
    reach, paraphrase, other = encoder.encode(
        ["move the gripper to the target", "move the hand to the goal", "open the drawer"]
    )
    assert reach @ paraphrase > reach @ other + 0.2


def test_empty_instructions_are_refused(encoder):
    with pytest.raises(ValueError, match="instruction is empty"):
        encoder.encode(["push the puck", " "])


@pytest.mark.slow
def test_matches_sentence_transformers(encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(bundled_model_dir()), device="cpu")
    texts = ["push the puck to the target", "Insert the peg into the hole, from the side!"]
    np.testing.assert_allclose(encoder.encode(texts), reference.encode(texts), atol=1e-5)
