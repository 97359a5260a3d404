"""Stage 2 of the λβ-VAE study: continue every β checkpoint with an L2 term.

Vu, Wan & Wei (2026). Each β-VAE run of main_beta.py is trained for lambda_steps
more steps with a fresh Adam on BCE + β·KL + λ·MSE for every λ of the grid (λ = 0 is
the control: the same extra steps without the L2 term). Evaluates MIG, SAP and I_m
and renders λ × β heatmaps and percent-change tables against (β=1, λ=0) into
lambda_betavae_results/.

    python main_lambda.py --demo                # after python main_beta.py --demo
    python main_lambda.py                       # after python main_beta.py

On a Slurm cluster, right after submitting the β stage: the λ jobs wait for the β jobs
that write the checkpoints they continue (or it names the checkpoints nothing will write).

    python main_lambda.py --launcher slurm --partition P --gpus-per-job 1 --runs-per-job K
"""
from lbvae.pipeline import study

if __name__ == "__main__":
    study.main("lambda", description=__doc__.split("\n\n")[0])
