"""Figures of the λβ-VAE study, drawn from saved results or from a model handed in.

Nothing here trains. Every file is written atomically (rendered to memory, then
renamed into place), so an interrupted script never leaves a half-written figure.
"""
from __future__ import annotations

import io
import math
from collections import defaultdict

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402  (Pillow comes with matplotlib and imageio)

from models import to_float  # noqa: E402
from utils import atomic_write, fmt_number  # noqa: E402

# Rows of the study's aggregate figures: (results-table column, label on the figure).
STUDY_METRICS = (
    ("train_window_nll", "NLL (train-window BCE)"),
    ("sap", "SAP (discrete)"),
    ("mig", "MIG"),
    ("i_m", "I_m (nats)"),
)
DATASET_TITLES = {"dsprites": "dSprites", "shapes3d": "Shapes3D", "mpi3d": "MPI3D"}


def _save_figure(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def save_png(array_hwc: np.ndarray, path) -> None:
    data = iio.imwrite("<bytes>", array_hwc, extension=".png")
    with atomic_write(path) as f:
        f.write(data)


def tile(images: np.ndarray, ncol: int, pad: int = 2) -> np.ndarray:
    """uint8 (n, C, H, W) -> one uint8 (rows*H, ncol*W, 3) image, white padding between tiles."""
    n, c, h, w = images.shape
    if c == 1:
        images = np.repeat(images, 3, axis=1)
    nrow = math.ceil(n / ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, ncol)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = \
            img.transpose(1, 2, 0)
    return out


def to_uint8(probs: torch.Tensor) -> np.ndarray:
    return (probs.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def save_reconstructions(model, images: np.ndarray, out_dir, device) -> None:
    """8×8 grids of the first 64 ``images`` (originals.png) and their reconstructions
    from the encoder means (reconstructions.png)."""
    images = images[:64]
    model.eval()
    recon = model.reconstruct(to_float(torch.from_numpy(images).to(device)))
    save_png(tile(images, 8), out_dir / "originals.png")
    save_png(tile(to_uint8(recon), 8), out_dir / "reconstructions.png")


@torch.no_grad()
def traversal_frames(model, images: np.ndarray, device, frames: int = 11, span: float = 2.0) -> np.ndarray:
    """Latent traversals: frame t shows a grid with one row per image and one column per
    latent d, where latent d is set to linspace(-span, span, frames)[t] and the other
    latents keep the encoder mean. Returns uint8 (frames, H, W, 3)."""
    model.eval()
    mu, _ = model.encoder(to_float(torch.from_numpy(images).to(device)))
    n, latent_dim = mu.shape
    out = []
    for value in torch.linspace(-span, span, frames):
        z = mu[:, None, :].repeat(1, latent_dim, 1)                 # (n, d, d): row i, column d
        z[:, torch.arange(latent_dim), torch.arange(latent_dim)] = value.item()
        decoded = torch.sigmoid(model.decoder(z.reshape(n * latent_dim, latent_dim)))
        out.append(tile(to_uint8(decoded), latent_dim))
    return np.stack(out)


def save_traversal_gif(model, images: np.ndarray, path, device, frames: int = 11, span: float = 2.0,
                       frame_ms: int = 150) -> None:
    """The traversal animation, ``frame_ms`` milliseconds per frame, looping.

    Written with Pillow directly: its default median-cut palette took 4 s per GIF
    (most of a demo run's evaluation), the fast octree 0.15 s. The frame time is
    given as ``duration`` in ms (imageio >= 2.28 ignores the old ``fps`` for GIFs)."""
    pictures = [Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE)
                for f in traversal_frames(model, images, device, frames, span)]
    buf = io.BytesIO()
    pictures[0].save(buf, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def save_mi_heatmap(mi: np.ndarray, factor_names, path, title: str = "") -> None:
    """Mutual information (nats) between each factor (rows) and latent (columns)."""
    mi = np.asarray(mi, dtype=float).T                                  # (K, L)
    fig, ax = plt.subplots(figsize=(0.55 * mi.shape[1] + 2.5, 0.45 * mi.shape[0] + 1.5), layout="constrained")
    im = ax.imshow(mi, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(mi.shape[1]), [f"z{i}" for i in range(mi.shape[1])])
    ax.set_yticks(range(mi.shape[0]), factor_names)
    for (r, c), v in np.ndenumerate(mi):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if v < 0.6 * mi.max() else "black")
    fig.colorbar(im, ax=ax, label="MI (nats, 20-bin histogram of encoder means)")
    ax.set_title(title or "I(factor; latent)")
    _save_figure(fig, path)


def _done(rows):
    return [r for r in rows if r.get("status") == "done"]


def metric_boxplots(rows: list[dict], path) -> None:
    """Rows NLL, SAP, MIG, I_m; columns datasets; one box per β over seeds (β stage)."""
    rows = _done(rows)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(len(STUDY_METRICS), max(1, len(datasets)), squeeze=False,
                             figsize=(3.6 * max(1, len(datasets)), 2.6 * len(STUDY_METRICS)),
                             layout="constrained")
    for col, ds in enumerate(datasets):
        by_beta = defaultdict(list)
        for r in rows:
            if r["dataset"] == ds:
                by_beta[r["beta"]].append(r)
        betas = sorted(by_beta)
        for row_i, (key, label) in enumerate(STUDY_METRICS):
            ax = axes[row_i, col]
            data = [[r[key] for r in by_beta[b] if r.get(key) is not None] for b in betas]
            ax.boxplot(data, tick_labels=[fmt_number(b) for b in betas])
            if row_i == len(STUDY_METRICS) - 1:
                ax.set_xlabel("β")
            if col == 0:
                ax.set_ylabel(label)
            if row_i == 0:
                ax.set_title(DATASET_TITLES.get(ds, ds))
    fig.suptitle("β-VAE: metrics over seeds")
    _save_figure(fig, path)


def seed_mean_grid(rows: list[dict], dataset: str, key: str, reduce=np.mean):
    """(lambdas, betas, grid[λ, β] of seed means, NaN where no run finished).
    ``reduce`` replaces the mean (the seed spread, say) over the seeds of a cell."""
    rows = [r for r in _done(rows) if r["dataset"] == dataset]
    lambdas = sorted({r["lambda"] for r in rows})
    betas = sorted({r["beta"] for r in rows})
    grid = np.full((len(lambdas), len(betas)), np.nan)
    for i, lam in enumerate(lambdas):
        for j, beta in enumerate(betas):
            vals = [r[key] for r in rows if r["lambda"] == lam and r["beta"] == beta and r.get(key) is not None]
            if vals:
                grid[i, j] = reduce(vals)
    return lambdas, betas, grid


def lambda_heatmaps(rows: list[dict], path) -> None:
    """Rows the four metrics, columns datasets, cells λ × β seed means; the (β=1, λ=0)
    baseline cell is boxed."""
    datasets = list(dict.fromkeys(r["dataset"] for r in _done(rows)))
    fig, axes = plt.subplots(len(STUDY_METRICS), max(1, len(datasets)), squeeze=False,
                             figsize=(3.8 * max(1, len(datasets)), 3.0 * len(STUDY_METRICS)),
                             layout="constrained")
    for col, ds in enumerate(datasets):
        for row_i, (key, label) in enumerate(STUDY_METRICS):
            ax = axes[row_i, col]
            lambdas, betas, grid = seed_mean_grid(rows, ds, key)
            im = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
            ax.set_xticks(range(len(betas)), [fmt_number(b) for b in betas])
            ax.set_yticks(range(len(lambdas)), [fmt_number(v) for v in lambdas])
            if row_i == len(STUDY_METRICS) - 1:
                ax.set_xlabel("β")
            ax.set_ylabel(f"{label}\nλ" if col == 0 else "λ")
            for (r, c), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=7, color="white")
            if 1.0 in betas and 0.0 in lambdas:
                ax.add_patch(plt.Rectangle((betas.index(1.0) - 0.5, lambdas.index(0.0) - 0.5), 1, 1,
                                           fill=False, edgecolor="red", linewidth=2))
            fig.colorbar(im, ax=ax, fraction=0.046)
            if row_i == 0:
                ax.set_title(DATASET_TITLES.get(ds, ds))
    fig.suptitle("λβ-VAE: seed means (red box: β=1, λ=0 baseline)")
    _save_figure(fig, path)
