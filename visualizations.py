"""Figures of the λβ-VAE study, drawn from saved results or from a model handed in.

Nothing here trains. Every file is written atomically (rendered to memory, then
renamed into place), so an interrupted script never leaves a half-written figure.
"""
from __future__ import annotations

import io
import math
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402  (Pillow comes with matplotlib and imageio)

from config import OBJECTIVES, rows_objective  # noqa: E402
from lbvae.pipeline.evaluation import heldout_split  # noqa: E402
from models import to_float  # noqa: E402
from utils import atomic_write, fmt_number, remove_stale_temporaries  # noqa: E402

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
    """8×8 grids of the first 64 ``images`` (originals.png), their reconstructions from the
    encoder means (reconstructions.png), and both in one picture, originals on the left
    (originals_vs_reconstructions.png)."""
    images = images[:64]
    model.eval()
    recon = model.reconstruct(to_float(torch.from_numpy(images).to(device)))
    originals, decoded = tile(images, 8), tile(to_uint8(recon), 8)
    save_png(originals, out_dir / "originals.png")
    save_png(decoded, out_dir / "reconstructions.png")
    save_png(side_by_side(originals, decoded), out_dir / "originals_vs_reconstructions.png")


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 12) -> np.ndarray:
    """Two uint8 (H, W, 3) tiles next to each other, a white gap and a grey rule between,
    so that each reconstruction sits at the same place as its original on the left."""
    h = max(left.shape[0], right.shape[0])
    out = np.full((h, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    out[:left.shape[0], :left.shape[1]] = left
    out[:, left.shape[1] + gap // 2] = 128
    out[:right.shape[0], left.shape[1] + gap:] = right
    return out


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


def save_mi_heatmap(mi: np.ndarray, factor_names, path, title: str = "", floor: np.ndarray | None = None,
                    num_bins: int = 20) -> None:
    """Mutual information (nats) between each factor (rows) and latent (columns).

    With ``floor`` (metrics.shuffled_mi_floor: the same estimate with the factor shuffled,
    whose true MI is 0), each cell shows MI minus its floor, clipped at 0, and the title
    says so: the histogram estimator's upward bias would otherwise read as information."""
    mi = np.asarray(mi, dtype=float).T                                  # (K, L)
    what = "MI"
    if floor is not None:
        floor = np.asarray(floor, dtype=float).T
        mi = np.clip(mi - floor, 0, None)
        what = "MI − shuffled-factor floor"
    fig, ax = plt.subplots(figsize=(0.55 * mi.shape[1] + 2.8, 0.45 * mi.shape[0] + 1.9), layout="constrained")
    im = ax.imshow(mi, cmap="viridis", aspect="auto", vmin=0, vmax=max(float(mi.max()), 1e-9))
    ax.set_xticks(range(mi.shape[1]), [f"z{i}" for i in range(mi.shape[1])])
    ax.set_yticks(range(mi.shape[0]), factor_names)
    for (r, c), v in np.ndenumerate(mi):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color=text_color(im.cmap(im.norm(v))))
    fig.colorbar(im, ax=ax, label=f"{what} (nats, {num_bins}-bin\nhistogram of encoder means;\n"
                                  f"higher = more informative)")
    sub = "" if floor is None else (f"\nfloor (factor shuffled) subtracted: mean {floor.mean():.2f}, "
                                    f"max {floor.max():.2f} nats")
    ax.set_title((title or "I(factor; latent)") + sub, fontsize=9)
    _save_figure(fig, path)


def text_color(rgba) -> str:
    """Black on light cells, white on dark ones (relative luminance of the cell colour)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def _done(rows):
    return [r for r in rows if r.get("status") == "done"]


def objective_of(rows: list[dict]):
    """The config.Objective of a results table (one per results tree): its title, the
    symbol of its swept weight (the axis called β for the β-VAE) and its reference weight."""
    return OBJECTIVES[rows_objective(rows)]


def metric_boxplots(rows: list[dict], path) -> None:
    """Rows NLL, SAP, MIG, I_m; columns datasets; one box per swept weight (β) over seeds (β stage)."""
    objective = objective_of(rows)
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
            ax.boxplot(data, tick_labels=[f"{fmt_number(b)}\nn={len(d)}" for b, d in zip(betas, data)])
            if row_i == len(STUDY_METRICS) - 1:
                ax.set_xlabel(objective.symbol)
            if col == 0:
                ax.set_ylabel(label)
            if row_i == 0:
                ax.set_title(DATASET_TITLES.get(ds, ds))
    fig.suptitle(f"{objective.title}: metrics over seeds\n(n = seeds per box)", fontsize=10)
    _save_figure(fig, path)


def _cell_values(rows: list[dict], dataset: str, key: str):
    """(lambdas, betas, {(i, j): the cell's finished seeds' values of ``key``})."""
    rows = [r for r in _done(rows) if r["dataset"] == dataset]
    lambdas = sorted({r["lambda"] for r in rows})
    betas = sorted({r["beta"] for r in rows})
    cells = {}
    for i, lam in enumerate(lambdas):
        for j, beta in enumerate(betas):
            vals = [r[key] for r in rows if r["lambda"] == lam and r["beta"] == beta and r.get(key) is not None]
            if vals:
                cells[i, j] = vals
    return lambdas, betas, cells


def _reduced(shape, cells: dict, reduce) -> np.ndarray:
    grid = np.full(shape, np.nan)
    for ij, vals in cells.items():
        grid[ij] = reduce(vals)
    return grid


def seed_mean_grid(rows: list[dict], dataset: str, key: str, reduce=np.mean):
    """(lambdas, betas, grid[λ, β] of seed means, NaN where no run finished).
    ``reduce`` replaces the mean (the seed spread, say) over the seeds of a cell."""
    lambdas, betas, cells = _cell_values(rows, dataset, key)
    return lambdas, betas, _reduced((len(lambdas), len(betas)), cells, reduce)


def sample_std(values) -> float:
    """The seed spread of a cell: sample standard deviation (ddof=1); NaN for one seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def seed_stats(rows: list[dict], dataset: str, key: str):
    """(lambdas, betas, mean, std, n) on the (λ, β) grid from one pass over the rows: seed
    mean, seed spread (``sample_std``) and seeds per cell; NaN where no run finished."""
    lambdas, betas, cells = _cell_values(rows, dataset, key)
    shape = (len(lambdas), len(betas))
    return (lambdas, betas, _reduced(shape, cells, np.mean), _reduced(shape, cells, sample_std),
            _reduced(shape, cells, len))


# Which way is better, for the colour-bar labels and the greying of noise.
HIGHER_IS_BETTER = {"train_window_nll": False, "sap": True, "mig": True, "i_m": True, "active_latents": True,
                    "i_xz_upper": True}


def panel_digits(values) -> int:
    """Decimals that give the largest value of a panel three significant digits (1527 and
    1530 print as 1527 and 1530, not both 1.53e+03; 0.034 as 0.0340)."""
    finite = np.abs(np.asarray(values, dtype=float))
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if not finite.size:
        return 2
    return int(min(6, max(0, 2 - math.floor(math.log10(finite.max())))))


def no_spread(count: np.ndarray, base_index=None) -> np.ndarray:
    """Finished cells whose seed spread is unknown: one seed in the cell, or (for a change
    against a baseline) one seed in the baseline. Their numbers are single draws, so a
    figure hatches them and leaves them out of its colour scale: nothing there is decided."""
    count = np.nan_to_num(np.asarray(count, float))
    single = (count >= 1) & (count < 2)
    if base_index is not None and count[base_index] < 2:
        single |= count >= 1
    return single


def hatch_cells(ax, mask: np.ndarray) -> None:
    """Hatch the masked cells of an imshow grid (one seed: no spread, nothing decided)."""
    for r, c in np.argwhere(mask):
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.6",
                                   linewidth=0))


NO_SPREAD_NOTE = "hatched: one seed (n = 1), no spread: not coloured, nothing decided"


def colour_limits(grid: np.ndarray, shown: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the cells a figure colours, or None when it colours none."""
    values = np.asarray(grid, float)[shown & np.isfinite(grid)]
    return (float(values.min()), float(values.max())) if values.size else None


def within_noise(mean: np.ndarray, std: np.ndarray, base_index) -> np.ndarray:
    """Cells whose seed mean is within one seed std (the larger of the cell's and the
    baseline's) of the baseline cell: not distinguishable from it with these seeds.
    Cells with a single seed have no std and are never marked."""
    if base_index is None:
        return np.zeros(mean.shape, bool)
    base, base_std = mean[base_index], std[base_index]
    spread = np.fmax(std, base_std)
    return np.isfinite(mean) & np.isfinite(spread) & (np.abs(mean - base) <= spread)


def lambda_heatmaps(rows: list[dict], path) -> None:
    """Rows the four metrics, columns datasets, cells λ × β: seed mean ± seed std (sample
    std) and n. Cells within one std of the (β=1, λ=0) baseline (boxed; another objective's
    reference weight, config.OBJECTIVES) are greyed out: with these seeds they cannot be told apart from it."""
    objective = objective_of(rows)
    datasets = list(dict.fromkeys(r["dataset"] for r in _done(rows)))
    ncol = max(1, len(datasets))
    fig, axes = plt.subplots(len(STUDY_METRICS), ncol, squeeze=False,
                             figsize=(max(5.2, 4.2 * ncol), 2.9 * len(STUDY_METRICS)), layout="constrained")
    for col, ds in enumerate(datasets):
        for row_i, (key, label) in enumerate(STUDY_METRICS):
            ax = axes[row_i, col]
            lambdas, betas, grid, std, count = seed_stats(rows, ds, key)
            ref = objective.baseline
            base = (lambdas.index(0.0), betas.index(ref)) if ref in betas and 0.0 in lambdas else None
            grey = within_noise(grid, std, base)
            if base is not None:
                grey[base] = False
            # A one-seed cell is a single draw: hatched, and kept out of the colour scale.
            single = no_spread(count)
            cmap = plt.get_cmap("viridis" if HIGHER_IS_BETTER[key] else "viridis_r").with_extremes(bad="0.85")
            coloured = np.isfinite(grid) & ~grey & ~single
            limits = colour_limits(grid, coloured) or (0.0, 1.0)
            # λ = 0 on top, as in every other λ × β figure of the study.
            im = ax.imshow(np.ma.masked_array(grid, mask=~coloured), cmap=cmap, aspect="auto",
                           vmin=limits[0], vmax=limits[1])
            hatch_cells(ax, single)
            ax.set_xticks(range(len(betas)), [fmt_number(b) for b in betas])
            ax.set_yticks(range(len(lambdas)), [fmt_number(v) for v in lambdas])
            if row_i == len(STUDY_METRICS) - 1:
                ax.set_xlabel(objective.symbol)
            ax.set_ylabel(f"{label}\nλ" if col == 0 else "λ")
            digits = panel_digits(grid)
            for (r, c), v in np.ndenumerate(grid):
                if not np.isfinite(v):
                    continue
                spread = f"\n±{std[r, c]:.{digits}f}" if np.isfinite(std[r, c]) else "\nno spread"
                color = "black" if not coloured[r, c] else text_color(im.cmap(im.norm(v)))
                ax.text(c, r, f"{v:.{digits}f}{spread}\nn={int(count[r, c])}", ha="center", va="center",
                        fontsize=6.5, color=color)
            if base is not None:
                ax.add_patch(plt.Rectangle((base[1] - 0.5, base[0] - 0.5), 1, 1,
                                           fill=False, edgecolor="red", linewidth=2))
            better = "higher" if HIGHER_IS_BETTER[key] else "lower"
            fig.colorbar(im, ax=ax, fraction=0.046, label=f"{label}, seed mean\n({better} is better)")
            if row_i == 0:
                ax.set_title(DATASET_TITLES.get(ds, ds))
    title = (f"{lambda_title(objective)}: seed mean ± seed std (n seeds) per cell, λ = 0 on top; red box: "
             f"{objective.symbol}={fmt_number(objective.baseline)}, λ=0 baseline; "
             f"grey: within one seed std of the baseline (no distinguishable effect); {NO_SPREAD_NOTE}")
    # About 14 characters of 9-point text per inch of figure: wrapped, a one-column figure keeps its title.
    fig.suptitle(textwrap.fill(title, int(14 * fig.get_figwidth())), fontsize=9)
    _save_figure(fig, path)


def lambda_title(objective) -> str:
    """The λ stage's name: λβ-VAE (the paper's), else the objective with + λ·MSE."""
    return "λβ-VAE" if objective.title == "β-VAE" else f"{objective.title} + λ·MSE"


# The collapse figure: (results-table column, label), drawn against β (the swept weight).
COLLAPSE_METRICS = (
    ("active_latents", "active latents\n(KL > 0.1 nats)"),
    ("i_xz_upper", "mean KL ≥ I(x; z)\n(nats)"),
    ("i_m", "I_m (nats)"),
    ("mig", "MIG"),
)


def collapse_figure(rows: list[dict], path) -> None:
    """Mutual-information collapse at a glance: active latents, the I(x; z) bound, I_m and
    MIG against β (log axis), one line per λ, the seed mean with ± one seed std shaded;
    columns datasets. Another objective: against its swept weight."""
    objective = objective_of(rows)
    rows = _done(rows)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    ncol = max(1, len(datasets))
    fig, axes = plt.subplots(len(COLLAPSE_METRICS), ncol, squeeze=False, sharex=True,
                             figsize=(max(4.6, 3.6 * ncol), 2.1 * len(COLLAPSE_METRICS)), layout="constrained")
    for col, ds in enumerate(datasets):
        for row_i, (key, label) in enumerate(COLLAPSE_METRICS):
            ax = axes[row_i, col]
            lambdas, betas, mean, std, count = seed_stats(rows, ds, key)
            if not np.isfinite(mean).any():
                # Said on the panel, not left blank: e.g. imported runs carry no KL per latent.
                ax.text(0.5, 0.5, f"no finished run\nreports {key}", transform=ax.transAxes, ha="center",
                        va="center", fontsize=7, color="0.4")
            for i, lam in enumerate(lambdas):
                ok = np.isfinite(mean[i])
                if not ok.any():
                    continue
                x = np.array(betas)[ok]
                n = sorted({int(c) for c in count[i][ok]})
                line, = ax.plot(x, mean[i][ok], marker="o", ms=3,
                                label=f"λ = {fmt_number(lam)} (n = {'/'.join(map(str, n))})")
                sd = np.nan_to_num(std[i][ok])
                ax.fill_between(x, mean[i][ok] - sd, mean[i][ok] + sd, alpha=0.2, color=line.get_color())
            ax.set_xscale("log", base=2)
            ax.set_xticks(betas, [fmt_number(b) for b in betas])
            ax.minorticks_off()
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
            if row_i == 0:
                ax.set_title(DATASET_TITLES.get(ds, ds), fontsize=9)
            if row_i == len(COLLAPSE_METRICS) - 1:
                ax.set_xlabel(objective.symbol)
            if row_i == 0 and col == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6.5, title="seed mean ± std; n = seeds", title_fontsize=6.5)
    fig.suptitle(f"{objective.title}: mutual-information collapse with {objective.symbol} (higher is more "
                 f"information kept)", fontsize=9)
    _save_figure(fig, path)


# --- figures of a model while and after it trains ---------------------------------------------
class TraversalView:
    """The model as ``visualizations`` sees a β-VAE, restricted to chosen latents.

    ``vis.traversal_frames`` encodes a few images, replaces one latent at a time and
    decodes rows ordered image-major (row i·d + j = image i, latent j). This view
    returns only the chosen latents' means and, when decoding, puts the traversed
    values back into each image's full code and decodes through the attention path."""

    def __init__(self, model, latents: list[int]):
        self.model, self.latents, self._base = model, torch.as_tensor(latents), None

    def eval(self):
        self.model.eval()
        return self

    def encoder(self, x):
        mu, logvar = self.model.encoder(x)
        self._base = mu
        return mu[:, self.latents], logvar[:, self.latents]

    def decoder(self, z):
        n, d = self._base.shape[0], len(self.latents)
        if z.shape != (n * d, d):
            raise RuntimeError(f"TraversalView expects ({n * d}, {d}) codes, got {tuple(z.shape)}")
        full = self._base.repeat_interleave(d, dim=0).clone()
        full[:, self.latents] = z
        return self.model.decode(full)

    def reconstruct(self, x):
        return self.model.reconstruct(x)


PROGRESS_IMAGES = 12          # images reconstructed in each progress image (one row of originals, one of recons)
PRIOR_SAMPLES = 144           # prior samples per progress image (12 × 12, as the original shows each epoch)
PRIOR_SEED_OFFSET = 2_000_003  # the prior samples' generator: seed + this, apart from training's generators


def progress_steps(cfg, steps: int) -> list[int]:
    """The VAE steps after which a progress image is written: every ``sample_interval``
    up to ``steps`` (none for 0). A pure function of the settings, so a resumed run
    expects the same files."""
    return list(range(cfg.sample_interval, steps + 1, cfg.sample_interval)) if cfg.sample_interval else []


class ProgressImages:
    """``samples/step_<k>.png`` in the run folder after each step of ``progress_steps``
    (a model with ``reconstruct`` and ``decode``, the MINE-VAE's ``sample_interval``):
    12 held-out originals over their reconstructions (encoder means, through the
    attention), then 144 prior samples z ~ N(0, I) decoded through the attention.

    The inputs are fixed for the whole run (the same images and prior draws at every
    step, from their own generator), so images from different steps compare, and
    drawing them touches none of training's random state: a run's numbers are the same
    with and without them. Files are written atomically and never rewritten: after a
    resume, the steps between the last checkpoint and the kill are retrained to the same
    state, and their images already exist."""

    def __init__(self, spec, cfg, dataset, device):
        self.folder, self.seconds = spec.run_dir / "samples", 0.0
        self.steps = set(progress_steps(cfg, spec.steps))
        if not self.steps:
            return
        remove_stale_temporaries(self.folder)        # under the run's lock: a killed write's leftovers
        train, held = heldout_split(len(dataset), cfg.heldout_fraction)
        shown = (held if len(held) >= PROGRESS_IMAGES else train)[:PROGRESS_IMAGES]
        self.images = dataset.images(shown)
        generator = torch.Generator().manual_seed(spec.seed + PRIOR_SEED_OFFSET)
        self.prior = torch.randn(PRIOR_SAMPLES, cfg.latent_dim, generator=generator).to(device)
        self.device = device

    def path(self, step: int) -> Path:
        return self.folder / f"step_{step}.png"

    @torch.no_grad()
    def maybe_write(self, model, step: int) -> None:
        if step not in self.steps or self.path(step).exists():
            return
        tic = time.perf_counter()
        model.eval()
        try:
            recon = model.reconstruct(to_float(torch.from_numpy(self.images).to(self.device)))
            samples = torch.sigmoid(model.decode(self.prior))
        finally:
            model.train()
        tiles = np.concatenate([self.images, to_uint8(recon), to_uint8(samples)])
        save_png(tile(tiles, PROGRESS_IMAGES), self.path(step))
        self.seconds += time.perf_counter() - tic
