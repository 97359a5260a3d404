"""What the MINE-VAE reports: a trained model's results row and metrics.json
(``evaluate``), the ablation table over seeds, and each run's figures (reconstructions,
the traversal of its most informative latents, the per-factor traversal through the
cross-attention, the MI heatmap). lbvae/mine/study.py trains the runs."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import visualizations as vis
from config import MINE_VARIANTS, MineConfig
from lbvae.pipeline import evaluation
from lbvae.pipeline.evaluation import metric_indices
from lbvae.pipeline.runs import RunSpec
from models import MINEDisentangleVAE, latent_parts, to_float
from utils import write_csv, write_text

ABLATION_METRICS = ("z_diff", "z_min_var", "irs", "jemmig", "mig", "sap", "mine_mi_posthoc",
                    "heldout_recon", "psnr", "ssim", "train_window_sparse", "train_window_ent")


# --- evaluation -------------------------------------------------------------------------
def evaluate(spec: RunSpec, cfg: MineConfig, dataset, model: MINEDisentangleVAE, device,
             window: dict | None, steps: int | None, wall_time_s: float) -> dict:
    """Metrics of a trained model: the contents of its metrics.json (``row`` is its
    results-table row). The caller writes the file last, as the run's done marker."""
    model.eval()
    bar = evaluation.progress(spec, ("codes and factor metrics", "post-hoc MINE", "held-out NLL", "PSNR and SSIM"))
    points = evaluation.metric_indices(len(dataset), spec.seed, cfg.metric_train_points, cfg.metric_test_points)
    codes = evaluation.encode(model, dataset, points["train"], device)
    parts = latent_parts_of(cfg)
    complexity = model.complexity.complexity().cpu().numpy()
    scores, extra = {}, {}
    if dataset.has_factors:
        scores, extra = evaluation.factor_scores(model, dataset, points, codes, cfg, spec.seed, device)
    bar.next()
    redundancy = evaluation.posthoc_redundancy(codes, parts, cfg.mine_eval_steps, cfg.mine_hidden_dim, spec.seed)
    bar.next()
    heldout = evaluation.heldout_columns(model, dataset, points, cfg, spec.seed, device)
    bar.next()
    quality = evaluation.reconstruction_columns(model, dataset, cfg, device)
    bar.next()
    with torch.no_grad():
        attention = model.attend(torch.from_numpy(codes[:1000]).to(device))[1].mean(0).cpu().numpy()
    window = window or {}
    row = {
        "stage": spec.stage, "dataset": spec.dataset, "source": cfg.source, "beta": cfg.kl_weight, "lambda": 0.0,
        "seed": spec.seed, "steps": steps, "status": "done",
        **evaluation.train_window_columns(window), **heldout, **scores, "wall_time_s": wall_time_s,
        "model": "mine_vae", "variant": spec.variant, "kl_weight": cfg.kl_weight,
        "mine_mi_posthoc": float(np.mean(redundancy)), "train_window_mine_mi": window.get("mine_mi"),
        "train_window_redundancy": window.get("redundancy"), "train_window_sparse": window.get("sparse"),
        "train_window_ent": window.get("ent"), "active_latents": int((complexity > ACTIVE_NATS).sum()),
        "latent_dim": cfg.latent_dim, **quality,
    }
    return {
        "row": row, **extra, "complexity_nats": complexity, "mine_mi_posthoc_per_part": redundancy,
        "latent_parts": [p.tolist() for p in parts], "mean_attention": attention,
        "definitions": definitions(cfg, steps, heldout["heldout_images"], dataset.has_factors, quality),
    }


ACTIVE_NATS = 0.1    # a latent whose Gaussian-fit complexity exceeds this counts as active


def latent_parts_of(cfg: MineConfig):
    return latent_parts(cfg.latent_dim, cfg.mine_parts)


def definitions(cfg: MineConfig, steps, heldout_images: int, has_factors: bool, quality: dict) -> dict:
    """What every number of a row is, stored in metrics.json next to the numbers."""
    window = min(cfg.loss_window, steps or cfg.loss_window)
    d = {
        "code": "encoder mean mu (n, latent_dim), before the cross-attention: what every metric reads",
        "beta": "kl_weight, the weight of the KL term; lambda = 0: no L2 term",
        "train_window_nll": f"mean training BCE (nats/image, summed over pixels) over the last {window} VAE "
                           "steps; a train-window loss, not held out",
        "train_window_total": "mean total MINE-VAE loss over the same window (only the switched-on terms)",
        "train_window_mine_mi": ("mean over factors of the training critics' DV estimates of I(z; e_k)"
                                 if cfg.mine_target == "factor" else
                                 "mean over parts of the training critics' DV estimates of I(z_p; z_rest)")
                                + " on the VAE batches (nats), same window",
        "train_window_redundancy": "the complexity-weighted MINE term (mine_target=" + cfg.mine_target
                                   + "), same window (in the loss only for variants with MINE)",
        "train_window_sparse": "L_sparse = -(1/K) Σ_ki A_ki log(A_ki / Σ_k' A_k'i): the load-weighted "
                               "entropy of each latent's normalised attention load, H(factor | latent) in "
                               "nats, same window",
        "train_window_ent": "L_ent = mean entropy of each factor's attention over latents (nats), same window",
        "heldout_neg_elbo": f"negative ELBO (β=1, one sample) in nats/image on {heldout_images} images never "
                            f"trained on (heldout_fraction={cfg.heldout_fraction})",
        "mine_mi_posthoc": f"mean over the {cfg.mine_parts} latent parts of a fresh MINE's held-out DV "
                           f"estimate of I(mu_p; mu_rest) on the {cfg.metric_train_points} metric points "
                           f"({cfg.mine_eval_steps} Adam steps); nats",
        "active_latents": f"latents with Gaussian-fit complexity > {ACTIVE_NATS} nats",
        "complexity_nats": "per latent: ½ log Var_fit[z_i] − ½ mean log σ_i²(x) over the last "
                           f"{cfg.gaussian_fit_samples} training codes (≥ 0; upper bound on I(x; z_i))",
        **evaluation.reconstruction_definitions(quality),
        "progress_images_s": "seconds this process spent drawing samples/step_<k>.png (not the rest of the run)",
    }
    if has_factors:
        d.update(evaluation.factor_definitions(cfg))
    return d


# --- the ablation table --------------------------------------------------------------------
def ablation_rows(rows: list[dict]) -> list[dict]:
    """mean and sample std (ddof=1) over seeds per (dataset, variant, metric)."""
    groups = defaultdict(list)
    for r in rows:
        if r["status"] == "done":
            groups[(r["dataset"], r["variant"])].append(r)
    out = []
    for (d, v), group in sorted(groups.items(), key=lambda kv: (kv[0][0], MINE_VARIANTS.index(kv[0][1]))):
        for m in ABLATION_METRICS:
            values = np.array([r[m] for r in group if r.get(m) is not None and math.isfinite(r[m])], float)
            out.append({"dataset": d, "variant": v, "metric": m, "n": int(values.size),
                        "mean": float(values.mean()) if values.size else None,
                        # one seed has no sample std: empty, not a misleading 0
                        "std": float(values.std(ddof=1)) if values.size > 1 else None})
    return out


def ablation_text(rows: list[dict]) -> str:
    """One block per dataset: variants × metrics, mean ± std over seeds."""
    lines = ["MINE-VAE ablation: mean ± std over seeds (sample std, ddof=1); n = seeds.",
             "z_diff, z_min_var (accuracy, higher better), irs, jemmig (normalised), mig, sap: higher is better;",
             "mine_mi_posthoc: fresh-MINE I(mu_p; mu_rest) in nats, mean over parts (lower = less redundant);",
             "heldout_recon: BCE nats/image on held-out images; train_window_sparse/ent: L_sparse, L_ent.", ""]
    for d in dict.fromkeys(r["dataset"] for r in rows):
        present = [m for m in ABLATION_METRICS if any(r["dataset"] == d and r["metric"] == m and r["n"]
                                                      for r in rows)]
        lines.append(f"{d}")
        lines.append(f"  {'variant':10s} {'n':>2s} " + " ".join(f"{m:>18s}" for m in present))
        for v in dict.fromkeys(r["variant"] for r in rows if r["dataset"] == d):
            cells = {r["metric"]: r for r in rows if r["dataset"] == d and r["variant"] == v}
            n = max(c["n"] for c in cells.values())
            lines.append(f"  {v:10s} {n:2d} " + " ".join(f"{_mean_std(cells[m]):>18s}" for m in present))
        lines.append("")
    return "\n".join(lines)


def _mean_std(cell: dict) -> str:
    if not cell["n"]:
        return "n/a"
    if cell["std"] is None:
        return f"{cell['mean']:.4g} ± n/a"
    return f"{cell['mean']:.4g} ± {cell['std']:.2g}"


def write_ablation(root: Path, rows: list[dict], pooled: list[dict]) -> None:
    """ablation.csv and ablation.txt at the stage root from the rows of one setting
    (``pooled``); failed runs (of ``rows``) are listed under the table."""
    table = ablation_rows(pooled)
    write_csv(root / "ablation.csv", table, ["dataset", "variant", "metric", "n", "mean", "std"])
    text = ablation_text(table)
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        text += f"\n{len(failed)} failed run(s):\n" + "".join(
            f"  {r['dataset']} {r['variant']} seed={r['seed']} at step {r['steps']}: {r.get('reason')}\n"
            for r in failed)
    write_text(root / "ablation.txt", text)


# --- each run's figures ---------------------------------------------------------------------
class FactorTraversalView:
    """Per-factor traversals through the attention, for ``vis.traversal_frames``.

    Factor k's embedding e_k sets only its query, so it moves only factor k's attention
    row (its allocation over latents); the values come from the code. Each factor gets
    one coordinate: e_k's projection on its first principal axis u_k (over the images
    traversed and ``reference`` codes), in standard deviations. Setting coordinate k to
    t moves e_k by (t − t_k)·σ_k·u_k with the code and the other embeddings fixed, and
    the frame shows what the decoder makes of the moved allocation."""

    def __init__(self, model: MINEDisentangleVAE, reference_codes: torch.Tensor):
        self.model, self._base = model, None
        with torch.no_grad():
            e = model.factor_encoder(reference_codes)                      # (m, K, F)
        self.mean = e.mean(0)
        centred = (e - self.mean).transpose(0, 1)                          # (K, m, F)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        self.axis = vh[:, 0]                                               # (K, F)
        self.std = (s[:, 0] / max(e.shape[0] - 1, 1) ** 0.5).clamp_min(1e-6)

    def eval(self):
        self.model.eval()
        return self

    def encoder(self, x):
        mu, logvar = self.model.encoder(x)
        self._base = (mu, self.model.factor_encoder(mu))
        t = ((self._base[1] - self.mean) * self.axis).sum(-1) / self.std   # (n, K)
        return t, torch.zeros_like(t)

    def moved(self, t):
        """(codes, embeddings) of the rows ``traversal_frames`` asks for: each image's code
        and embeddings, with every embedding moved to its coordinate in ``t`` (n·K, K)."""
        mu, e = self._base
        n, k = e.shape[:2]
        if t.shape != (n * k, k):
            raise RuntimeError(f"FactorTraversalView expects ({n * k}, {k}) coordinates, got {tuple(t.shape)}")
        t0 = ((e - self.mean) * self.axis).sum(-1) / self.std               # (n, K)
        shift = (t - t0.repeat_interleave(k, dim=0)) * self.std             # (n·K, K): 0 where not traversed
        return mu.repeat_interleave(k, dim=0), e.repeat_interleave(k, dim=0) + shift[..., None] * self.axis

    def decoder(self, t):
        return self.model.decoder(self.model.attention(*self.moved(t))[0])

    def reconstruct(self, x):
        return self.model.reconstruct(x)


def traversal_latents(model: MINEDisentangleVAE, k: int) -> list[int]:
    """The k latents of highest Gaussian-fit complexity (most informative first)."""
    c = model.complexity.complexity().cpu()
    return torch.argsort(-c, stable=True)[:k].tolist()


def draw_run_figures(spec, cfg, dataset, model, device, out_dir: Path,
                     mi=None) -> None:
    points = metric_indices(len(dataset), spec.seed, cfg.metric_train_points, cfg.metric_test_points)
    vis.save_reconstructions(model, dataset.images(points["test"][:64]), out_dir, device)
    view = vis.TraversalView(model, traversal_latents(model, min(cfg.traversal_latents, cfg.latent_dim)))
    vis.save_traversal_gif(view, dataset.images(points["distinct"]), out_dir / "traversal.gif", device)
    with torch.no_grad():
        reference = model.encoder(to_float(torch.from_numpy(dataset.images(points["train"][:500])).to(device)))[0]
    vis.save_traversal_gif(FactorTraversalView(model, reference), dataset.images(points["distinct"]),
                           out_dir / "factor_traversal.gif", device)
    if mi is not None:
        vis.save_mi_heatmap(np.asarray(mi), dataset.factor_names, out_dir / "mi_heatmap.png",
                            title=f"I(factor; latent), MINE-VAE {spec.name}")
