"""GRPO advantages (per-group or batch scale, flat groups dropped), the clipped objective with
dual clip and a sample mask, log-probability reduction, KL estimators, the verified reward."""

from __future__ import annotations

import math

import pytest
import torch

from vla_rft.rl import (
    clipped_policy_loss,
    gaussian_entropy,
    group_advantages,
    groups_with_spread,
    kl_estimate,
    reduce_log_prob,
    verified_reward,
)


def test_group_advantages_hand_computed():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    adv = group_advantages(rewards)
    # group 0: mean 2, unbiased std 1 -> (-1, 0, 1); group 1: all equal -> 0
    torch.testing.assert_close(
        adv, torch.tensor([[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]), atol=1e-5, rtol=0
    )
    assert group_advantages(rewards * 10 + 3)[0].allclose(adv[0], atol=1e-5), (
        "shift/scale invariant"
    )
    with pytest.raises(ValueError, match=r"\[B, G\] with G >= 2"):
        group_advantages(torch.ones(4, 1))


def test_batch_scale_advantages_hand_computed():
    rewards = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.01, 0.02]])
    # per group both are (-1, 0, 1): a spread of 0.01 weighs as much as a spread of 1
    per_group = group_advantages(rewards)
    torch.testing.assert_close(per_group[1], per_group[0], atol=1e-3, rtol=0)
    # batch: pooled std sqrt((2 + 2e-4) / (2 groups x 2)) = 0.70718
    std = math.sqrt(2.0002 / 4)
    want = torch.tensor([[-1.0, 0.0, 1.0], [-0.01, 0.0, 0.01]]) / std
    torch.testing.assert_close(group_advantages(rewards, scale="batch"), want, atol=1e-5, rtol=0)
    one = rewards[:1]
    torch.testing.assert_close(
        group_advantages(one, scale="batch"), group_advantages(one), atol=1e-5, rtol=0
    )  # one group: the batch std is the group's
    with pytest.raises(ValueError, match="scale must be one of"):
        group_advantages(rewards, scale="global")


def test_dropped_groups_get_no_advantage_and_leave_the_batch_scale():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 10.0], [0.0, 0.001, 0.002]])
    keep = groups_with_spread(rewards, 0.01)  # stds 1, 0, 0.001
    assert keep.tolist() == [True, False, False]
    assert groups_with_spread(rewards, 0.0).all(), "0 keeps every group, flat ones too"
    for scale in ("group", "batch"):
        adv = group_advantages(rewards, scale=scale, keep=keep)
        # only group 0 enters the pooled std: sqrt(2 / (1 x 2)) = 1, as its own
        torch.testing.assert_close(
            adv, torch.tensor([[-1.0, 0.0, 1.0], [0.0] * 3, [0.0] * 3]), atol=1e-5, rtol=0
        )
    # kept, the flat groups shrink the batch std: sqrt((2 + 0 + 2e-6) / (3 x 2))
    adv = group_advantages(rewards, scale="batch")
    assert adv[0, 2].item() == pytest.approx(1 / math.sqrt(2.000002 / 6), rel=1e-4)
    nothing = group_advantages(rewards, scale="batch", keep=torch.zeros(3, dtype=torch.bool))
    assert torch.equal(nothing, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="min_spread must be >= 0"):
        groups_with_spread(rewards, -1.0)


def test_clipped_objective_averages_over_the_masked_samples_only():
    new = torch.log(torch.tensor([1.5, 0.5, 1.1, 5.0])).requires_grad_()
    old, adv = torch.zeros(4), torch.tensor([1.0, 1.0, -2.0, -1.0])
    mask = torch.tensor([True, False, True, False])
    loss, stats = clipped_policy_loss(new, old, adv, mask=mask)
    assert loss.item() == pytest.approx((-1.2 + 2.2) / 2, abs=1e-6)  # samples 0 and 2
    assert stats["clip_fraction"].item() == pytest.approx(0.5)  # sample 0 of the two
    loss.backward()
    assert new.grad[1] == 0 and new.grad[3] == 0 and new.grad[2] != 0
    none, _ = clipped_policy_loss(new, old, adv, mask=torch.zeros(4, dtype=torch.bool))
    assert none.item() == 0 and none.requires_grad, "no kept sample: a zero loss, no NaN"
    with pytest.raises(ValueError, match="mask"):
        clipped_policy_loss(new, old, adv, mask=mask[:2])


def test_log_prob_reduction():
    total = torch.tensor([-320.0, 64.0])
    assert torch.equal(reduce_log_prob(total, 320, "sum"), total)
    torch.testing.assert_close(reduce_log_prob(total, 320, "mean"), torch.tensor([-1.0, 0.2]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduce_log_prob(total, 320, "max")
    with pytest.raises(ValueError, match="terms must be >= 1"):
        reduce_log_prob(total, 0, "mean")


def test_clipped_objective_hand_computed():
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 0.5, 1.1, 5.0]))
    adv = torch.tensor([1.0, 1.0, -2.0, -1.0])
    loss, stats = clipped_policy_loss(new, old, adv, clip=0.2, dual_clip=3.0)
    # sample 0: A>0, r=1.5 -> clipped at 1.2 -> loss -1.2
    # sample 1: A>0, r=0.5 -> max(-0.5, -0.8) = -0.5 (the pessimistic bound)
    # sample 2: A<0, r=1.1 -> max(2.2, 2.2) = 2.2; dual cap 6 not reached
    # sample 3: A<0, r=5 -> max(5, 1.2) = 5, then capped at -A*3 = 3
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 2.2 + 3.0) / 4, abs=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(0.25)  # sample 0
    assert stats["dual_clip_fraction"].item() == pytest.approx(0.25)  # sample 3
    loss_no_dual, _ = clipped_policy_loss(new, old, adv, clip=0.2, dual_clip=None)
    assert loss_no_dual.item() == pytest.approx((-1.2 - 0.5 + 2.2 + 5.0) / 4, abs=1e-6)


def test_clipped_objective_gradient_vanishes_where_clipped():
    new = torch.log(torch.tensor([1.5, 1.0])).requires_grad_()
    loss, _ = clipped_policy_loss(new, torch.zeros(2), torch.tensor([1.0, 1.0]))
    loss.backward()
    assert new.grad[0] == 0 and new.grad[1] == pytest.approx(-0.5)


def test_kl_estimators():
    torch.manual_seed(0)
    # pi = N(0, 1), ref = N(0.5, 1): true KL(pi || ref) = 0.125
    x = torch.randn(200_000)
    log_pi = -0.5 * x**2
    log_ref = -0.5 * (x - 0.5) ** 2
    for kind in ("k1", "k3"):
        assert kl_estimate(log_pi, log_ref, kind).mean().item() == pytest.approx(0.125, abs=0.01)
    assert (kl_estimate(log_pi, log_ref, "k3") >= 0).all()
    assert kl_estimate(log_pi, log_pi, "k3").abs().max() == 0
    with pytest.raises(ValueError, match="k1, k2 or k3"):
        kl_estimate(log_pi, log_ref, "k4")


def test_gaussian_entropy():
    sigma = torch.tensor([[1.0, 2.0]])
    expected = 2 * 0.5 * math.log(2 * math.pi * math.e) + math.log(2.0)
    assert gaussian_entropy(sigma).item() == pytest.approx(expected)


def test_verified_reward_ranks_closer_trajectories_higher():
    torch.manual_seed(0)
    ref = torch.rand(2, 4, 16, 16, 3)  # [B, T, H, W, 3]
    near = (ref + 0.02 * torch.randn_like(ref)).clamp(0, 1)
    far = torch.rand_like(ref)
    pred = torch.stack([ref, near, far], dim=1)  # [B, G=3, T, H, W, 3]
    reward, terms = verified_reward(pred, ref)
    assert reward.shape == (2, 3) and terms["pixel_mae"].shape == (2, 3)
    assert torch.allclose(reward[:, 0], torch.zeros(2), atol=1e-5), "identical frames score 0"
    assert (reward[:, 0] > reward[:, 1]).all() and (reward[:, 1] > reward[:, 2]).all()
    # the formula: -(mean MAE + mean (1 - SSIM)) over the T frames
    expected = -(terms["pixel_mae"] + terms["perceptual"])
    torch.testing.assert_close(reward, expected)
    mae_only, _ = verified_reward(pred, ref, perceptual_weight=0.0)
    torch.testing.assert_close(mae_only, -(pred - ref[:, None]).abs().mean(dim=(-4, -3, -2, -1)))
    with pytest.raises(ValueError, match="does not match"):
        verified_reward(pred, ref[:, :2])
