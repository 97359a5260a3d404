"""The evidence preset's pieces: per-latent KL and active latents, the preset's settings,
the MI bias floor and the collapse figure."""
import argparse
import math

import numpy as np
import pytest
import torch

import metrics
from config import EVIDENCE_OVERRIDES, PRESETS, Config, ConfigError, add_config_arguments, from_args
from lbvae.pipeline.evaluation import ACTIVE_KL_NATS, kl_per_latent, latent_columns
from lbvae.pipeline.runs import stage_root
from models import BetaVAE
from tiny_data import Squares

IGNORED = [1, 4, 7]


def model_ignoring(latents, latent_dim=10):
    """A BetaVAE whose encoder outputs mu = 0, logvar = 0 (the prior) for ``latents``
    whatever the image, and a mean 2 away from the prior's for the others."""
    torch.manual_seed(0)
    model = BetaVAE(1, latent_dim)
    with torch.no_grad():
        for layer in (model.encoder.fc_mu, model.encoder.fc_logvar):
            layer.weight[latents] = 0
            layer.bias[latents] = 0
        others = [d for d in range(latent_dim) if d not in latents]
        model.encoder.fc_mu.bias[others] += 2.0
    return model


def test_ignored_latents_have_zero_kl_and_are_inactive():
    images = Squares().images(np.arange(40))
    kl = kl_per_latent(model_ignoring(IGNORED), images, torch.device("cpu"), batch_size=16)
    assert kl.shape == (10,)
    assert np.all(kl[IGNORED] == 0)
    others = np.setdiff1d(np.arange(10), IGNORED)
    assert np.all(kl[others] > ACTIVE_KL_NATS)
    cols = latent_columns(kl)
    assert cols["active_latents"] == 10 - len(IGNORED)
    assert cols["i_xz_upper"] == pytest.approx(kl.sum())


def test_kl_per_latent_matches_the_closed_form_of_one_latent():
    """A model with mu = m, logvar = v for one latent: KL = (m² + e^v − 1 − v) / 2 exactly."""
    model = model_ignoring(list(range(10)))
    with torch.no_grad():
        model.encoder.fc_mu.bias[3], model.encoder.fc_logvar.bias[3] = 1.5, -0.7
    kl = kl_per_latent(model, Squares().images(np.arange(5)), torch.device("cpu"))
    assert kl[3] == pytest.approx(0.5 * (1.5 ** 2 + np.exp(-0.7) - 1 + 0.7), rel=1e-6)
    assert latent_columns(kl)["active_latents"] == 1


def parse(argv, stage="beta"):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return from_args(parser.parse_args(argv), stage=stage)


@pytest.mark.parametrize("stage", ["beta", "lambda"])
def test_evidence_preset_resolves_to_valid_settings(stage):
    cfg = parse(["--preset", "evidence"], stage)
    assert cfg.preset == "evidence" and not cfg.demo and cfg.source == "standin"
    assert max(cfg.betas) >= 16 and {0.0, 8.0} <= set(cfg.lambdas) and len(cfg.seeds) >= 3
    assert 1.0 in cfg.betas and 0.0 in cfg.lambdas          # the (β = 1, λ = 0) baseline
    assert set(cfg.betas) <= set(EVIDENCE_OVERRIDES["betas"])   # λ runs continue β runs of the preset
    # its own results folder: never mixed with the demo's or the real study's
    assert stage_root(cfg, "r").parts[0] == PRESETS["evidence"][2] != PRESETS["demo"][2]
    assert parse(["--preset", "evidence", "--steps", "7"], stage).steps == 7     # flags given win


def test_demo_flag_is_the_demo_preset():
    assert parse(["--demo"]) == parse(["--preset", "demo"])
    assert parse(["--demo"], "lambda") == parse(["--preset", "demo"], "lambda")
    assert parse([]) == Config()


@pytest.mark.parametrize("argv, needle", [(["--preset", "paper"], "--preset"),
                                          (["--demo", "--preset", "evidence"], "--demo")])
def test_unknown_or_conflicting_preset_is_named(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        parse(argv)


def test_shuffled_floor_is_near_zero_for_independent_and_below_true_mi():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 5, size=(2000, 2))
    codes = np.stack([factors[:, 0] + rng.normal(0, 0.1, 2000), rng.normal(size=2000)], 1).astype(np.float32)
    floor = metrics.shuffled_mi_floor(factors, codes, num_bins=20)
    mi = metrics.mutual_info_matrix(factors, codes, num_bins=20)
    assert floor.shape == mi.shape == (2, 2)
    assert floor[0, 0] < 0.1 * mi[0, 0]                 # the link is broken by the shuffle
    assert np.all(floor > 0) and np.all(floor < 0.05)   # the plug-in bias: positive, small at n = 2000


def tiny_table():
    """Results rows of one dataset: β 1, 8, 32 × λ 0, 8 × 3 seeds, numbers from a seeded rng."""
    rng = np.random.default_rng(0)
    return [{"status": "done", "dataset": "dsprites", "beta": b, "lambda": lam, "seed": s,
             "active_latents": int(rng.integers(0, 10)), "i_xz_upper": rng.uniform(0, 20),
             "i_m": rng.uniform(0, 3), "mig": rng.uniform(0, 0.3), "sap": rng.uniform(0, 0.2),
             "train_window_nll": rng.uniform(100, 2000)}
            for b in (1.0, 8.0, 32.0) for lam in (0.0, 8.0) for s in range(3)]


def test_collapse_figure_is_drawn_from_a_tiny_table(tmp_path):
    import imageio.v3 as iio

    import visualizations as vis
    path = tmp_path / "collapse_across_datasets.png"
    vis.collapse_figure(tiny_table(), path)
    image = iio.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and path.stat().st_size < 300_000   # a small PNG


def test_collapse_figure_draws_one_line_per_lambda_with_its_seed_spread(tmp_path, monkeypatch):
    import visualizations as vis
    drawn = []
    real = vis.plt.Axes.plot
    monkeypatch.setattr(vis.plt.Axes, "plot", lambda ax, *a, **k: drawn.append((a, k)) or real(ax, *a, **k))
    rows = tiny_table()
    vis.collapse_figure(rows, tmp_path / "c.png")
    assert len(drawn) == 2 * len(vis.COLLAPSE_METRICS)               # λ = 0 and λ = 8 in every panel
    (x, y), _ = drawn[2 * [k for k, _ in vis.COLLAPSE_METRICS].index("mig")]
    expected = [np.mean([r["mig"] for r in rows if r["beta"] == b and r["lambda"] == 0.0]) for b in x]
    assert np.allclose(y, expected)


def test_a_collapse_panel_with_nothing_to_show_says_so_on_the_figure(tmp_path, monkeypatch):
    import warnings

    import visualizations as vis
    figures = []
    monkeypatch.setattr(vis, "_save_figure", lambda fig, path: figures.append(fig))
    rows = [{k: v for k, v in r.items() if k not in ("active_latents", "i_xz_upper")} for r in tiny_table()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # matplotlib's empty-legend warning fails the test
        vis.collapse_figure(rows, tmp_path / "c.png")
    first = figures[0].axes[0]
    assert [t.get_text() for t in first.texts] == ["no finished run\nreports active_latents"]
    assert first.get_legend() is None


def test_heatmap_greys_cells_within_one_seed_std_of_the_baseline():
    import visualizations as vis
    mean = np.array([[1.0, 1.05, 3.0]])
    std = np.array([[0.1, 0.02, 0.1]])
    assert vis.within_noise(mean, std, (0, 0)).tolist() == [[True, True, False]]   # the baseline's own std counts
    assert not vis.within_noise(mean, np.full_like(mean, np.nan), (0, 0)).any()  # one seed: no claim either way


@pytest.mark.parametrize("values, text", [([1527.0, 1530.0], ["1527", "1530"]), ([0.034, 0.031], ["0.0340", "0.0310"])])
def test_heatmap_numbers_tell_close_cells_apart(values, text):
    import visualizations as vis
    digits = vis.panel_digits(values)
    assert [f"{v:.{digits}f}" for v in values] == text


def test_lambda_heatmaps_and_boxplots_draw_from_a_tiny_table(tmp_path):
    import visualizations as vis
    vis.lambda_heatmaps(tiny_table(), tmp_path / "h.png")
    vis.metric_boxplots([r for r in tiny_table() if r["lambda"] == 0.0], tmp_path / "b.png")
    assert (tmp_path / "h.png").stat().st_size > 0 and (tmp_path / "b.png").stat().st_size > 0


def effect_rows(sap_32_lam0_shift: float, std: float):
    """λ-stage rows where SAP at (β=32, λ=0) sits ``sap_32_lam0_shift`` from every other cell,
    each cell's three seeds spread by ``std``."""
    rows = []
    for b in (1.0, 8.0, 32.0):
        for lam in (0.0, 8.0):
            centre = 0.2 + (sap_32_lam0_shift if (b, lam) == (32.0, 0.0) else 0.0)
            for s, d in enumerate((-std, 0.0, std)):
                rows.append({"status": "done", "dataset": "dsprites", "beta": b, "lambda": lam, "seed": s,
                             "sap": centre + d, "mig": 0.1 + d, "i_m": 1.0 + d, "active_latents": 5,
                             "i_xz_upper": 10.0, "train_window_nll": 500.0})
    return rows


@pytest.mark.parametrize("shift, std, expected", [(-0.1, 0.01, True), (-0.1, 0.2, False), (+0.1, 0.01, False)])
def test_paper_effect_appears_only_in_its_direction_and_beyond_the_seed_std(shift, std, expected):
    from lbvae.analysis import evidence
    _, seen = evidence.paper_table(effect_rows(shift, std), "dsprites")
    names = [(k, b, lam) for k, b, lam, _, _, what in evidence.PAPER_EFFECTS if not what.startswith("reference")]
    assert seen[names.index(("sap", 32.0, 0.0))] is expected
    # λ = 8 at β = 32 repairs SAP exactly when λ = 0 fell there beyond the noise
    assert seen[names.index(("sap", 32.0, 8.0))] is expected


def test_change_table_gives_percent_change_and_seed_std_per_cell():
    from lbvae.analysis import evidence
    rows = effect_rows(-0.1, 0.01)
    lines = evidence.change_table(rows, "dsprites")
    sap = [ln for ln in lines if ln.startswith("| SAP | 32 | 0 |")]
    base = np.mean([r["sap"] for r in rows if (r["beta"], r["lambda"]) == (1.0, 0.0)])
    cell = np.mean([r["sap"] for r in rows if (r["beta"], r["lambda"]) == (32.0, 0.0)])
    assert len(sap) == 1 and f"{100 * (cell - base) / base:+.1f} %" in sap[0] and "yes" in sap[0]


def test_report_page_is_written_from_results_tables(tmp_path):
    """docs/evidence.md from a λ stage's rows and a β stage's results.csv, into a temporary docs folder."""
    import visualizations as vis
    from lbvae.analysis import evidence
    from lbvae.pipeline.runs import RESULT_COLUMNS
    from utils import write_csv
    beta_root, lambda_root, docs = tmp_path / "beta", tmp_path / "lambda", tmp_path / "docs"
    lam_rows = effect_rows(-0.1, 0.01)
    beta_rows = [{**r, "stage": "beta"} for r in lam_rows if r["lambda"] == 0.0]
    beta_root.mkdir()
    write_csv(beta_root / "results.csv", beta_rows, RESULT_COLUMNS)
    vis.collapse_figure(beta_rows, beta_root / "collapse_across_datasets.png")
    cfg = parse(["--preset", "evidence"], "lambda")
    page = evidence.write_report(lam_rows, lambda_root, beta_root, cfg, docs=docs).read_text()
    assert "| SAP | 32 | 0 |" in page and "effects appeared" in page
    assert "![" in page and (docs / "evidence" / "collapse_beta_stage.png").exists()
    assert "evidence/collapse_lambda_stage.png" not in page          # not drawn: not shown


@pytest.mark.parametrize("figure", ["lambda_heatmaps", "percent_change_heatmaps"])
def test_heatmaps_mask_cells_within_noise_and_keep_real_effects(tmp_path, monkeypatch, figure):
    """SAP at (β=32, λ=0) is 10 seed stds below the baseline; every other cell equals it."""
    import visualizations as vis
    from lbvae.analysis import report as analysis
    shown = []
    real = vis.plt.Axes.imshow
    monkeypatch.setattr(vis.plt.Axes, "imshow", lambda ax, a, *args, **k: shown.append(a) or real(ax, a, *args, **k))
    draw = vis.lambda_heatmaps if figure == "lambda_heatmaps" else analysis.percent_change_heatmaps
    draw(effect_rows(-0.1, 0.01), tmp_path / "h.png")
    sap = shown[[k for k, _ in vis.STUDY_METRICS].index("sap")]
    mask = np.ma.getmaskarray(sap)                  # rows λ = 0, 8; columns β = 1, 8, 32
    assert not mask[0, 2]                           # (β=32, λ=0): a real effect, coloured
    assert not mask[0, 0]                           # the baseline itself, coloured
    assert mask[1, 0] and mask[1, 2] and mask[0, 1]   # equal to the baseline: greyed out


@pytest.mark.parametrize("argv, written", [(["--preset", "evidence"], True), (["--demo"], False),
                                           (["--preset", "evidence", "--results-dir", "elsewhere"], False)])
def test_lambda_summary_rewrites_the_page_for_the_evidence_preset_only(tmp_path, monkeypatch, argv, written):
    from lbvae.analysis import evidence
    from lbvae.pipeline import study
    calls = []
    monkeypatch.setattr(evidence, "write_report", lambda *a, **k: calls.append(a))
    monkeypatch.chdir(tmp_path)
    cfg = parse(argv, "lambda").replace(figures=False)
    study.summarize([], [], cfg, "lambda")
    assert bool(calls) is written
    if written:     # from the λ stage's folder, with the β stage's folder next to it
        assert calls[0][1] == study.stage_root(cfg, "lambda") and calls[0][2] == study.stage_root(cfg, "beta")


def test_paper_comparison_marks_sign_and_size_against_the_seed_spread():
    from lbvae.analysis import evidence
    rows = effect_rows(-0.1, 0.01)                # SAP at (32, 0): 0.1 below a 0.2 baseline, std 0.01
    for r in rows:                                 # MIG at (32, 0) falls too: the paper's rises (+224.5 %)
        if (r["beta"], r["lambda"]) == (32.0, 0.0):
            r["mig"] -= 0.05
    lines, counts = evidence.paper_comparison(rows, "dsprites")
    row = {tuple(ln.split(" | ")[:3]): ln for ln in lines[2:]}
    sap = row[("| SAP", "32", "0")]
    assert "-29.6 %" in sap and "-50.0 % ± 5.0 % (n=3)" in sap and "**same**" in sap and "paper smaller" in sap
    mig = row[("| MIG", "32", "0")]
    assert "+224.5 %" in mig and "**opposite**" in mig
    assert "undecided" in row[("| SAP", "8", "0")]                      # equal to the baseline
    # every cell of this run where the paper has a number, both λ rows, all four metrics
    assert len(row) == 4 * 5 and counts == {"same": 1, "opposite": 1, "undecided": 18}
    one_seed = [r for r in rows if r["seed"] == 0]
    _, counts = evidence.paper_comparison(one_seed, "dsprites")
    assert counts == {"no spread (n = 1)": 20}
    assert evidence.paper_comparison(rows, "mpi3d")[1] == {}           # no paper numbers: no verdicts


@pytest.mark.parametrize("run, spread, paper, expected", [
    (+20.0, 5.0, +18.6, ("same", "within ± 1 sd")), (+20.0, 5.0, +28.8, ("same", "paper larger")),
    (+20.0, 5.0, +12.0, ("same", "paper smaller")), (-20.0, 5.0, +117.8, ("opposite", "paper larger")),
    (+3.0, 5.0, +45.9, ("undecided", "paper larger")), (+3.0, 5.0, +1.0, ("undecided", "within ± 1 sd")),
    (+3.0, math.nan, +1.0, ("no spread (n = 1)", "—"))])
def test_agreement_by_sign_and_size(run, spread, paper, expected):
    from lbvae.analysis import evidence
    assert evidence.agreement(run, spread, paper) == expected


def test_the_page_compares_with_its_own_dataset_and_labels_other_datasets_context(tmp_path):
    from lbvae.analysis import evidence
    from lbvae.pipeline.runs import RESULT_COLUMNS
    from utils import write_csv
    beta_root, lambda_root = tmp_path / "beta", tmp_path / "lambda"
    beta_root.mkdir()
    lam_rows = effect_rows(-0.1, 0.01)
    write_csv(beta_root / "results.csv", [{**r, "stage": "beta"} for r in lam_rows if r["lambda"] == 0.0],
              RESULT_COLUMNS)
    page = evidence.write_report(lam_rows, lambda_root, beta_root, parse(["--preset", "evidence"], "lambda"),
                                 docs=tmp_path / "docs").read_text()
    assert "| I_m | 1 | 8 | baseline" not in page and "| I_m | 0 | baseline | +18.6 % |" in page
    assert "another dataset: context, not a test of dSprites" in page
    assert "**2 of 3 dSprites effects appeared.**" in page   # SAP fall and repair, mechanism; MPI3D rows not counted
