"""Reconstruction quality without learned weights: PSNR and SSIM (scikit-image)."""
from __future__ import annotations

import math

import numpy as np


def reconstruction_quality(originals, reconstructions) -> dict:
    """PSNR and SSIM of each image, then their means: scikit-image's implementations.

    ``originals`` and ``reconstructions`` are float arrays (n, C, H, W) in [0, 1].
    PSNR = 10 log10(1 / MSE) in dB, MSE over all pixels and channels of the image
    (``peak_signal_noise_ratio``, data_range 1); infinite for identical images.
    SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) with scikit-image's defaults:
    7×7 uniform window, K1 = 0.01, K2 = 0.03, sample covariances, data_range 1, the
    mean of the SSIM map, channels scored separately and averaged (``structural_similarity``).
    Neither needs downloaded weights (FID and LPIPS do). Returns {"psnr", "ssim" (means),
    "psnr_per_image", "ssim_per_image" (n,)}."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # only the MINE study needs it

    a, b = np.asarray(originals, np.float64), np.asarray(reconstructions, np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"originals and reconstructions need the same (n, C, H, W) shape, got {a.shape} and {b.shape}")
    with np.errstate(divide="ignore"):      # identical images: MSE 0, PSNR +inf
        psnr = np.array([peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in zip(a, b)])
    ssim = np.array([structural_similarity(x, y, data_range=1.0, channel_axis=0) for x, y in zip(a, b)])
    return {"psnr": float(psnr.mean()) if len(psnr) else math.nan,
            "ssim": float(ssim.mean()) if len(ssim) else math.nan,
            "psnr_per_image": psnr, "ssim_per_image": ssim}
