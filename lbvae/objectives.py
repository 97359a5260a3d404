"""The disentangling objectives of the model zoo (docs/objectives.md) as the study names and sweeps
them: each one's title, results-tree name, swept weight, default grid and reference cell.
Torch-free, so config.py and the figures read it; the losses are losses.regularizer."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    """A disentangling objective of the zoo (docs/objectives.md; its loss is losses.regularizer)."""
    title: str                               # its name in figures and tables
    root: str                                # its stage roots: <root>_results, lambda_<root>_results
    weight: str                              # the weight its grid sweeps (losses.SWEPT_WEIGHT)
    symbol: str                              # that weight in figure labels and run names
    grid: tuple[float, ...]                  # disentanglement_lib's sweep of it (unsupervised_study_v1)
    baseline: float                          # the grid's least regularised value: the λ stage's reference cell
    settings: tuple[str, ...] = ()           # the Config fields of its other, fixed weights


# The β-VAE's grid is `betas` (the paper's); every other objective sweeps `sweep`, by default
# disentanglement_lib's values. The λ stage's reference cell is the least regularised weight
# with λ = 0: the plain VAE for β = 1, the weakest pressure otherwise (AnnealedVAE: most capacity).
OBJECTIVES = {
    "beta": Objective("β-VAE", "betavae", "beta", "β", (1.0, 4.0, 8.0, 16.0, 32.0), 1.0),
    "annealed": Objective("AnnealedVAE", "annealedvae", "c_max", "C_max", (5.0, 10.0, 25.0, 50.0, 75.0, 100.0),
                          100.0, ("annealed_gamma", "iteration_threshold")),
    "tcvae": Objective("β-TCVAE", "betatcvae", "beta", "β", (1.0, 2.0, 4.0, 6.0, 8.0, 10.0), 1.0),
    "dip_i": Objective("DIP-VAE-I", "dipvae_i", "lambda_od", "λ_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0), 1.0,
                       ("lambda_d_factor",)),
    "dip_ii": Objective("DIP-VAE-II", "dipvae_ii", "lambda_od", "λ_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0), 1.0,
                        ("lambda_d_factor",)),
    "factor": Objective("FactorVAE", "factorvae", "gamma", "γ", (10.0, 20.0, 30.0, 40.0, 50.0, 100.0), 10.0,
                        ("discriminator_lr", "discriminator_adam_betas")),
}


def weight_symbol(objective: str | None) -> str:
    """The swept weight as figures and run names write it (β, C_max, λ_od); β for rows that
    do not record an objective (made before the zoo: β-VAE runs)."""
    return OBJECTIVES[objective].symbol if objective in OBJECTIVES else "β"


def rows_objective(rows: list[dict]) -> str:
    """The objective of a results table's rows (one per results tree); "beta" if unrecorded."""
    names = {r.get("objective") for r in rows} - {None, ""}
    return names.pop() if len(names) == 1 else "beta"


# DIP-VAE's λ_d = lambda_d_factor · λ_od: disentanglement_lib's study uses 10 for DIP-VAE-I and 1 for II.
LAMBDA_D_FACTORS = {"dip_i": 10.0, "dip_ii": 1.0}
