"""The MINE disentangling VAE: cross-attention capacity allocation and a MINE redundancy penalty.

Trains a conv VAE whose latent capacity is allocated across learned factor queries by
cross-attention, with the redundancy between latent parts estimated by MINE (Belghazi
et al. 2018) and penalised; evaluates Z-diff, Z-min Var, IRS, JEMMIG and MIG and
renders latent traversals into mine_results/ (docs/mine.md).

    python main_mine.py --demo                      # the ablation on the Shapes3D stand-in, minutes on a CPU
    python main_mine.py --ablation                  # full / no_mine / no_sparse / no_ent on the real files
    python main_mine.py --datasets celeba           # CelebA: training and traversals, no factor metrics
    python main_mine.py --eval-only mine_results/shapes3d/full/seed_0/checkpoint.pt
"""
from lbvae.mine import study as mine_study

if __name__ == "__main__":
    mine_study.main(description=__doc__.split("\n\n")[0])
