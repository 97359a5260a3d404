"""The linear-Gaussian β-VAE and λβ-VAE of Vu, Wan & Wei (2026), solved exactly.

    python main_linear.py            # n ∈ {50, 100}, both solvers, β × λ grid, 50 solutions per cell
    python main_linear.py --demo     # n = 50, a small grid, in about a minute
    python main_linear.py --n 50 --solvers fixed-point --solutions 10 --betas 1 4 --lambdas 0 2
    python main_linear.py --collect  # tables and figures of the cells finished so far

The grid and its resumable solving are lbvae/linear/grid.py, the solvers
lbvae/linear/solver.py, the tables and figures lbvae/linear/report.py; docs/linear.md
explains the model.
"""
from lbvae.linear.grid import main

if __name__ == "__main__":
    main()
