"""Every setting of the λβ-VAE study in one dataclass, with the original defaults.

Defaults are those of Vu, Wan & Wei, "Mutual Information Collapse Explains
Disentanglement Failure in β-VAEs" (2026). Edit them here, or override any field on
the command line: ``python main_beta.py --beta 1 8 --seeds 0 1 --steps 2000``.

It imports only ``lbvae.data.ground_truth`` (for the dataset names: one home for them) and
``lbvae.settings`` (how a settings dataclass becomes flags and JSON), so every script and
test can read it without torch.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from lbvae.data.ground_truth import DATASET_NAMES, FACTOR_DATASETS, MPI3D_VARIANTS, SOURCES
from lbvae.objectives import LAMBDA_D_FACTORS, OBJECTIVES, rows_objective, weight_symbol  # noqa: F401
from lbvae.settings import (
    ConfigError,
    Settings,
    add_dataclass_arguments,
    bad,
    check_types,
    given_settings,
    settings_from_dict,
)

DATASETS = FACTOR_DATASETS                    # the λβ study: datasets with a factor grid
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Config(Settings):
    # --- what to run ----------------------------------------------------------------
    datasets: tuple[str, ...] = DATASETS
    source: str = "real"                     # "real" files, or procedural "standin"s
    data_dir: str | None = None              # default: $DISENT_DATA_DIR, else ./data
    mpi3d_variant: str = "real"
    betas: tuple[float, ...] = (1.0, 4.0, 8.0, 16.0, 32.0)
    lambdas: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0)   # λ = 0 is the control
    seeds: tuple[int, ...] = tuple(range(10))
    objective: str = "beta"                  # the regulariser: a name of OBJECTIVES (docs/objectives.md)
    sweep: tuple[float, ...] = ()            # the objective's swept weight; () = its default grid (β-VAE: betas)

    # --- the other objectives' fixed weights (disentanglement_lib's values) ----------
    annealed_gamma: float = 1000.0           # AnnealedVAE: γ of γ·|KL − C|
    iteration_threshold: int = 100_000       # AnnealedVAE: steps over which C rises from 0 to c_max
    lambda_d_factor: float | None = None     # DIP-VAE: λ_d / λ_od; None = LAMBDA_D_FACTORS of the objective
    discriminator_lr: float = 1e-4           # FactorVAE: the discriminator's own Adam (Kim & Mnih 2018)...
    discriminator_adam_betas: tuple[float, float] = (0.5, 0.9)   # ...and its moment decay rates

    # --- optimisation ---------------------------------------------------------------
    steps: int = 150_000                     # β-VAE optimizer steps per run
    lambda_steps: int = 50_000               # further steps of the λ continuation (fresh Adam)
    batch_size: int = 64
    latent_dim: int = 10
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8

    # --- logging, checkpoints, evaluation --------------------------------------------
    loss_window: int = 5_000                 # steps averaged into the train-window loss ("NLL" of the paper)
    log_interval: int = 5_000
    checkpoint_interval: int = 5_000
    metric_train_points: int = 10_000        # MI, MIG, I_m and SAP fitting
    metric_test_points: int = 5_000          # SAP scoring
    num_bins: int = 20
    heldout_fraction: float = 0.01           # images never trained on, for a held-out NLL; 0 = exact reproduction
    heldout_eval_points: int = 5_000

    # --- where and how --------------------------------------------------------------
    results_dir: str | None = None           # default: betavae_results / lambda_betavae_results
    device: str = "auto"                     # "auto", "cpu", "cuda", "cuda:1", ...
    pack_size: int = 0                       # runs trained together in one step; 0 = chosen from the device
    precision: str = "fp32"                  # "fp32", or "bf16" autocast of the forward pass
    compile: bool = False                    # torch.compile the packed training step
    figures: bool = True
    demo: bool = False                       # the same as preset="demo"
    preset: str = ""                         # "", or a name of PRESETS: its overrides, then the flags given


# The demo runs the whole study on the procedural stand-ins in minutes on a 2-core CPU
# (main_beta ≤ 10 min, main_lambda ≤ 5 min). lr is 10x the paper's and batches are a
# quarter: at lr 1e-4 a few hundred steps barely leave the mean image, dSprites needs
# hundreds of updates (not images) to leave it, and a higher lr collapses its posterior.
# Measured at β=1 on the dSprites stand-in: batch 32 × 300 steps left seed 1 at the mean
# image; batch 16 × 600 steps (same compute) drew the sprites for seeds 0 and 1.
DEMO_OVERRIDES = dict(
    source="standin",              # no downloads
    betas=(1.0, 4.0, 16.0),        # low, middle and high β in three runs per seed
    lambdas=(0.0, 4.0, 8.0),       # the control and two strengths
    seeds=(0, 1),                  # two seeds: the least that shows a spread
    steps=600,                     # minutes per dataset on a CPU (see above for batch × steps)
    lambda_steps=200,              # a third of the β budget, as the paper's 50k after 150k
    lr=1e-3,                       # at 1e-4 a few hundred steps leave the mean image
    batch_size=16,                 # more updates for the same compute (see above)
    loss_window=100,               # a window shorter than the run
    log_interval=100,              # six log rows per run
    checkpoint_interval=100,       # a killed demo loses seconds
    metric_train_points=2_000,     # seconds per evaluation
    metric_test_points=1_000,      # seconds per SAP fit
    heldout_eval_points=500,       # the held-out NLL in seconds
)
# The λ demo continues β 1 and 16 of the β demo, both seeds: a cell with one seed has no
# spread, and its change against the baseline would be noise drawn at full colour.
DEMO_LAMBDA_OVERRIDES = dict(betas=(1.0, 16.0))

# The evidence preset (docs/evidence.md): is the paper's effect (I(factors; latents)
# collapsing with β, λ·L2 restoring it) larger than the seed spread on a stand-in, within
# 45 minutes for both stages on a 2-core CPU? The budget was chosen from
# `python scripts/evidence_budget.py` (docs/evidence_budget.csv: MIG, I_m and active latents
# against steps at β = 1 and 16, two seeds, batch 32, lr 1e-3), not by taste. At 300 steps
# one β = 1 seed was still at the mean image (0 active latents, MIG 0.006); at 1,000 steps
# every run had left the shuffled-factor floor (MIG 0.027-0.065 against 0.000-0.001) and
# β = 16 had switched off half the latents (4-5 active against 10 at β = 1, mean KL 8 against
# 23 nats). One setting per line, with its reason:
EVIDENCE_OVERRIDES = dict(
    datasets=("dsprites",),        # 1 channel, the cheapest stand-in; the dataset of the paper's SAP numbers
    source="standin",              # no downloads; procedural images with dSprites' factor grid
    betas=(1.0, 4.0, 8.0, 32.0),   # the baseline, the rise (4, 8: the paper's MIG cell) and the collapse (32)
    lambdas=(0.0, 8.0),            # the control and the paper's strongest repair
    seeds=(0, 1, 2),               # three seeds: the fewest that give a seed std per cell
    steps=1000,                    # the cheapest measured budget where every run left the floor (300 did not)
    lambda_steps=250,              # a quarter of the β budget, about the paper's 50k after 150k
    lr=1e-3,                       # lr 1e-4 leaves the mean image only after thousands of steps
    batch_size=32,                 # twice the demo's 16, whose 600 steps left MIG at 0.01-0.05 (README)
    loss_window=100,               # the train-window loss over the last 100 steps, not 5,000 of 1,000
    log_interval=100,              # loss curves with 10 points per run
    checkpoint_interval=250,       # a killed run loses at most a few minutes
    metric_train_points=5_000,     # the histogram MI's bias falls as 1/n: 2.5x below the demo's 2,000
    metric_test_points=1_000,      # SAP scoring, as in the demo
    heldout_eval_points=500,       # the held-out NLL in seconds, as in the demo
)
# The λ stage continues β 1, 8 and 32: the baseline, the paper's MIG cell and its SAP / I_m cell.
EVIDENCE_LAMBDA_OVERRIDES = dict(betas=(1.0, 8.0, 32.0))

# The zoo preset (docs/zoo.md): every objective of the zoo on the dSprites stand-in at one
# budget, at two settings of its swept weight: its reference (the λ stage's baseline cell,
# config.OBJECTIVES) and a strong one from disentanglement_lib's grid. The budget comes from
# `python scripts/zoo_budget.py` (docs/zoo_budget.csv). `--preset zoo` without --objective
# runs the objectives one after the other, each into its own trees under zoo_results/.
ZOO_WEIGHTS = {"beta": (1.0, 16.0), "annealed": (5.0, 100.0), "tcvae": (1.0, 8.0), "dip_i": (1.0, 20.0),
               "dip_ii": (1.0, 20.0), "factor": (10.0, 50.0)}
# Measured (docs/zoo_budget.csv, 2 seeds, batch 32, lr 1e-3): at 250 steps one seed of five of the
# six objectives was still at the mean image (0 active latents, KL 0.01-0.02 nats); at 500 every
# run of every objective had left it (5-10 active latents, MIG 0.006-0.065 against floors <= 0.001).
ZOO_STEPS = 500
ZOO_OVERRIDES = dict(
    EVIDENCE_OVERRIDES,            # the evidence preset's data, optimiser and metric settings, except:
    betas=(1.0, 16.0),             # (the β-VAE's ZOO_WEIGHTS; every objective's grid is its --sweep)
    lambdas=(0.0, 8.0),            # the control and the paper's strongest repair
    steps=ZOO_STEPS,               # the cheapest measured budget where every run left the mean image
    lambda_steps=ZOO_STEPS // 4,   # a quarter of the β budget, as the evidence preset
)


def zoo_objective_settings(objective: str) -> dict:
    """What the zoo preset sets for one objective: its two weights; AnnealedVAE's capacity
    rising over the first third of the steps (disentanglement_lib: 100,000 of 300,000)."""
    extra = {"iteration_threshold": ZOO_STEPS // 3} if objective == "annealed" else {}
    return {"sweep": ZOO_WEIGHTS[objective], **extra}

# Each preset: (β-stage overrides, λ-stage overrides on top, results folder).
PRESETS = {
    "demo": (DEMO_OVERRIDES, DEMO_LAMBDA_OVERRIDES, "demo_results"),
    "evidence": (EVIDENCE_OVERRIDES, EVIDENCE_LAMBDA_OVERRIDES, "evidence_results"),
    "zoo": (ZOO_OVERRIDES, {}, "zoo_results"),
}

# A run's identity beyond its grid cell (dataset, β, λ, seed): every setting that changes
# its numbers. The run's own config.json stores them, and a run is reused (resumed, or
# skipped as done) only under the same values; a stage root's config.json holds them too,
# so one results directory holds one setting of each. Not here: where and how a run
# trains (device, pack_size, compile, checkpoint/log intervals: the same numbers, to
# float tolerance across packs and devices), figures, and the grid lists themselves.
RUN_DEFINING = ("source", "mpi3d_variant", "objective", "annealed_gamma", "iteration_threshold", "lambda_d_factor",
                "discriminator_lr", "discriminator_adam_betas", "steps", "batch_size", "latent_dim", "lr",
                "adam_betas", "adam_eps", "loss_window", "heldout_fraction", "precision",
                "metric_train_points", "metric_test_points", "num_bins", "heldout_eval_points")
# A λ run continues the final weights of a β run of `steps` steps for `lambda_steps` more.
LAMBDA_RUN_DEFINING = RUN_DEFINING + ("lambda_steps",)


# Largest values that still describe a run (beyond them a setting fails late, deep in
# numpy or torch, or exhausts memory): seeds feed NumPy's and scikit-learn's 32-bit seeds.
MAX_SEED = 2 ** 32 - 1
MAX_LATENT_DIM = 4096


def _check_common(cfg, lists: tuple[str, ...], positive: tuple[str, ...], datasets: tuple[str, ...]) -> None:
    """The checks every settings dataclass shares; ConfigError names the first bad one."""
    check_types(cfg)
    for name in lists:
        values = getattr(cfg, name)
        if len(values) == 0:
            bad(name, "is empty: give at least one value")
        if len(set(values)) != len(values):
            bad(name, f"has duplicates {list(values)}: give each value once")
    for d in cfg.datasets:
        if d not in datasets:
            bad("datasets", f"has unknown dataset {d!r}: choose from {', '.join(datasets)}")
    if cfg.source not in SOURCES:
        bad("source", f"is {cfg.source!r}: choose 'real' or 'standin'")
    if cfg.mpi3d_variant not in MPI3D_VARIANTS:
        bad("mpi3d_variant", f"is {cfg.mpi3d_variant!r}: choose from {', '.join(MPI3D_VARIANTS)}")
    for s in cfg.seeds:
        if not 0 <= s <= MAX_SEED:
            bad("seeds", f"has {s}: seeds must be in 0..{MAX_SEED} (2^32 - 1)")
    for name in positive:
        if getattr(cfg, name) <= 0:
            bad(name, f"is {getattr(cfg, name)}: must be a positive integer")
    if cfg.latent_dim > MAX_LATENT_DIM:
        bad("latent_dim", f"is {cfg.latent_dim}: use at most {MAX_LATENT_DIM} latents (the study uses 10)")
    if not 2 <= cfg.num_bins <= cfg.metric_train_points:
        bad("num_bins", f"is {cfg.num_bins}: use 2..metric_train_points ({cfg.metric_train_points}) histogram "
                         f"bins per latent (the study uses 20)")
    if cfg.heldout_eval_points < 0:
        bad("heldout_eval_points", "must be >= 0")
    if not (0 < cfg.lr < 1):
        bad("lr", f"is {cfg.lr}: use a learning rate in (0, 1), e.g. 1e-4")
    if not all(0 <= b < 1 for b in cfg.adam_betas):
        bad("adam_betas", f"is {cfg.adam_betas}: both must be in [0, 1)")
    if not cfg.adam_eps > 0:
        bad("adam_eps", "must be > 0")
    if not 0 <= cfg.heldout_fraction < 0.5:
        bad("heldout_fraction", f"is {cfg.heldout_fraction}: use a fraction in [0, 0.5), 0 to train on every image")
    if not (cfg.device == "auto" or cfg.device == "cpu" or cfg.device.startswith("cuda")):
        bad("device", f"is {cfg.device!r}: use auto, cpu, cuda or cuda:N")


def validate(cfg: Config) -> Config:
    """Raise ConfigError naming the first invalid setting and the fix."""
    _check_common(cfg, lists=("datasets", "betas", "lambdas", "seeds"), datasets=DATASETS,
                  positive=("steps", "lambda_steps", "batch_size", "latent_dim", "loss_window", "log_interval",
                            "checkpoint_interval", "metric_train_points", "metric_test_points", "num_bins"))
    for name in ("betas", "lambdas", "sweep"):
        for v in getattr(cfg, name):
            if not math.isfinite(v) or v < 0:
                bad(name, f"has {v}: values must be finite and >= 0")
    if len(set(cfg.sweep)) != len(cfg.sweep):
        bad("sweep", f"has duplicates {list(cfg.sweep)}: give each value once")
    if cfg.objective not in OBJECTIVES:
        bad("objective", f"is {cfg.objective!r}: choose from {', '.join(OBJECTIVES)}")
    defaults = Config()
    for name in ("annealed_gamma", "iteration_threshold", "lambda_d_factor", "discriminator_lr",
                 "discriminator_adam_betas"):
        if getattr(cfg, name) != getattr(defaults, name) and name not in OBJECTIVES[cfg.objective].settings:
            users = [o for o, spec in OBJECTIVES.items() if name in spec.settings]
            bad(name, f"is a weight of --objective {' / '.join(users)} only: with --objective {cfg.objective} it "
                      f"would change nothing; drop it, or give --objective {users[0]}")
    if not math.isfinite(cfg.annealed_gamma) or cfg.annealed_gamma < 0:
        bad("annealed_gamma", f"is {cfg.annealed_gamma}: must be finite and >= 0 (disentanglement_lib: 1000)")
    if cfg.iteration_threshold <= 0:
        bad("iteration_threshold", f"is {cfg.iteration_threshold}: use a positive number of steps")
    if not 0 < cfg.discriminator_lr < 1:
        bad("discriminator_lr", f"is {cfg.discriminator_lr}: use a learning rate in (0, 1), e.g. 1e-4")
    if not all(0 <= b < 1 for b in cfg.discriminator_adam_betas):
        bad("discriminator_adam_betas", f"is {cfg.discriminator_adam_betas}: both must be in [0, 1)")
    if cfg.lambda_d_factor is not None and not (math.isfinite(cfg.lambda_d_factor) and cfg.lambda_d_factor >= 0):
        bad("lambda_d_factor", f"is {cfg.lambda_d_factor}: must be finite and >= 0")
    if cfg.pack_size < 0:
        bad("pack_size", f"is {cfg.pack_size}: use 0 (chosen from the device) or a positive number of runs")
    if cfg.precision not in PRECISIONS:
        bad("precision", f"is {cfg.precision!r}: choose from {', '.join(PRECISIONS)}")
    if cfg.preset not in ("", *PRESETS):
        bad("preset", f"is {cfg.preset!r}: choose from {', '.join(PRESETS)}")
    if cfg.demo and cfg.preset != "demo":
        bad("preset", f"is {cfg.preset!r} with --demo: --demo is --preset demo; give one of them")
    if cfg.lambda_d_factor is None and cfg.objective in LAMBDA_D_FACTORS:
        # Recorded resolved, so config.json and results.csv say the λ_d the runs trained with.
        cfg = cfg.replace(lambda_d_factor=LAMBDA_D_FACTORS[cfg.objective])
    return cfg


def grid_weights(cfg: Config) -> tuple[float, ...]:
    """The values of the objective's swept weight, one run each: --sweep, else the β-VAE's
    --betas, else the objective's default grid."""
    if cfg.sweep:
        return cfg.sweep
    return cfg.betas if cfg.objective == "beta" else OBJECTIVES[cfg.objective].grid


# --- command line ------------------------------------------------------------------
# Singular spellings read naturally for one value ("--beta 8"); both are accepted.
ALIASES = {"datasets": ["--dataset"], "betas": ["--beta"], "lambdas": ["--lambda"], "seeds": ["--seed"]}


# What each setting is, in a phrase, with its choices and unit (--help shows it with the default).
HELP = {
    "datasets": f"datasets to run (choose from {', '.join(DATASETS)})",
    "source": "real: the published files under --data-dir; standin: procedural images, no downloads",
    "data_dir": "folder of the real files (default: $DISENT_DATA_DIR, else ./data)",
    "mpi3d_variant": f"which MPI3D file ({', '.join(MPI3D_VARIANTS)})",
    "betas": "β values of the β-VAE (--objective beta): weights of the KL term, one run each (>= 0)",
    "objective": f"the disentangling objective ({', '.join(OBJECTIVES)}; docs/objectives.md); part of a run's identity",
    "sweep": "values of the objective's swept weight, one run each (β for beta and tcvae, c_max for annealed, "
             "lambda_od for dip_i and dip_ii, gamma for factor; >= 0); default: --betas for beta, "
             "disentanglement_lib's grid otherwise",
    "annealed_gamma": "AnnealedVAE's γ in γ·|KL − C| (>= 0)",
    "iteration_threshold": "AnnealedVAE: steps over which the capacity C rises from 0 to c_max",
    "lambda_d_factor": "DIP-VAE: λ_d = lambda_d_factor · λ_od (default 10 for dip_i, 1 for dip_ii)",
    "discriminator_lr": "FactorVAE: Adam learning rate of the discriminator, in (0, 1)",
    "discriminator_adam_betas": "FactorVAE: the discriminator's Adam moment decay rates, each in [0, 1)",
    "lambdas": "λ values: weights of the λ·MSE term of the λ stage, one run each (>= 0; 0 is the control)",
    "seeds": "seeds, one run each (0..2^32-1); a seed fixes weights, data order and noise",
    "variants": "MINE-VAE ablation variants (full, no_mine, no_sparse, no_ent, factors_5, factors_15, dw_2)",
    "steps": "optimizer steps per run (part of a run's identity)",
    "lambda_steps": "further optimizer steps of each λ run, from its β run's final weights",
    "batch_size": "images per optimizer step",
    "latent_dim": "latent dimensions (1..4096)",
    "lr": "Adam learning rate, in (0, 1)",
    "adam_betas": "Adam's two moment decay rates, each in [0, 1)",
    "adam_eps": "Adam's epsilon (> 0)",
    "loss_window": "steps averaged into the train-window losses of the results table",
    "log_interval": "steps between rows of train_log.csv",
    "checkpoint_interval": "steps between checkpoints (a killed run resumes from the last one)",
    "metric_train_points": "images whose codes the MI metrics (MIG, I_m, SAP fit) use",
    "metric_test_points": "further images SAP is scored on",
    "num_bins": "equal-width histogram bins per latent for the MI metrics (2..metric_train_points)",
    "heldout_fraction": "fraction of images never trained on, for the held-out NLL (0..0.5; 0 trains on all)",
    "heldout_eval_points": "held-out images the held-out NLL is computed on (0: none)",
    "results_dir": "folder of the results trees (default: the current folder; demo_results with --demo, "
                   "evidence_results with --preset evidence)",
    "device": "auto, cpu, cuda or cuda:N",
    "pack_size": "runs trained together in one step (0: chosen from the device)",
    "precision": "fp32, or bf16 autocast of the forward pass (part of a run's identity)",
    "compile": "torch.compile the packed training step",
    "figures": "draw per-run and aggregate figures",
    "preset": "a named set of settings (demo: minutes on a CPU; evidence: the paper's effect against the seed "
              "spread on the dSprites stand-in, about 45 minutes on a 2-core CPU; zoo: every objective of "
              "docs/objectives.md at two weights, then λ 0 and 8, on that stand-in; config.py says why each is set)",
    "num_factors": "learned factor queries of the cross-attention",
    "factor_dim": "width of each factor query",
    "attention_dim": "width of the cross-attention",
    "attention_temperature": "softmax temperature of the cross-attention (scores / (sqrt(attention_dim) · T)); "
                             "below 1 sharpens it",
    "mine_hidden_dim": "hidden width of each MINE statistics network",
    "mine_parts": "latent parts; MINE estimates I(part; rest) for each (2..latent_dim)",
    "kl_weight": "β, the weight of the KL term (>= 0)",
    "disentanglement_weight": "weight of the MINE penalty (>= 0)",
    "attention_reg_weight": "weight of L_sparse (>= 0)",
    "entropy_reg_weight": "weight of L_ent (>= 0)",
    "gaussian_fit_samples": "recent codes in the Gaussian-fit complexity buffer",
    "vae_steps": "VAE steps per bi-level round",
    "mine_steps": "statistics-network steps per bi-level round (>= 0)",
    "mine_lr": "Adam learning rate of the statistics networks, in (0, 1)",
    "mine_ema_rate": "moving-average rate of MINE's gradient correction, in (0, 1]",
    "sampled_metric_train": "training points of Z-diff and Z-min Var",
    "sampled_metric_eval": "evaluation points of Z-diff and Z-min Var",
    "sampled_metric_batch": "images (pairs for Z-diff) per Z-diff / Z-min Var point (>= 2)",
    "mine_eval_steps": "Adam steps of the post-hoc MINE on the final codes",
    "traversal_latents": "most informative latents shown in traversal.gif",
    "mine_target": "what MINE penalises: redundancy, I(z_p; z_rest) per latent part; factor, I(z; e_k) per "
                   "factor embedding, weighted by factor complexity (the original's)",
    "bilevel": "alternate: VAE steps alternate with statistics-network steps; inner_attention: also "
               "inner_steps SGD steps on the cross-attention after every VAE step (the original's)",
    "inner_steps": "SGD steps on the cross-attention after every VAE step (bilevel inner_attention)",
    "inner_lr": "SGD learning rate of the inner cross-attention steps, in (0, 1)",
    "loss_scale": "batch_mean: every term a per-image mean; batch_sum: reconstruction and KL summed over the "
                  "batch, regularisers not (the original's)",
    "weight_decay": "Adam weight decay (L2) of the VAE's parameters (>= 0)",
    "lr_decay": "VAE learning rate multiplied by this once per epoch of the training images, in (0, 1]",
    "grad_clip": "clip the VAE gradient's global norm to this (0: no clipping)",
    "sample_interval": "VAE steps between progress images samples/step_<k>.png (0: none)",
}
MINE_PRESET_HELP = ("settings of a named source applied before the flags: original (PyTorch-VAE_MINE's loss "
                    "scale, optimiser and objective); evidence (full / no_mine / no_sparse × 3 seeds on the "
                    "dSprites stand-in, writes docs/mine_evidence.md)")


def demo_help(overrides: dict) -> str:
    """What --demo changes: the preset's settings (flags given on the command line still win)."""
    sets = ", ".join(f"{k}={' '.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in overrides.items())
    return f"procedural stand-ins and a small, short grid that runs in minutes on a CPU; sets {sets} (flags given win)"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every Config field (``--field-name``), defaulting to 'not given'."""
    helps = {**HELP, "demo": demo_help(DEMO_OVERRIDES) + "; main_lambda.py then continues "
             + demo_help(DEMO_LAMBDA_OVERRIDES).split("; sets ")[1]}
    add_dataclass_arguments(parser, Config, helps, ALIASES, "settings (config.py fields; defaults are the paper's)")


def preset_settings(name: str, stage: str = "beta") -> dict:
    """The settings a preset sets for a stage (the λ stage's on top of the β stage's)."""
    beta, lam, _ = PRESETS[name]
    return {**beta, **(lam if stage == "lambda" else {}), "preset": name, "demo": name == "demo"}


def from_args(args: argparse.Namespace, base: Config | None = None, stage: str = "beta") -> Config:
    """Config from parsed flags: the preset first (--preset NAME; --demo is --preset demo),
    then explicit flags."""
    base = base or Config()
    given = given_settings(args, Config)
    preset = given.pop("preset", base.preset)
    if given.pop("demo", base.demo):
        if preset not in ("", "demo"):
            raise ConfigError(f"config: --demo and --preset {preset}: --demo is --preset demo; give one of them")
        preset = "demo"
    if preset:
        if preset not in PRESETS:
            bad("preset", f"is {preset!r}: choose from {', '.join(PRESETS)}")
        base = base.replace(**preset_settings(preset, stage))
    if preset == "zoo":
        base = base.replace(**zoo_objective_settings(given.get("objective", base.objective)))
    return validate(base.replace(**given))


def from_dict(values: dict) -> Config:
    """Config from a saved JSON dict; unknown keys are an error (a typo must not be ignored)."""
    return validate(settings_from_dict(Config, values))


# =====================================================================================
# The MINE disentangling VAE (second model family; main_mine.py, lbvae/mine/study.py)
# =====================================================================================
MINE_DATASETS = DATASET_NAMES                 # CelebA too: training and traversals, no factor metrics
# The ablation (docs/mine.md): the loss terms switched off one at a time, then the
# original's own ablations, which change a setting (MINE_VARIANT_SETTINGS).
MINE_VARIANTS = ("full", "no_mine", "no_sparse", "no_ent", "factors_5", "factors_15", "dw_2")
MINE_VARIANT_SETTINGS = {"factors_5": {"num_factors": 5}, "factors_15": {"num_factors": 15},
                         "dw_2": {"disentanglement_weight": 2.0}}
MINE_TARGETS = ("redundancy", "factor")
MINE_BILEVEL = ("alternate", "inner_attention")
MINE_LOSS_SCALES = ("batch_mean", "batch_sum")      # losses.LOSS_SCALES (config does not import torch)
MINE_PRESETS = ("", "original", "evidence")


@dataclass(frozen=True)
class MineConfig(Settings):
    """Settings of the MINE disentangling VAE (docs/mine.md).

    Model and loss-weight defaults are those of the PyTorch-VAE_MINE repository. Its
    optimiser (Adam 1e-3, weight decay 1e-4, learning-rate decay 0.95 per epoch,
    gradient clipping 1.0, 150 epochs, seed 1265), loss scale and objective are the
    preset ``--preset original`` (MINE_ORIGINAL_PRESET); the defaults below keep the λβ
    study's optimiser, step count and seeds (Adam 1e-4, batch 64) so the two families
    compare in one table (docs/mine.md lists every difference and why each default
    stays). ``in_channels`` is not a setting: it comes from the dataset (1 for dSprites,
    3 otherwise)."""
    # --- what to run ----------------------------------------------------------------
    datasets: tuple[str, ...] = DATASETS
    source: str = "real"
    data_dir: str | None = None
    mpi3d_variant: str = "realistic"         # the MINE repository documents MPI3D-realistic
    variants: tuple[str, ...] = ("full",)    # --ablation runs all of MINE_VARIANTS
    seeds: tuple[int, ...] = (0, 1, 2)

    # --- model (repository defaults) ---------------------------------------------------
    latent_dim: int = 128
    num_factors: int = 10                    # learned factor queries of the cross-attention
    factor_dim: int = 32
    attention_dim: int = 128
    attention_temperature: float = 1.0       # 1: scaled dot-product attention as in Vaswani et al. 2017
    mine_hidden_dim: int = 128
    mine_parts: int = 8                      # latent split into this many parts; MINE estimates I(part; rest)
    # Redundancy: the original's I(z; e_k) has no finite true value (e_k is a function of z).
    mine_target: str = "redundancy"

    # --- loss weights --------------------------------------------------------------------
    kl_weight: float = 1.0                   # β of the KL term (the "beta" column of the results table)
    disentanglement_weight: float = 1.0      # MINE penalty
    attention_reg_weight: float = 0.1        # L_sparse
    entropy_reg_weight: float = 0.05         # L_ent
    gaussian_fit_samples: int = 1000         # recent codes in the Gaussian-fit complexity buffer
    # Per-image means: the regularisers' weights then mean the same at every batch size.
    loss_scale: str = "batch_mean"

    # --- optimisation ---------------------------------------------------------------------
    steps: int = 150_000                     # VAE optimizer steps per run
    vae_steps: int = 5                       # bi-level round: VAE steps (repository: bi_level_outer_steps)...
    mine_steps: int = 3                      # ...then statistics-network steps (bi_level_inner_steps)
    # Alternate: the original's inner SGD steps on the attention see only recon, L_sparse and L_ent,
    # which the outer Adam step already minimises.
    bilevel: str = "alternate"
    inner_steps: int = 3                     # bilevel inner_attention: SGD steps on the cross-attention...
    inner_lr: float = 0.01                   # ...at this learning rate (this project's reading of the original)
    batch_size: int = 64
    lr: float = 1e-4
    mine_lr: float = 1e-4
    mine_ema_rate: float = 0.01              # moving average of E_Q[e^T] (Belghazi et al. 2018, eq. 12)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    # No weight decay, LR decay or clipping: as the λβ study, so the families share an optimiser.
    weight_decay: float = 0.0
    lr_decay: float = 1.0                    # factor per epoch of the training images
    grad_clip: float = 0.0                   # 0: no clipping

    # --- logging, checkpoints, evaluation --------------------------------------------------
    loss_window: int = 5_000
    log_interval: int = 5_000
    checkpoint_interval: int = 5_000
    metric_train_points: int = 10_000        # MIG, JEMMIG, IRS, I_m, SAP fit (encoder means)
    metric_test_points: int = 5_000          # SAP scoring
    sampled_metric_train: int = 10_000       # Z-diff / Z-min Var training points (64-image batches each)
    sampled_metric_eval: int = 5_000         # Z-diff / Z-min Var evaluation points
    sampled_metric_batch: int = 64           # images (pairs for Z-diff) per Z-diff / Z-min Var point
    num_bins: int = 20
    heldout_fraction: float = 0.01
    heldout_eval_points: int = 5_000
    mine_eval_steps: int = 2_000             # post-hoc MINE of I(part; rest) on the final codes
    traversal_latents: int = 10              # the most informative latents shown in traversal.gif
    sample_interval: int = 5_000             # progress images (reconstructions, prior samples); 0: none

    # --- where and how ----------------------------------------------------------------------
    results_dir: str | None = None           # default: mine_results (demo_results/mine_results with --demo)
    device: str = "auto"
    figures: bool = True
    demo: bool = False
    preset: str = ""                         # "original": MINE_ORIGINAL_PRESET was applied


# The MINE demo runs the ablation (7 variants × 2 seeds) on the Shapes3D stand-in (the
# dataset of a table an earlier README of the original showed) in minutes on a 2-core CPU. As in
# the λβ demo, lr is 10x and batches a quarter of the defaults (a few hundred steps at
# lr 1e-4 leave the mean image). The model shrinks to 10 latents so that each latent
# gets its own MINE estimator (I(z_i; z_rest)) and the metrics read the same
# 10-dimensional code as the λβ demo; it keeps the original's 10 factor queries, so
# the ablation's 5- and 15-factor variants differ from the full model. The sampled metrics
# (Z-diff, Z-min Var) use 300 + 150 points of 16 images instead of 10,000 + 5,000 of 64:
# with the defaults they encode ~3 M images, about 40 minutes per run on this CPU.
MINE_DEMO_OVERRIDES = dict(
    datasets=("shapes3d",),
    source="standin",
    variants=MINE_VARIANTS,
    seeds=(0, 1),
    latent_dim=10,
    num_factors=10,
    attention_dim=32,
    factor_dim=16,
    mine_hidden_dim=64,
    mine_parts=10,
    gaussian_fit_samples=256,
    steps=500,
    batch_size=16,
    lr=1e-3,
    mine_lr=1e-3,
    loss_window=100,
    log_interval=100,
    checkpoint_interval=100,
    metric_train_points=2_000,
    metric_test_points=1_000,
    sampled_metric_train=300,
    sampled_metric_eval=150,
    sampled_metric_batch=16,
    heldout_eval_points=500,
    mine_eval_steps=300,
    sample_interval=100,
)

# The original's loss scale, optimiser, length, seed and objective (--preset original;
# docs/mine.md). 1,125,000 steps are its 150 epochs of Shapes3D at batch 64; the LR decay
# counts epochs of whatever dataset runs. --demo on top keeps the loss scale, weight decay,
# decay, clipping and objective, and shrinks the rest.
MINE_ORIGINAL_PRESET = dict(
    preset="original",
    lr=1e-3,
    weight_decay=1e-4,
    lr_decay=0.95,
    grad_clip=1.0,
    steps=1_125_000,
    seeds=(1265,),
    loss_scale="batch_sum",
    mine_target="factor",
    bilevel="inner_attention",
    inner_steps=3,
    inner_lr=0.01,
)

# The evidence preset (--preset evidence; docs/mine_evidence.md): does the mechanism do
# anything? The three variants that switch it off part by part, three seeds, on the
# dSprites stand-in, whose factors differ most in size (3 to 40 classes), with the demo's
# model and optimiser. scripts/mine_budget.py measured the steps and weights
# (docs/mine_budget.csv, 2 seeds): with the default weights the attention had lost only
# 8 % ± 4 % of its uniform entropy after 2,000 steps (the reconstruction's gradient into
# the attention was 2,000-4,000x the weighted regularisers'); with L_sparse 1.0, L_ent 0.5 and
# temperature 0.25 every seed had left uniform by step 250 (96 % removed at 2,000), the
# cheapest measured budget. One setting per line, with its reason:
MINE_EVIDENCE_PRESET = dict(
    preset="evidence",
    datasets=("dsprites",),        # factors of 3, 6, 40, 32 and 32 classes: complexities that differ
    source="standin",              # no downloads
    variants=("full", "no_mine", "no_sparse"),   # the mechanism, without MINE, without L_sparse
    seeds=(0, 1, 2),               # three seeds: the fewest that give a seed std
    num_factors=5,                 # one query per dSprites factor
    attention_reg_weight=1.0,      # 10x the default L_sparse: at 0.1 its gradient is ~1/4000 of the reconstruction's
    entropy_reg_weight=0.5,        # 10x the default L_ent, likewise
    attention_temperature=0.25,    # a sharper softmax: the regularisers' gradient at uniform grows with 1/T
    steps=1000,                    # 4x the first step at which every budget seed had left uniform (250)
)
# What the evidence preset shares with the demo: the model and optimiser sizes.
MINE_EVIDENCE_BASE = {k: v for k, v in MINE_DEMO_OVERRIDES.items()
                      if k not in ("datasets", "variants", "seeds", "steps", "sample_interval")}

MINE_RUN_DEFINING = ("source", "mpi3d_variant", "latent_dim", "num_factors", "factor_dim", "attention_dim",
                     "attention_temperature",
                     "mine_hidden_dim", "mine_parts", "kl_weight", "disentanglement_weight",
                     "attention_reg_weight", "entropy_reg_weight", "gaussian_fit_samples", "steps", "vae_steps",
                     "mine_steps", "batch_size", "lr", "mine_lr", "mine_ema_rate", "adam_betas", "adam_eps",
                     "loss_window", "heldout_fraction", "metric_train_points", "metric_test_points",
                     "sampled_metric_train", "sampled_metric_eval", "sampled_metric_batch", "num_bins",
                     "heldout_eval_points", "mine_eval_steps", "mine_target", "bilevel", "inner_steps", "inner_lr",
                     "loss_scale", "weight_decay", "lr_decay", "grad_clip")
# Each family's run-defining settings, by the stage name of its runs (runs.RunSpec.stage).
STAGE_RUN_DEFINING = {"beta": RUN_DEFINING, "lambda": LAMBDA_RUN_DEFINING, "mine": MINE_RUN_DEFINING}
MINE_ALIASES = {"datasets": ["--dataset"], "seeds": ["--seed"], "variants": ["--variant"]}


def validate_mine(cfg: MineConfig) -> MineConfig:
    """Raise ConfigError naming the first invalid MINE-VAE setting and the fix."""
    _check_common(cfg, lists=("datasets", "variants", "seeds"), datasets=MINE_DATASETS,
                  positive=("latent_dim", "num_factors", "factor_dim", "attention_dim", "mine_hidden_dim",
                            "mine_parts", "gaussian_fit_samples", "steps", "vae_steps", "batch_size",
                            "loss_window", "log_interval", "checkpoint_interval", "metric_train_points",
                            "metric_test_points", "sampled_metric_train", "sampled_metric_eval", "num_bins",
                            "mine_eval_steps", "traversal_latents", "inner_steps"))
    for v in cfg.variants:
        if v not in MINE_VARIANTS:
            bad("variants", f"has unknown variant {v!r}: choose from {', '.join(MINE_VARIANTS)}")
    for name, choices in (("mine_target", MINE_TARGETS), ("bilevel", MINE_BILEVEL), ("loss_scale", MINE_LOSS_SCALES),
                          ("preset", MINE_PRESETS)):
        if getattr(cfg, name) not in choices:
            bad(name, f"is {getattr(cfg, name)!r}: choose from {', '.join(repr(c) for c in choices)}")
    if not 0 < cfg.inner_lr < 1:
        bad("inner_lr", f"is {cfg.inner_lr}: use a learning rate in (0, 1), e.g. 0.01")
    if not math.isfinite(cfg.weight_decay) or cfg.weight_decay < 0:
        bad("weight_decay", f"is {cfg.weight_decay}: must be finite and >= 0, e.g. 1e-4")
    if not 0 < cfg.lr_decay <= 1:
        bad("lr_decay", f"is {cfg.lr_decay}: use a factor per epoch in (0, 1], 1 for none")
    if not math.isfinite(cfg.grad_clip) or cfg.grad_clip < 0:
        bad("grad_clip", f"is {cfg.grad_clip}: use a norm > 0, or 0 for no clipping")
    if cfg.bilevel == "inner_attention" and cfg.grad_clip == 0:
        bad("bilevel", "inner_attention needs --grad-clip > 0 (e.g. 1.0, the original's): unclipped SGD steps at "
                        "--inner-lr on the summed-pixel reconstruction diverge")
    if cfg.sample_interval < 0:
        bad("sample_interval", f"is {cfg.sample_interval}: use a number of steps >= 0 (0: no progress images)")
    if cfg.mine_steps < 0:
        bad("mine_steps", "must be >= 0")
    if not 2 <= cfg.mine_parts <= cfg.latent_dim:
        bad("mine_parts", f"is {cfg.mine_parts}: split the {cfg.latent_dim} latents into 2..latent_dim parts")
    if cfg.sampled_metric_batch < 2:
        bad("sampled_metric_batch", "must be >= 2: Z-diff and Z-min Var need pairs and variances")
    if cfg.batch_size < 2:
        bad("batch_size", "must be >= 2: MINE's marginal samples shuffle within the batch")
    for name in ("kl_weight", "disentanglement_weight", "attention_reg_weight", "entropy_reg_weight"):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v < 0:
            bad(name, f"is {v}: must be finite and >= 0")
    if not 0 < cfg.mine_lr < 1:
        bad("mine_lr", f"is {cfg.mine_lr}: use a learning rate in (0, 1), e.g. 1e-4")
    if not 0 < cfg.mine_ema_rate <= 1:
        bad("mine_ema_rate", f"is {cfg.mine_ema_rate}: use a rate in (0, 1], e.g. 0.01")
    if not (math.isfinite(cfg.attention_temperature) and cfg.attention_temperature > 0):
        bad("attention_temperature", f"is {cfg.attention_temperature}: use a temperature > 0 (1: plain attention)")
    return cfg


def add_mine_config_arguments(parser: argparse.ArgumentParser) -> None:
    helps = {**HELP, "preset": MINE_PRESET_HELP, "demo": demo_help(MINE_DEMO_OVERRIDES),
             "datasets": f"datasets to run (choose from {', '.join(MINE_DATASETS)})",
             "lr": "Adam learning rate of the VAE, in (0, 1)",
             "steps": "VAE optimizer steps per run (part of a run's identity)"}
    add_dataclass_arguments(parser, MineConfig, helps, MINE_ALIASES,
                            "settings (config.py MineConfig fields; defaults are the MINE-VAE repository's)")


def mine_from_args(args: argparse.Namespace, base: MineConfig | None = None, ablation: bool = False) -> MineConfig:
    """MineConfig from parsed flags: the named preset (if --preset), the demo preset (if
    --demo), then the ablation's variants (if --ablation), then explicit flags."""
    base = base or MineConfig()
    given = given_settings(args, MineConfig)
    preset = given.get("preset", base.preset)
    if preset == "original":
        base = base.replace(**MINE_ORIGINAL_PRESET)
    elif preset == "evidence":
        base = base.replace(**{**MINE_EVIDENCE_BASE, **MINE_EVIDENCE_PRESET})
    elif preset:
        bad("preset", f"is {preset!r}: choose from {', '.join(repr(c) for c in MINE_PRESETS)}")
    if given.get("demo", base.demo):
        base = base.replace(**MINE_DEMO_OVERRIDES, demo=True)
    if ablation:
        base = base.replace(variants=MINE_VARIANTS)
    return validate_mine(base.replace(**given))


def mine_from_dict(values: dict) -> MineConfig:
    """MineConfig from a saved JSON dict (a run's config.json); unknown keys are an error."""
    return validate_mine(settings_from_dict(MineConfig, values))


def mine_variant_config(cfg: MineConfig, variant: str) -> MineConfig:
    """The settings one ablation variant trains with: ``cfg`` with the variant's changes
    (MINE_VARIANT_SETTINGS; the switch variants change none). A run's config.json keeps
    ``cfg`` and names the variant, so the variant's settings follow from its name."""
    if variant not in MINE_VARIANTS:
        bad("variants", f"has unknown variant {variant!r}: choose from {', '.join(MINE_VARIANTS)}")
    return validate_mine(cfg.replace(**MINE_VARIANT_SETTINGS.get(variant, {})))
