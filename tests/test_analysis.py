"""The λ-stage analysis: percent change, the Pareto set and both scalarisations against
hand-computed values; the figures and pages drawn from a small results table."""
import html
import json
import math
import re
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
from numpy.testing import assert_allclose

import visualizations as vis
from lbvae.analysis import report as analysis
from lbvae.pipeline import runs, study
from utils import read_csv, write_csv

NAN = math.nan


def _row(ds, beta, lam, seed, nll, mig, sap=0.1, i_m=1.0, status="done", origin=None):
    return {"stage": "lambda", "dataset": ds, "source": "standin", "origin": origin, "beta": float(beta),
            "lambda": float(lam), "seed": seed, "steps": 10, "status": status, "train_window_nll": nll,
            "train_window_kl": 5.0, "mig": mig, "sap": sap, "i_m": i_m}


def _read_back(tmp_path, rows):
    """The rows as every analysis function sees them: read back from results.csv."""
    write_csv(tmp_path / "results.csv", rows, runs.RESULT_COLUMNS)
    return read_csv(tmp_path / "results.csv")


@pytest.fixture
def table(tmp_path):
    """dsprites: β {1, 4} × λ {0, 2}, seeds 0-1, the (4, 2) cell missing; MIG's baseline is 0,
    SAP's is negative (|·| in the denominator); a failed run with absurd numbers must not count.
    shapes3d has no β = 1, so no baseline."""
    rows = [
        _row("dsprites", 1, 0, 0, 100.0, 0.0, sap=-0.5), _row("dsprites", 1, 0, 1, 110.0, 0.0, sap=-0.5),
        _row("dsprites", 4, 0, 0, 126.0, 0.2, sap=-0.25), _row("dsprites", 4, 0, 1, 126.0, 0.4, sap=-0.25),
        _row("dsprites", 1, 2, 0, 84.0, 0.1, sap=-1.0), _row("dsprites", 1, 2, 1, 84.0, 0.3, sap=-1.0),
        _row("dsprites", 4, 2, 0, 1e9, 9.0, status="failed"),
        _row("shapes3d", 4, 0, 0, 50.0, 0.1), _row("shapes3d", 4, 2, 0, 40.0, 0.2),
    ]
    return _read_back(tmp_path, rows)


def test_percent_change_against_hand_values(table):
    lambdas, betas, change, base = analysis.percent_change_grid(table, "dsprites", "train_window_nll")
    assert (lambdas, betas, base) == ([0.0, 2.0], [1.0, 4.0], 105.0)
    assert_allclose(change, [[0.0, 100 * 21 / 105], [-20.0, NAN]])          # (4, 2) missing: NaN
    _, _, sap, _ = analysis.percent_change_grid(table, "dsprites", "sap")
    assert_allclose(sap, [[0.0, 50.0], [-100.0, NAN]])                       # divided by |−0.5|
    _, _, mig, base = analysis.percent_change_grid(table, "dsprites", "mig")
    assert base == 0 and np.isnan(mig).all()                                 # zero baseline
    _, _, none, base = analysis.percent_change_grid(table, "shapes3d", "mig")
    assert math.isnan(base) and np.isnan(none).all()                         # no (1, 0) runs

    rows = analysis.percent_change_rows(table)
    said = analysis.no_baseline(vis.OBJECTIVES["beta"])
    assert {r["note"] for r in rows if r["dataset"] == "shapes3d"} == {said}   # said, not dropped
    cell = next(r for r in rows if r["metric"] == "train_window_nll" and r.get("beta") == 1.0 and r["lambda"] == 2.0)
    assert cell["seed_mean"] == 84.0 and cell["percent_change"] == pytest.approx(-20.0)


def test_pareto_set_keeps_ties_and_drops_dominated_points():
    #                 A    B    C    D (= A)  E    F (NaN)
    nll = np.array([1.0, 2.0, 2.0, 1.0, 3.0, NAN])
    mig = np.array([0.5, 0.6, 0.4, 0.5, 0.6, 0.9])
    # C is dominated by A; E by B (equal MIG, higher NLL); identical A and D both stay.
    assert analysis.pareto_mask(nll, mig).tolist() == [True, True, False, True, False, False]


# One missing cell (NLL NaN at (1, 1)): its MIG of 0.9 must not stretch the normalisation.
NLL_GRID = np.array([[10.0, 20.0], [30.0, NAN]])
MIG_GRID = np.array([[0.1, 0.3], [0.5, 0.9]])


@pytest.mark.parametrize("w, weighted, tcheby, best_weighted, best_tcheby", [
    # dN = [0, .5, 1], dM = [1, .5, 0] for cells (0,0), (0,1), (1,0)
    (0.5, [[0.5, 0.5], [0.5, NAN]], [[0.5005, 0.2505], [0.5005, NAN]], [(0, 0), (0, 1), (1, 0)], [(0, 1)]),
    (0.9, [[0.9, 0.5], [0.1, NAN]], [[0.1001, 0.4505], [0.9009, NAN]], [(0, 0)], [(0, 0)]),
    (0.1, [[0.1, 0.5], [0.9, NAN]], [[0.9009, 0.4505], [0.1001, NAN]], [(1, 0)], [(1, 0)]),
])
def test_scalarisations_against_hand_values(w, weighted, tcheby, best_weighted, best_tcheby):
    ws = analysis.weighted_sum(NLL_GRID, MIG_GRID, w)
    tc = analysis.tchebycheff(NLL_GRID, MIG_GRID, w)
    assert_allclose(ws, weighted, atol=1e-12)
    assert_allclose(tc, tcheby, atol=1e-12)
    assert analysis.best_cells(ws, maximise=True) == best_weighted           # a three-way tie at w = 0.5
    assert analysis.best_cells(tc, maximise=False) == best_tcheby


def test_augmentation_breaks_a_tchebycheff_tie_towards_the_nondominated_cell():
    # dN = [0, .5, .5, 1], dM = [1, .2, .4, 0]: at w = .5 cells 1 and 2 share the max term .25,
    # but cell 2 (same NLL, lower MIG) is dominated; only ρ > 0 tells them apart.
    nll, mig = np.array([[0.0, 5.0, 5.0, 10.0]]), np.array([[0.0, 0.8, 0.6, 1.0]])
    assert analysis.best_cells(analysis.tchebycheff(nll, mig, 0.5, rho=0.0), maximise=False) == [(0, 1), (0, 2)]
    assert_allclose(analysis.tchebycheff(nll, mig, 0.5)[0, 1:3], [0.25035, 0.25045], atol=1e-12)
    assert analysis.best_cells(analysis.tchebycheff(nll, mig, 0.5), maximise=False) == [(0, 1)]


def test_degenerate_grids_do_not_divide_by_zero():
    one = analysis.utopia_distances(np.array([[7.0]]), np.array([[0.3]]))
    assert [d.tolist() for d in one] == [[[0.0]], [[0.0]]]
    assert analysis.weighted_sum(np.array([[7.0]]), np.array([[0.3]]), 0.3).tolist() == [[1.0]]
    empty = analysis.tchebycheff(np.array([[NAN]]), np.array([[0.3]]), 0.5)
    assert np.isnan(empty).all() and analysis.best_cells(empty, maximise=False) == []


# --- figures and pages ----------------------------------------------------------------------
@pytest.fixture
def captured(monkeypatch):
    """Every matplotlib figure analysis saves, still open for inspection."""
    figures = []
    save = analysis.vis._save_figure

    def keep(fig, path):
        figures.append(fig)
        fig.canvas.draw()
        save(fig, path)
    monkeypatch.setattr(analysis.vis, "_save_figure", keep)
    return figures


def test_percent_change_heatmap_tells_the_truth(table, tmp_path, captured):
    path = analysis.percent_change_heatmaps(table, tmp_path / "pc.png")
    assert iio.imread(path).ndim == 3
    fig = captured[0]
    nll_ax, sap_ax, mig_ax = (fig.axes[0], fig.axes[2], fig.axes[4])      # column dsprites (colorbars interleave)
    texts = [t.get_text() for t in nll_ax.texts]
    assert texts == ["0.00", "20.00", "-20.00", "NaN"]                     # 2 decimals, NaN shown, λ = 0 first
    assert nll_ax.get_ylim()[0] > nll_ax.get_ylim()[1]                     # row 0 (λ = 0) on top
    assert [t.get_text() for t in nll_ax.get_yticklabels()] == ["0", "2"]
    for ax, bad_change in ((nll_ax, +20.0), (sap_ax, -100.0)):            # NLL up and SAP down are bad
        im = ax.images[0]
        assert im.norm.vmin == -im.norm.vmax                               # symmetric about 0
        red, _, blue, _ = im.cmap(im.norm(bad_change))
        assert red > blue, ax.get_ylabel()
        red, _, blue, _ = im.cmap(im.norm(-bad_change))
        assert blue > red, ax.get_ylabel()
    boxes = [p for p in nll_ax.patches if p.get_width() == 1]
    assert [b.get_xy() for b in boxes] == [(-0.5, -0.5)]                   # (β=1, λ=0) boxed
    assert [t.get_text() for t in mig_ax.texts] == ["NaN"] * 4             # zero baseline: NaN, no crash
    assert any("% change of NLL" in a.get_ylabel() for a in fig.axes)       # colour bars are labelled
    assert "λ = 0 on top" in fig.get_suptitle()


def test_static_figures_are_valid_pngs_with_best_cells_boxed(table, tmp_path, captured):
    mixed = table + [{**r, "origin": "original"} for r in table]           # a local and an imported panel
    for draw, name in ((analysis.pareto_fronts, "pareto.png"), (analysis.tchebycheff_heatmaps, "tch.png")):
        path = draw(mixed, tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and iio.imread(path).ndim == 3
    pareto, tch = captured
    assert [a.get_title() for a in pareto.axes[::2]] == [
        "dSprites: 2 seed(s) per point", "Shapes3D: 1 seed(s) per point (no spread)",
        "dSprites (original): 2 seed(s) per point", "Shapes3D (original): 1 seed(s) per point (no spread)"]
    legends = [[t.get_text() for t in a.get_legend().get_texts()] for a in pareto.axes[::2]]
    assert ["(β, λ) one seed: no spread" in texts for texts in legends] == [False, True, False, True]
    # w = 10 %, dsprites: NLL means [[105, 126], [84, NaN]], MIG [[0, .3], [.2, NaN]] -> best (λ=0, β=4)
    w10 = tch.axes[0]
    assert [(p.get_xy(), p.get_edgecolor()[:3]) for p in w10.patches] == [((0.5, -0.5), (1.0, 0.0, 0.0))]
    assert "NaN" in [t.get_text() for t in w10.texts]


def _plotly_args(page: str) -> list:
    """The arguments of Plotly.newPlot in a page written by plotly: id, data, layout, config."""
    i, decoder, args = page.index("Plotly.newPlot(") + len("Plotly.newPlot("), json.JSONDecoder(), []
    while len(args) < 4:
        while page[i] in " \n\t,":
            i += 1
        obj, i = decoder.raw_decode(page, i)
        args.append(obj)
    return args


def test_tradeoff_page_holds_every_slider_step_and_nothing_remote(table, tmp_path):
    path = analysis.write_tradeoff_html(analysis.tradeoff_figure(table, "dsprites"), tmp_path / "t.html")
    page = path.read_text()
    assert re.findall(r"<script[^>]*\bsrc\s*=\s*\"([^\"]*)\"", page) == ["plotly.min.js"]   # the bundle beside it
    assert "plotly.js v" in (tmp_path / "plotly.min.js").read_text() and len(page) < 200_000
    _, data, layout, config = _plotly_args(page)
    assert "http" not in json.dumps([data, layout, config])
    g = analysis.tradeoff_grid(table, "dsprites")
    steps = layout["sliders"][0]["steps"]
    assert [s["label"] for s in steps] == [str(w) for w in range(101)]
    for w_pct, step in enumerate(steps):
        update = step["args"][0]
        for k, (fn, maximise) in enumerate([(analysis.weighted_sum, True), (analysis.tchebycheff, False)]):
            expected = fn(g["nll"], g["mig"], w_pct / 100)
            got = np.array([[NAN if v is None else v for v in row] for row in update["z"][2 * k]])
            assert_allclose(got, expected, err_msg=f"w={w_pct} trace {k}")
            best = analysis.best_cells(expected, maximise)             # ties: every best cell named and boxed
            for i, j in best:
                assert f"β={g['betas'][j]:g}, λ={g['lambdas'][i]:g}" in update["name"][2 * k + 1]
            assert update["x"][2 * k + 1].count(None) == len(best)
            assert min(x for x in update["x"][2 * k + 1] if x is not None) == min(j for _, j in best) - 0.5
    assert [b["args"][0]["visible"] for b in layout["updatemenus"][0]["buttons"]] == [
        [True, True, False, False], [False, False, True, True]]              # the scalarisation switch


def test_draw_writes_every_figure_and_an_atomic_self_contained_report(table, tmp_path, monkeypatch):
    root, specs = tmp_path / "lambda_betavae_results", []
    for r in table:
        run_dir = root / r["dataset"] / f"beta_{r['beta']:g}" / f"lambda_{r['lambda']:g}" / f"seed_{r['seed']}"
        run_dir.mkdir(parents=True)
        write_csv(run_dir / "train_log.csv", [{"step": s, "train_recon": r["train_window_nll"] + 10 - s,
                                               "train_kl": 3.0} for s in (5, 10)])
        (run_dir / "traversal.gif").write_bytes(b"GIF89a")
        specs.append(SimpleNamespace(dataset=r["dataset"], beta=r["beta"], lam=r["lambda"], seed=r["seed"],
                                     run_dir=run_dir))
    written_text = []
    monkeypatch.setattr(analysis, "write_text", lambda p, t: (written_text.append(p.name), study.write_text(p, t)))
    paths = analysis.draw(table, root, "lambda", specs)
    names = sorted(p.name for p in paths)
    assert names == sorted(["percent_change_heatmaps_across_datasets.png", "pareto_fronts_across_datasets.png",
                            "tchebycheff_heatmaps_across_datasets.png", "tradeoff_dsprites.html",
                            "tradeoff_shapes3d.html", "training_curves.png", "report.html"])
    assert sorted(written_text) == ["plotly.min.js", "report.html", "tradeoff_dsprites.html", "tradeoff_shapes3d.html"]
    report = (root / "report.html").read_text()
    assert sorted(re.findall(r'<img src="([^"]*)"', report)) == sorted(p.name for p in root.glob("*.png"))
    assert len(re.findall(r"<img ", report)) == 4
    assert '<a href="dsprites/beta_4/lambda_0/seed_1/traversal.gif">' in report
    assert "105.0000 ± 7.0711" in report                                      # NLL of (1, 0): 100, 110
    assert not list(root.glob(".*.tmp"))
    assert_pages_resolve_offline(root)
    sizes = {p.name: p.stat().st_size for p in root.glob("*.html")}
    assert max(sizes.values()) < 300_000, sizes                              # no page carries plotly.js
    assert (root / "plotly.min.js").stat().st_size > 1_000_000               # ... one bundle beside them


def assert_pages_resolve_offline(root):
    """Every src and href of every page under ``root`` is a relative path to a file in the
    tree; no page names the network (http, https or protocol-relative //)."""
    pages = list(root.rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text), page
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), page
        for ref in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text):
            if ref.startswith(("#", "data:", "javascript:")):
                continue
            target = (page.parent / html.unescape(ref)).resolve()
            assert target.is_file() and target.is_relative_to(root.resolve()), (page.name, ref)


def test_seed_stats_are_the_seed_mean_sample_std_and_count_per_cell():
    def row(beta, lam, seed, mig):
        return {"status": "done", "dataset": "dsprites", "beta": beta, "lambda": lam, "seed": seed, "mig": mig}
    rows = [row(1.0, 0.0, 0, 0.1), row(1.0, 0.0, 1, 0.3), row(1.0, 0.0, 2, 0.8), row(4.0, 0.0, 0, 0.5),
            row(4.0, 2.0, 0, None), {**row(4.0, 2.0, 1, 0.9), "status": "failed"}]
    lambdas, betas, mean, std, n = vis.seed_stats(rows, "dsprites", "mig")
    assert (lambdas, betas) == ([0.0, 2.0], [1.0, 4.0])
    # (0.1, 0.3, 0.8): mean 0.4, sample variance ((−0.3)² + (−0.1)² + 0.4²) / 2 = 0.13
    assert_allclose(mean, [[0.4, 0.5], [NAN, NAN]])
    assert_allclose(std, [[math.sqrt(0.13), NAN], [NAN, NAN]])      # one seed: no spread
    assert_allclose(n, [[3, 1], [NAN, NAN]])                         # no finished value: NaN, not 0


# --- one seed is not an effect ----------------------------------------------------------------
@pytest.fixture
def one_seed_cells(tmp_path):
    """Baseline (1, 0) and (4, 0) with 2 seeds (NLL +20 %, beyond noise); (1, 2) and (4, 2) with
    one seed each, the latter with a +200 % change that must neither be coloured nor set the scale."""
    rows = [_row("dsprites", 1, 0, 0, 99.0, 0.1), _row("dsprites", 1, 0, 1, 101.0, 0.1),
            _row("dsprites", 4, 0, 0, 120.0, 0.1), _row("dsprites", 4, 0, 1, 120.0, 0.1),
            _row("dsprites", 1, 2, 0, 90.0, 0.1), _row("dsprites", 4, 2, 0, 300.0, 0.1)]
    return _read_back(tmp_path, rows)


def test_one_seed_cells_are_hatched_marked_and_kept_out_of_the_colour_scale(one_seed_cells, tmp_path, captured):
    analysis.percent_change_heatmaps(one_seed_cells, tmp_path / "pc.png")
    nll_ax = captured[0].axes[0]
    assert [t.get_text() for t in nll_ax.texts] == ["0.00", "20.00", "-10.00\nn=1", "200.00\nn=1"]
    im = nll_ax.images[0]
    assert (im.norm.vmin, im.norm.vmax) == (-20.0, 20.0)                  # set by the decided cell only
    assert im.get_array().mask.tolist() == [[False, False], [True, True]]  # one-seed cells not coloured
    hatched = [p.get_xy() for p in nll_ax.patches if p.get_hatch()]
    assert hatched == [(-0.5, 0.5), (0.5, 0.5)]
    assert "n=1" in captured[0].get_suptitle()


def test_a_one_seed_baseline_decides_nothing(tmp_path, captured):
    rows = _read_back(tmp_path, [_row("dsprites", 1, 0, 0, 100.0, 0.1), _row("dsprites", 4, 0, 0, 300.0, 0.1),
                                 _row("dsprites", 4, 0, 1, 310.0, 0.1)])
    analysis.percent_change_heatmaps(rows, tmp_path / "pc.png")
    nll_ax = captured[0].axes[0]
    assert [t.get_text() for t in nll_ax.texts] == ["0.00", "205.00\nn=1"]
    assert nll_ax.images[0].norm.vmax == 1.0                               # nothing decided: no saturation
    assert any("NLL: no change decided" in a.get_ylabel() for a in captured[0].axes)   # its colour bar says so
    change = analysis.percent_change_rows(rows)
    assert [r["verdict"] for r in change if r["metric"] == "train_window_nll"] == ["baseline", "one seed"]


def test_percent_change_table_says_which_cells_are_decided(one_seed_cells):
    change = analysis.percent_change_rows(one_seed_cells)
    nll = {(r["beta"], r["lambda"]): r for r in change if r["metric"] == "train_window_nll"}
    assert {k: (v["verdict"], v["n"]) for k, v in nll.items()} == {
        (1.0, 0.0): ("baseline", 2), (4.0, 0.0): ("beyond noise", 2), (1.0, 2.0): ("one seed", 1),
        (4.0, 2.0): ("one seed", 1)}
    mig = {(r["beta"], r["lambda"]): r["verdict"] for r in change if r["metric"] == "mig"}
    assert mig[(4.0, 0.0)] == "within noise"
    text = analysis.percent_change_text(change)
    assert "+200.0%*" in text and "+20.0% " in text and "* one seed" in text


def test_lambda_heatmaps_hatch_one_seed_cells(one_seed_cells, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(vis, "_save_figure", lambda fig, path: (fig.canvas.draw(), figures.append(fig)))
    vis.lambda_heatmaps(one_seed_cells, tmp_path / "h.png")
    nll_ax = figures[0].axes[0]
    assert [p.get_xy() for p in nll_ax.patches if p.get_hatch()] == [(-0.5, 0.5), (0.5, 0.5)]
    assert sum("no spread" in t.get_text() for t in nll_ax.texts) == 2
    assert nll_ax.images[0].norm.vmax == 120.0                              # the 300 of one seed sets nothing
    assert nll_ax.get_ylim()[0] > nll_ax.get_ylim()[1]                     # λ = 0 on top, as in the others
