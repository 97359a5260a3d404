"""The linear-Gaussian λβ-VAE solved exactly (main_linear.py; docs/linear.md): the closed-form
losses, metrics and solvers (solver), the resumable β × λ grid (grid) and its tables and
figures (report)."""
