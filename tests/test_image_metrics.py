"""PSNR and SSIM against hand-computed values and an independent SciPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from vla_rft.rl.image_metrics import MOVING_THRESHOLD, masked_psnr, moved, psnr, ssim


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. with SciPy's Gaussian filter (11 taps at sigma 1.5), border of 5 cropped."""
    c1, c2, values = 0.01**2, 0.03**2, []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)

        def f(v):
            return gaussian_filter(v, 1.5, truncate=3.5)[5:-5, 5:-5]

        mu_a, mu_b = f(a), f(b)
        va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        values.append(np.mean(num / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))))
    return float(np.mean(values))


def test_psnr_hand_values():
    a = np.zeros((2, 8, 8, 3), np.float32)
    b = a.copy()
    b[0] += 0.1  # MSE 0.01 -> 20 dB
    b[1, :4] += 1.0  # half the pixels off by 1: MSE 0.5 -> 3.01 dB
    np.testing.assert_allclose(psnr(b, a), [20.0, 10 * np.log10(2)], rtol=1e-5)
    assert psnr(a, a)[0] == pytest.approx(100.0)  # identical: capped, not infinite


def test_psnr_on_the_pixels_that_moved():
    """The metric on the pixels that matter (issue 18): the arm and the object are the pixels
    that moved since the reference frame; the static scene around them does not dilute it."""
    last = np.zeros((2, 8, 8, 3), np.float32)
    real = last.copy()
    real[:, :2, :2] = 0.5  # 4 of 64 pixels moved
    real[1, 7, 7, 0] = MOVING_THRESHOLD / 2  # a flicker below the threshold is not motion
    mask = moved(real, last)
    assert mask.shape == (2, 8, 8, 1) and mask.sum() == 8
    pred = real.copy()
    pred[:, :2, :2] = 0.4  # off by 0.1 where things moved, exact elsewhere
    np.testing.assert_allclose(masked_psnr(pred, real, mask), [20.0, 20.0], rtol=1e-5)
    assert psnr(pred, real)[0] > 30  # the whole frame hides the error
    assert np.isnan(masked_psnr(pred, real, np.zeros_like(mask))).all()  # nothing moved
    with pytest.raises(ValueError, match="mask"):
        masked_psnr(pred, real, mask[..., 0])


def test_ssim_matches_reference_and_properties():
    rng = np.random.default_rng(0)
    x = rng.random((3, 24, 20, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    got = ssim(y, x)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, [_ssim_reference(y[i], x[i]) for i in range(3)], atol=1e-5)
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-6)
    noisier = np.clip(x + rng.normal(0, 0.3, x.shape), 0, 1).astype(np.float32)
    assert (ssim(noisier, x) < got).all()
    np.testing.assert_allclose(ssim(x, y), got, atol=1e-6)  # symmetric


def test_torch_in_torch_out_with_leading_dims_and_gradient():
    x = torch.rand(2, 4, 16, 16, 3, requires_grad=True)
    y = torch.rand(2, 4, 16, 16, 3)
    s, p = ssim(x, y), psnr(x, y)
    assert isinstance(s, torch.Tensor) and s.shape == (2, 4) and p.shape == (2, 4)
    s.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert isinstance(psnr(x.detach().numpy(), y.numpy()), np.ndarray)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match=r"\[..., H, W, C\]"):
        psnr(np.zeros(4), np.zeros(4))
