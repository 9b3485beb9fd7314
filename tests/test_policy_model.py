"""The policy network: the stochastic sampler's log-probability and mean path, bounded noise,
backbone freezing, input checks and a traceable deterministic graph."""

from __future__ import annotations

import math

import pytest
import torch

from vla_rft.models.policy import ChunkPredictor, PolicyConfig, VLAPolicy
from vla_rft.models.policy.chunk_head import masked_mean

TINY = PolicyConfig(
    image_size=16,
    vision_channels=(8, 16),
    width=32,
    heads=2,
    decoder_layers=1,
    chunk_size=4,
    flow_steps=5,
)


def _obs(batch: int = 3, config: PolicyConfig = TINY, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(batch, 3, config.image_size, config.image_size, generator=g) * 2 - 1,
        "instruction_embedding": torch.randn(batch, config.instruction_dim, generator=g),
        "state": torch.randn(batch, config.state_dim, generator=g),
    }


def _policy(head: str = "flow", seed: int = 0) -> VLAPolicy:
    torch.manual_seed(seed)
    config = PolicyConfig(**{**TINY.__dict__, "head": head})
    return VLAPolicy(config).eval()


def test_log_prob_matches_a_hand_computed_chain():
    """Velocity zero and sigma constant: each step is x_{k+1} ~ N(x_k, s^2), so the chain's
    log-density is a sum of scalar Gaussian terms we can write down."""
    policy = _policy()
    decoder_out = policy.head.decoder.out
    torch.nn.init.zeros_(decoder_out.weight)
    torch.nn.init.zeros_(decoder_out.bias)
    last = policy.head.sigma.net[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, math.log(3.0))  # sigmoid = 0.75
    s = 0.08 + (0.2 - 0.08) * 0.75  # 0.17

    steps, (k, a) = policy.head.steps, policy.head.chunk_shape
    traj = torch.zeros(1, steps + 1, k, a)
    traj[0, 1:, 0, 0] = torch.tensor([0.1, 0.3, 0.0, -0.2, -0.2])  # one entry moves, others stay
    increments = [0.1, 0.2, -0.3, -0.2, 0.0]
    per_entry = -math.log(s) - 0.5 * math.log(2 * math.pi)
    expected = steps * k * a * per_entry - sum(d * d for d in increments) / (2 * s * s)
    with torch.no_grad():
        got = policy.log_prob(_obs(1), traj)
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("head", ["flow", "gaussian"])
def test_noise_free_chain_is_the_deterministic_chunk(head):
    policy = _policy(head)
    obs = _obs()
    with torch.no_grad():
        sample = policy.sample_chunk(obs, torch.Generator().manual_seed(0), noise_scale=0.0)
        chunk = policy.predict_chunk(obs["image"], obs["instruction_embedding"], obs["state"])
    torch.testing.assert_close(sample.actions, chunk, rtol=0, atol=1e-6)
    torch.testing.assert_close(sample.trajectory[:, -1], chunk, rtol=0, atol=1e-6)
    assert sample.trajectory.shape == (3, policy.head.steps + 1, *policy.head.chunk_shape)
    assert torch.all(sample.trajectory[:, 0] == 0)


@pytest.mark.parametrize("head", ["flow", "gaussian"])
def test_sampled_log_prob_is_recomputed_and_differentiable(head):
    policy = _policy(head)
    obs = _obs()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        sample = policy.sample_chunk(obs, gen)
    again = policy.sample_chunk(obs, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.actions, sample.actions)  # same generator, same chunk
    assert not torch.allclose(sample.actions, policy.predict_chunk(*obs.values()))

    policy.freeze_backbone()
    log_prob = policy.log_prob(obs, sample.trajectory)
    torch.testing.assert_close(log_prob, sample.log_prob, rtol=1e-5, atol=1e-4)
    log_prob.sum().backward()
    assert policy.head.sigma.net[-1].weight.grad.abs().sum() > 0
    assert policy.head.decoder.out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in policy.vision.parameters())
    trainable = {id(p) for p in policy.trainable_parameters()}
    assert trainable == {id(p) for p in policy.head.parameters()}


def test_sigma_stays_in_its_bounds_whatever_the_weights():
    policy = _policy()
    last = policy.head.sigma.net[-1]
    obs = policy.encode_batch(_obs())
    for value in (-1e4, 0.0, 1e4):
        torch.nn.init.constant_(last.bias, value)
        sigma = policy.head.sigma(obs.pooled, torch.zeros(3))
        assert sigma.shape == (3, *policy.head.chunk_shape)
        assert sigma.min() >= 0.08 - 1e-7 and sigma.max() <= 0.2 + 1e-7


def test_loss_averages_only_valid_chunk_entries():
    err = torch.ones(2, 4, 3)
    err[0, 3] = 100.0  # past the episode end of sample 0
    err[1] = torch.arange(4.0)[:, None]
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    torch.testing.assert_close(masked_mean(err, mask), torch.tensor([1.0, 0.5]))


def test_wrong_shapes_and_trajectories_are_named():
    policy = _policy()
    obs = _obs()
    with pytest.raises(ValueError, match=r"image must have shape \[3, 3, 16, 16\]"):
        policy.predict_chunk(obs["image"][:, :, :8], obs["instruction_embedding"], obs["state"])
    with pytest.raises(ValueError, match="instruction_embedding must have shape"):
        policy.sample_chunk({**obs, "instruction_embedding": torch.zeros(3, 5)})
    with pytest.raises(ValueError, match=r"trajectory must be \[B, 6, 4, 4\]"):
        policy.log_prob(obs, torch.zeros(3, 11, 4, 4))


@pytest.mark.slow
def test_deterministic_graph_exports_with_unrolled_steps():
    """What the ONNX export traces: no data-dependent control flow, same numbers."""
    predictor = ChunkPredictor(_policy()).eval()
    args = tuple(_obs(2).values())
    exported = torch.export.export(predictor, args)
    other = tuple(_obs(2, seed=5).values())
    torch.testing.assert_close(exported.module()(*other), predictor(*other))
