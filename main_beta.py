"""Stage 1 of the λβ-VAE study: β-VAE baselines over a grid of datasets, β and seeds.

Vu, Wan & Wei, "Mutual Information Collapse Explains Disentanglement Failure in
β-VAEs" (2026). Trains a conv VAE with BCE + β·KL for every (dataset, β, seed),
evaluates MIG, SAP and I_m, and renders reconstructions, traversal GIFs, MI heatmaps
and boxplots across datasets into betavae_results/.

    python main_beta.py --demo                  # stand-in data, minutes on a CPU
    python main_beta.py                         # the paper's full grid on the real files
    python main_beta.py --beta 1 8 --seeds 0 1 --steps 2000 --datasets dsprites
    python main_beta.py --eval-only betavae_results/dsprites/beta_8/seed_0/checkpoint.pt

On a Slurm cluster (lbvae/pipeline/launcher.py): the same grid as a submitit job array of K runs per job,
then the same command with --status to watch it and --collect to redraw the figures.

    python main_beta.py --launcher slurm --partition P --gpus-per-job 1 --runs-per-job K
    python main_beta.py --status                # done / running / failed / pending runs
    python main_beta.py --collect               # results.csv and figures from what exists
"""
from lbvae.pipeline import study

if __name__ == "__main__":
    study.main("beta", description=__doc__.split("\n\n")[0])
