"""The MINE disentangling VAE, the second model family (main_mine.py; docs/mine.md): the MINE
estimator of Belghazi et al. 2018 (estimator), its grid, run state and bi-level steps
(study), what it reports (report) and its evidence page (evidence)."""
