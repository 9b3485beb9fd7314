"""Image similarity: PSNR and SSIM on channels-last images in [0, 1], and PSNR on the pixels
that moved.

Both take torch tensors or numpy arrays shaped [..., H, W, 3] (the layout of the data set and of
`WorldModel.rollout`) and return one value per image, shaped [...], in the input's kind. They are
differentiable in torch, so the verified reward of the fine-tuning stage can reuse them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _as_pair(pred, target) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Float tensors of equal shape [..., H, W, C]; remembers whether the caller gave numpy."""
    is_numpy = isinstance(pred, np.ndarray)
    p = torch.as_tensor(pred)
    t = torch.as_tensor(target, device=p.device)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    if p.ndim < 3:
        raise ValueError(f"expected images [..., H, W, C], got shape {tuple(p.shape)}")
    dtype = p.dtype if p.is_floating_point() else torch.float32
    return p.to(dtype), t.to(dtype), is_numpy


def _out(x: torch.Tensor, is_numpy: bool):
    return x.detach().cpu().numpy() if is_numpy else x


def psnr(pred, target, data_range: float = 1.0, max_db: float = 100.0):
    """Peak signal-to-noise ratio in dB per image: pred, target [..., H, W, C] -> [...].

    Identical images give `max_db` instead of infinity.
    """
    p, t, is_numpy = _as_pair(pred, target)
    mse = (p - t).square().mean(dim=(-3, -2, -1))  # [...]
    floor = data_range**2 / 10 ** (max_db / 10)
    return _out(10 * torch.log10(data_range**2 / mse.clamp_min(floor)), is_numpy)


MOVING_THRESHOLD = 0.05
"""A pixel moved where one of its channels differs from the reference frame by more than this."""


def moved(frames, reference, threshold: float = MOVING_THRESHOLD):
    """frames, reference [..., H, W, C] in [0, 1] -> [..., H, W, 1] bool: the pixels that moved
    (the arm, the object), in the input's kind."""
    f, r, is_numpy = _as_pair(frames, reference)
    return _out((f - r).abs().amax(dim=-1, keepdim=True) > threshold, is_numpy)


def masked_psnr(pred, target, mask, data_range: float = 1.0, max_db: float = 100.0):
    """PSNR over the pixels of mask [..., H, W, 1] only: pred, target [..., H, W, C] -> [...];
    NaN for an image whose mask is empty."""
    p, t, is_numpy = _as_pair(pred, target)
    m = torch.as_tensor(mask, device=p.device)
    if tuple(m.shape) != (*p.shape[:-1], 1):
        shapes = f"images {tuple(p.shape)}, mask {tuple(m.shape)}"
        raise ValueError(f"the mask must be [..., H, W, 1] for the images: {shapes}")
    m = m.to(p.dtype)
    pixels = m.sum(dim=(-3, -2, -1))
    mse = ((p - t).square() * m).sum(dim=(-3, -2, -1)) / (pixels * p.shape[-1]).clamp_min(1)
    floor = data_range**2 / 10 ** (max_db / 10)
    out = 10 * torch.log10(data_range**2 / mse.clamp_min(floor))
    return _out(torch.where(pixels > 0, out, torch.nan), is_numpy)


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()  # [size]


def ssim(
    pred,
    target,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
):
    """Structural similarity (Wang et al. 2004) per image: [..., H, W, C] -> [...].

    Gaussian window (11 taps, sigma 1.5), statistics per channel over the positions where the
    window fits inside the image (no padding), averaged over channels and positions.
    """
    p, t, is_numpy = _as_pair(pred, target)
    *lead, h, w, c = p.shape
    if h < window_size or w < window_size:
        raise ValueError(f"images of {h}x{w} are smaller than the SSIM window of {window_size}")
    p = p.reshape(-1, h, w, c).permute(0, 3, 1, 2)  # [N, C, H, W]
    t = t.reshape(-1, h, w, c).permute(0, 3, 1, 2)
    g = _gaussian_window(window_size, sigma, p.dtype, p.device)
    gh = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    gw = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(x):  # [N, C, H, W] -> [N, C, H-ws+1, W-ws+1]
        return F.conv2d(F.conv2d(x, gh, groups=c), gw, groups=c)

    mu_p, mu_t = blur(p), blur(t)
    var_p = blur(p * p) - mu_p**2
    var_t = blur(t * t) - mu_t**2
    cov = blur(p * t) - mu_p * mu_t
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    )
    return _out(ssim_map.mean(dim=(1, 2, 3)).reshape(lead), is_numpy)
