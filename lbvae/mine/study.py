"""The MINE disentangling VAE family: runs, bi-level training, evaluation, ablation table.

Model: ``models.MINEDisentangleVAE`` (docs/mine.md) – the λβ study's conv encoder
and decoder with learned factor queries that cross-attend over the latent slots, a
Gaussian-fit complexity per latent, and ``models.MutualInformationEstimator``: one
MINE (Belghazi et al., ICML 2018; ``lbvae/mine/estimator.py``) per latent part estimating the
redundancy I(z_p; z_rest) (``mine_target`` redundancy), or
``models.FactorMutualInformation``: one MINE per factor estimating I(z; e_k), the
original's target (``mine_target`` factor).

Bi-level training, one round = ``vae_steps`` VAE steps then ``mine_steps``
statistics-network steps:
- VAE step: minimise recon + kl_weight·KL + [redundancy] + [L_sparse] + [L_ent]
  (``losses.mine_vae_loss``) over encoder, factor encoder, attention and decoder,
  with every statistics network T frozen (no gradient into T);
- MINE step: every T maximises its DV bound on fresh codes (encoder frozen), with
  the moving-average gradient correction (eq. 12). T is trained in every variant,
  so ``no_mine`` runs still report the redundancy they did not penalise;
- with ``bilevel`` inner_attention, every VAE step is followed by ``inner_steps`` SGD
  steps on the cross-attention (the original's inner loop; ``inner_attention_steps``).
``steps`` counts VAE steps; after VAE step s with s % vae_steps == 0 come the
round's MINE steps, so the state after any step s is well defined and checkpoints
(every ``checkpoint_interval`` VAE steps) resume bit-for-bit.

Randomness, the results tree and every setting: docs/mine.md. The run lifecycle (lock,
resume, checks, log, checkpoints, failed and done markers, evaluation, --eval-only)
is lbvae/pipeline/family.py's and lbvae/pipeline/loop.py's, shared with the λβ study; this module plugs in ``MINE``.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

import visualizations as vis
from config import (
    MINE_RUN_DEFINING,
    MINE_VARIANT_SETTINGS,
    MINE_VARIANTS,
    MineConfig,
    add_mine_config_arguments,
    mine_from_args,
    mine_from_dict,
    mine_variant_config,
    validate_mine,
)
from lbvae.mine import evidence as mine_evidence
from lbvae.mine import report as mine_report
from lbvae.pipeline import evaluation, family, launcher, runs
from lbvae.pipeline.family import Family
from lbvae.pipeline.loop import LossRecord, train_one
from lbvae.pipeline.runs import RESULT_COLUMNS, BatchOrder, RunFailed, RunSpec, window_means
from losses import MINE_LOSS_KEYS, mine_vae_loss
from models import (
    FactorMutualInformation,
    MINEDisentangleVAE,
    MutualInformationEstimator,
    num_parameters,
    to_float,
)
from utils import atomic_write

STAGE = "mine"
ROOT_NAME = "mine_results"
# Per VAE step: the loss terms, then the mean unweighted MINE estimate over parts.
LOG_KEYS = MINE_LOSS_KEYS + ("mine_mi",)
# (use_mine, use_sparse, use_ent) of each ablation variant; the variants that change a
# setting instead (config.MINE_VARIANT_SETTINGS) keep every term, as the full model.
VARIANT_SWITCHES = {"full": (True, True, True), "no_mine": (False, True, True),
                    "no_sparse": (True, False, True), "no_ent": (True, True, False),
                    **{v: (True, True, True) for v in MINE_VARIANT_SETTINGS}}
# The MINE steps read their own data order: BatchOrder seeded with seed + this offset.
MINE_ORDER_OFFSET = 1_000_003
MINE_COLUMNS = ["model", "variant", "kl_weight", "z_diff", "z_diff_train", "z_min_var", "z_min_var_error",
                "irs", "jemmig", "jemmig_raw", "mine_mi_posthoc", "train_window_mine_mi",
                "train_window_redundancy", "train_window_sparse", "train_window_ent", "active_latents",
                "latent_dim", "psnr", "ssim", "recon_eval_split", "recon_eval_images", "progress_images_s"]
COLUMNS = RESULT_COLUMNS + [c for c in MINE_COLUMNS if c not in RESULT_COLUMNS]


# --- the grid ---------------------------------------------------------------------------
def mine_root(cfg: MineConfig) -> Path:
    """The stage root; the original's preset gets its own, since its settings define other runs."""
    return runs.stage_root(cfg, ROOT_NAME + (f"_{cfg.preset}" if cfg.preset else ""))


def mine_specs(cfg: MineConfig) -> list[RunSpec]:
    """One run per (dataset, variant, seed); β is the KL weight, λ = 0 (no L2 term)."""
    root = mine_root(cfg)
    return [RunSpec(STAGE, d, cfg.kl_weight, 0.0, s, cfg.steps, root / d / v / f"seed_{s}", variant=v)
            for d in cfg.datasets for v in cfg.variants for s in cfg.seeds]


# --- model state ------------------------------------------------------------------------
def build_models(cfg: MineConfig, channels: int, seed: int, device):
    """(VAE, MINE estimators), initialised from ``seed`` (all variants of a seed start
    from the same weights, as all β of a seed do in the λβ study)."""
    torch.manual_seed(seed)
    model = MINEDisentangleVAE(channels, cfg.latent_dim, cfg.num_factors, cfg.factor_dim, cfg.attention_dim,
                               cfg.gaussian_fit_samples, cfg.attention_temperature)
    if cfg.mine_target == "factor":
        estimator = FactorMutualInformation(cfg.latent_dim, cfg.num_factors, cfg.factor_dim, cfg.mine_hidden_dim,
                                            cfg.mine_ema_rate)
    else:
        estimator = MutualInformationEstimator(cfg.latent_dim, cfg.mine_parts, cfg.mine_hidden_dim,
                                               cfg.mine_ema_rate)
    # NHWC convolutions are 1.5-3x faster on CPU (oneDNN), as for the β-VAE.
    return model.to(device=device, memory_format=torch.channels_last), estimator.to(device)


class MineRun:
    """One MINE-VAE run, everything it needs to continue bit-for-bit (saved whole in every
    checkpoint): the family's trainee for ``loop.train_runs``, a run of one."""

    def __init__(self, spec: RunSpec, cfg: MineConfig, dataset, device):
        self.spec, self.specs, self.cfg, self.dataset, self.device = spec, [spec], cfg, dataset, device
        self.switches, self.failure = VARIANT_SWITCHES[spec.variant], None
        self.model, self.estimator = build_models(cfg, dataset.channels, spec.seed, device)
        adam = dict(betas=cfg.adam_betas, eps=cfg.adam_eps)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **adam)
        self.mine_optimizer = torch.optim.Adam(self.estimator.parameters(), lr=cfg.mine_lr, **adam)
        self.noise = torch.Generator(device=device).manual_seed(spec.seed)           # reparameterisation noise
        self.shuffles = torch.Generator().manual_seed(spec.seed + MINE_ORDER_OFFSET)  # MINE's marginal samples
        train_idx, _ = evaluation.heldout_split(len(dataset), cfg.heldout_fraction)
        self.vae_order = BatchOrder(train_idx, cfg.batch_size, spec.seed)
        self.mine_order = BatchOrder(train_idx, cfg.batch_size, spec.seed + MINE_ORDER_OFFSET)
        self.progress_images = vis.ProgressImages(spec, cfg, dataset, device)
        self.step, member = 0, LossRecord.fresh(LOG_KEYS, cfg.loss_window, spec.steps, device)
        self.mine_interval = torch.zeros(2, device=device)   # sum of T-step bounds, their count, since the last log
        if spec.checkpoint_path.exists():
            member = self._load(torch.load(spec.checkpoint_path, map_location=device, weights_only=True))
        self.record = LossRecord(LOG_KEYS, [member], device)

    def _load(self, payload: dict) -> dict:
        self.model.load_state_dict(payload["model"])
        self.estimator.load_state_dict(payload["estimator"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.mine_optimizer.load_state_dict(payload["mine_optimizer"])
        self.noise.set_state(payload["noise"].cpu())
        self.shuffles.set_state(payload["shuffles"].cpu())
        self.step, self.mine_interval = payload["step"], payload["mine_interval"].to(self.device)
        return payload

    def save(self) -> None:
        payload = {
            "model": self.model.state_dict(), "estimator": self.estimator.state_dict(),
            "optimizer": self.optimizer.state_dict(), "mine_optimizer": self.mine_optimizer.state_dict(),
            "noise": self.noise.get_state(), "shuffles": self.shuffles.get_state(), "step": self.step,
            **self.record.member(0), "mine_interval": self.mine_interval,
        }
        with atomic_write(self.spec.checkpoint_path) as f:
            torch.save(payload, f)

    @property
    def log(self) -> list[dict]:
        return self.record.logs[0]

    def window_means(self) -> dict[str, float]:
        return window_means(self.record.window[0], self.step, LOG_KEYS)

    def train_step(self) -> None:
        """One VAE step; after every ``vae_steps`` of them, the round's MINE steps."""
        cfg = self.cfg
        if cfg.lr_decay != 1:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(cfg, self.step, len(self.vae_order.train_indices))
        row = vae_step(self, _images(self.dataset, self.vae_order(self.step), self.device), cfg, self.switches)
        self.record.add(row[None], self.step)
        self.step += 1
        if self.step % cfg.vae_steps == 0:
            first = (self.step // cfg.vae_steps - 1) * cfg.mine_steps     # T steps done before this round
            for t in range(first, first + cfg.mine_steps):
                bound = mine_step(self, _images(self.dataset, self.mine_order(t), self.device))
                self.mine_interval += torch.stack([bound, torch.ones((), device=self.device)])
        self.progress_images.maybe_write(self.model, self.step)

    def failures(self) -> dict[int, RunFailed]:
        """The run, if a loss or MINE bound since the last log or a parameter is NaN/Inf."""
        failed = self.record.nonfinite(self.step)
        if failed:
            return failed
        if not bool(torch.isfinite(self.mine_interval).all()):
            return {0: RunFailed(self.step, f"non-finite MINE bound before step {self.step}")}
        bad = [n for module in (self.model, self.estimator) for n, p in module.named_parameters()
               if not bool(torch.isfinite(p).all())]
        if bad:
            return {0: RunFailed(self.step, f"non-finite parameters {', '.join(bad[:3])} at step {self.step}")}
        return {}

    def keep(self, indices: list[int]) -> None:
        if not indices:
            self.specs = []

    def log_row(self, k: int, rate: float) -> dict:
        bound_sum, bound_count = self.mine_interval.tolist()
        self.mine_interval.zero_()
        return {"mine_step_bound": bound_sum / bound_count if bound_count else math.nan, "images_per_s": rate}

    def result(self, k: int, failure: RunFailed | None = None) -> MineRun:
        self.failure = failure
        return self


# --- training ---------------------------------------------------------------------------
def _images(dataset, indices, device) -> torch.Tensor:
    x = torch.from_numpy(dataset.images(indices)).to(device)
    return to_float(x).contiguous(memory_format=torch.channels_last)


def mine_estimates(estimator, z, factors, generator, update_ema: bool) -> torch.Tensor:
    """The MINE estimates the penalty weighs: (P,) I(z_p; z_rest) per latent part for
    ``mine_target`` redundancy, (K,) I(z; e_k) per factor embedding for factor."""
    if isinstance(estimator, FactorMutualInformation):
        return estimator(z, factors, generator=generator, update_ema=update_ema)
    return estimator(z, generator=generator, update_ema=update_ema)


def mine_weights(model: MINEDisentangleVAE, estimator) -> torch.Tensor:
    """The complexity weights of the estimates (mean 1): per part from the latents'
    Gaussian-fit complexity, or per factor from its embedding's spread."""
    if isinstance(estimator, FactorMutualInformation):
        return model.factor_weights()
    return model.complexity.part_weights(estimator.parts)


def loss_settings(cfg: MineConfig, switches) -> dict:
    use_mine, use_sparse, use_ent = switches
    return dict(kl_weight=cfg.kl_weight, disentanglement_weight=cfg.disentanglement_weight,
                attention_reg_weight=cfg.attention_reg_weight, entropy_reg_weight=cfg.entropy_reg_weight,
                use_mine=use_mine, use_sparse=use_sparse, use_ent=use_ent, loss_scale=cfg.loss_scale)


def vae_step(state: MineRun, x: torch.Tensor, cfg: MineConfig, switches) -> torch.Tensor:
    """One outer (VAE) step with every statistics network frozen; returns the LOG_KEYS row.
    With ``bilevel`` inner_attention, ``inner_steps`` SGD steps on the cross-attention follow."""
    model, estimator = state.model.train(), state.estimator
    out = model.run(x, generator=state.noise)
    estimator.requires_grad_(False)       # T fixed: the VAE moves the codes, not the critic
    try:
        # EMA left alone: only T's own steps update the estimator's state.
        estimates = mine_estimates(estimator, out["z"], out["factors"], state.shuffles, update_ema=False)
    finally:
        estimator.requires_grad_(True)
    weights = mine_weights(model, estimator)
    terms = mine_vae_loss(out["logits"], x, out["mu"], out["logvar"], out["attention"], estimates, weights,
                          **loss_settings(cfg, switches))
    state.optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    state.optimizer.step()
    if cfg.bilevel == "inner_attention":
        inner_attention_steps(model, x, out, estimates.detach(), weights, cfg, switches)
    model.complexity.update(out["z"], out["logvar"])
    return torch.stack([terms[k].detach() for k in MINE_LOSS_KEYS] + [estimates.detach().mean()])


def inner_attention_steps(model: MINEDisentangleVAE, x, out: dict, estimates, weights, cfg: MineConfig,
                          switches) -> None:
    """The original's inner loop (this project's reading): ``inner_steps`` plain SGD steps
    (``inner_lr``, no momentum: no state to checkpoint) on the cross-attention's
    parameters only, each minimising the same loss on the same batch and the same
    sampled codes z, with the encoder and factor embeddings held at the step's values
    and the MINE estimates as constants (they do not depend on the attention).
    Only recon, L_sparse and L_ent then move the attention. With ``grad_clip`` > 0 each
    inner gradient is clipped to that global norm too (as ``clip_grad_norm_`` does);
    without clipping, SGD at 0.01 on the summed-pixel reconstruction diverges within
    a hundred demo steps."""
    params = list(model.attention.parameters())
    z, mu, logvar = out["z"].detach(), out["mu"].detach(), out["logvar"].detach()
    with torch.no_grad():
        factors = model.factor_encoder(z)
    for _ in range(cfg.inner_steps):
        attended, attention = model.attention(z, factors)
        terms = mine_vae_loss(model.decoder(attended), x, mu, logvar, attention, estimates, weights,
                              **loss_settings(cfg, switches))
        grads = torch.autograd.grad(terms["total"], params)
        if cfg.grad_clip > 0:       # as every step of the original is clipped
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            grads = [g * min(1.0, cfg.grad_clip / (float(norm) + 1e-6)) for g in grads]
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(cfg.inner_lr * g)


def mine_step(state: MineRun, x: torch.Tensor) -> torch.Tensor:
    """One statistics-network step: every T ascends its DV bound on codes of a fresh
    batch (encoder frozen, codes sampled as in training); returns the mean bound."""
    with torch.no_grad():
        mu, logvar = state.model.encoder(x)
        z = mu + torch.randn(mu.shape, generator=state.noise, device=mu.device) * torch.exp(0.5 * logvar)
        factors = state.model.factor_encoder(z) if isinstance(state.estimator, FactorMutualInformation) else None
    bounds = mine_estimates(state.estimator, z, factors, state.shuffles, update_ema=True)
    state.mine_optimizer.zero_grad(set_to_none=True)
    (-bounds.sum()).backward()            # the parts' networks are independent: one sum, one step
    state.mine_optimizer.step()
    return bounds.detach().mean()


def train(spec: RunSpec, cfg: MineConfig, dataset, device, **kwargs) -> MineRun:
    """Train one run to ``spec.steps`` VAE steps, resuming from its checkpoint if any
    (``loop.train_one``: raises RunFailed if it diverged)."""
    return train_one(MineRun(spec, cfg, dataset, device), spec.steps, cfg, **kwargs)


def learning_rate(cfg: MineConfig, step: int, train_images: int) -> float:
    """The VAE's learning rate at ``step``: lr · lr_decay^epoch, where the epoch is the
    one ``BatchOrder`` draws the step's batch from (a pure function of the step)."""
    return cfg.lr * cfg.lr_decay ** (step * cfg.batch_size // train_images)


# --- the family -----------------------------------------------------------------------------
class Mine(Family):
    """The MINE-VAE as lbvae/pipeline/family.py trains it: one run per trainee (MineRun), its metrics
    (``evaluate``), reconstructions and both traversals."""
    label, stage, script = "MINE-VAE runs", STAGE, "main_mine.py"
    outputs = "the ablation table (ablation.txt)"
    config_class = MineConfig
    columns = COLUMNS
    log_keys = LOG_KEYS
    cell_flags = (("dataset", "datasets"), ("variant", "variants"), ("seed", "seeds"))
    score_keys = ("z_diff", "z_min_var", "irs", "jemmig", "mig", "mine_mi_posthoc")

    def specs(self, cfg: MineConfig) -> list[RunSpec]:
        return mine_specs(cfg)

    def summarize(self, rows: list[dict], specs: list[RunSpec], cfg: MineConfig) -> Path:
        return summarize(rows, specs, cfg)

    def root(self, cfg: MineConfig) -> Path:
        return mine_root(cfg)

    def run_defining(self) -> tuple[str, ...]:
        return MINE_RUN_DEFINING

    def describe(self, cfg: MineConfig, dataset) -> str:
        model, estimator = build_models(cfg, dataset.channels, 0, "cpu")
        return (f"MINE-VAE {num_parameters(model):,} parameters, {len(estimator.estimators)} statistics networks "
                f"({cfg.mine_target}) {num_parameters(estimator):,}")

    def identity(self, spec: RunSpec) -> dict:
        # config.json keeps the grid's settings and the variant's changes to them
        return {"stage": STAGE, "dataset": spec.dataset, "variant": spec.variant, "seed": spec.seed,
                "steps": spec.steps, "variant_settings": MINE_VARIANT_SETTINGS.get(spec.variant, {})}

    def failed_columns(self, spec: RunSpec, cfg: MineConfig) -> dict:
        return {"source": cfg.source, "model": "mine_vae", "variant": spec.variant}

    def trainee(self, specs: list[RunSpec], cfg: MineConfig, dataset, device, feed) -> MineRun:
        spec, = specs
        return MineRun(spec, mine_variant_config(cfg, spec.variant), dataset, device)

    def evaluate(self, result, cfg: MineConfig, dataset, device, wall_time_s: float, pack_size: int) -> dict:
        cfg = mine_variant_config(cfg, result.spec.variant)
        scores = mine_report.evaluate(result.spec, cfg, dataset, result.model, device, result.window_means(),
                                      result.step, wall_time_s)
        if isinstance(result, MineRun):
            scores["row"]["progress_images_s"] = result.progress_images.seconds
        return scores

    def draw(self, spec: RunSpec, cfg: MineConfig, dataset, model, device, out_dir: Path, scores: dict) -> None:
        mine_report.draw_run_figures(spec, mine_variant_config(cfg, spec.variant), dataset, model, device, out_dir,
                         scores.get("mi"))

    def postfix(self, row: dict) -> str:
        if row["status"] != "done":
            return f"{row['dataset']} {row['variant']} FAILED"
        if row.get("mig") is None:
            return f"last: recon={row['train_window_nll']:.1f} MINE={row['mine_mi_posthoc']:.3f}"
        return f"last: MIG={row['mig']:.3f} Z-diff={row['z_diff']:.3f} MINE={row['mine_mi_posthoc']:.3f}"

    def config_from_saved(self, saved: dict, given: dict) -> MineConfig:
        return validate_mine(mine_from_dict(saved).replace(**given))

    def config_from_args(self, args) -> MineConfig:
        return mine_from_args(args, ablation=args.ablation)

    def cell_spec(self, cfg: MineConfig, cell: dict, path: Path) -> tuple[RunSpec, MineConfig]:
        cfg = mine_variant_config(cfg, cell["variant"])
        return RunSpec(STAGE, cell["dataset"], cfg.kl_weight, 0.0, int(cell["seed"]), cfg.steps, path.parent,
                       variant=cell["variant"]), cfg

    def load_model(self, cfg: MineConfig, spec: RunSpec, channels: int, state: dict, device):
        model, _ = build_models(cfg, channels, spec.seed, device)
        model.load_state_dict(state)
        return model


MINE = Mine()


def run_one(spec: RunSpec, cfg: MineConfig, dataset, device) -> dict | None:
    """Train, evaluate and draw one run; None if another process is training it."""
    rows = family.run_pack([spec], cfg, MINE, dataset, device)
    return rows[0] if rows else None


def run_grid(specs: list[RunSpec], cfg: MineConfig, retry_failed: bool = False) -> list[dict]:
    """Train and evaluate every run that is not finished; returns all rows (done, failed)."""
    return family.run_grid(specs, cfg, MINE, retry_failed)


def summarize(rows: list[dict], specs: list[RunSpec], cfg: MineConfig) -> Path:
    """Rewrite results.csv and the ablation table from all finished runs."""
    root = runs.output_root(mine_root(cfg))
    rows = runs.write_results(root, rows, COLUMNS)
    pooled = runs.figure_rows(rows, cfg, STAGE)         # never pools runs of other settings
    mine_report.write_ablation(root, rows, pooled)
    if cfg.preset == "evidence" and not cfg.results_dir and root == mine_root(cfg):
        # The page lives in the repository: a run elsewhere (--results-dir, --collect --out) leaves it alone.
        print(f"wrote {mine_evidence.write_report(pooled, root, cfg)}")
    runs.report_missing(rows, specs)
    return root


# --- command line -----------------------------------------------------------------------
@runs.one_line_errors
def main(argv=None, description: str = "") -> Path:
    parser = runs.Parser(description=description)
    parser.add_argument("--ablation", action="store_true",
                        help=f"run every variant ({', '.join(MINE_VARIANTS)}) and write the comparison table")
    family.add_eval_only_argument(parser)
    parser.add_argument("--retry-failed", action="store_true", help="retrain runs that failed before")
    add_mine_config_arguments(parser)
    launcher.add_launcher_arguments(parser)
    args = parser.parse_args(argv)
    if args.eval_only is not None:
        return family.eval_only_command(MINE, args, parser)
    return family.train_command(MINE, args, argv, parser, lambda a: mine_from_args(a, ablation=a.ablation),
                                MINE_RUN_DEFINING)


if __name__ == "__main__":
    sys.exit("run main_mine.py")
