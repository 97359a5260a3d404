"""The run pipeline every family's runs take: a run's identity, folder, lock and resume
(runs), the one training loop (loop), what a family plugs in and the grid it runs (family),
the Slurm and submitit launcher (launcher), and the λβ-VAE's family on it: the packed
engine (engine), its trainee (training), the scoring of a run (evaluation) and the study's
two stages (study)."""
