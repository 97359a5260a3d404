"""The machinery behind the root's faces (config, datasets, models, losses, metrics,
utils, visualizations and the main_*.py entry scripts), one folder per concern:

- ``data``: the ground-truth datasets' factor grids, the readers of the real files,
  their caches, and the procedural stand-ins;
- ``pipeline``: a run's lifecycle, the one training loop, the launcher, and the λβ-VAE's
  packed engine, training, evaluation and two-stage study;
- ``analysis``: tables, figures and pages made from results trees, and the importer of the
  original code's published runs;
- ``mine``: the MINE disentangling VAE (the second model family);
- ``linear``: the linear-Gaussian theory, solved exactly;
- ``metrics``: one module per metric family behind ``metrics.py``;
- ``settings``: how a settings dataclass of ``config.py`` becomes flags and JSON.

The package is not installed: the entry scripts, the tests, the benchmarks and the
scripts run from the checkout's root, where both the faces and ``lbvae`` import.
"""
