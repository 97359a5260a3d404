"""Both entry scripts end to end on the stand-ins, with a handful of steps."""
import csv

import imageio.v3 as iio
import pytest

from lbvae.pipeline import study
from lbvae.pipeline.runs import METRICS

# Tiny but complete: 2 β × 1 seed on one stand-in dataset, real metric code paths.
FAST = ["--demo", "--datasets", "dsprites", "--beta", "1", "4", "--seeds", "0", "--steps", "6",
        "--lambda-steps", "4", "--lambda", "0", "2", "--log-interval", "3", "--checkpoint-interval", "3",
        "--loss-window", "4", "--metric-train-points", "400", "--metric-test-points", "200",
        "--heldout-eval-points", "50", "--device", "cpu"]


@pytest.fixture(scope="module")
def beta_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    root = study.main("beta", FAST + ["--results-dir", str(out)])
    return out, root


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_beta_stage_writes_runs_table_and_figures(beta_root):
    out, root = beta_root
    table = rows(root / "results.csv")
    assert [(r["beta"], r["status"]) for r in table] == [("1.0", "done"), ("4.0", "done")]
    for r in table:
        for key in ("mig", "sap", "i_m", "i_m_normalized", "train_window_nll", "heldout_neg_elbo", "active_latents",
                    "i_xz_upper"):
            assert r[key] != "", key
        assert 0 <= float(r["mig"]) <= 1 and 0 <= float(r["i_m_normalized"]) <= 1
    run = root / "dsprites" / "beta_4" / "seed_0"
    for name in ("config.json", "checkpoint.pt", "betavae_beta_4_seed_0.pth", "train_log.csv", METRICS):
        assert (run / name).exists(), name
    assert [int(r["step"]) for r in rows(run / "train_log.csv")] == [3, 6]
    for png in (run / "originals.png", run / "reconstructions.png", run / "mi_heatmap.png",
                run / "originals_vs_reconstructions.png", root / "metric_boxplots_across_datasets.png",
                root / "collapse_across_datasets.png"):
        assert iio.imread(png).ndim == 3, png
    gif = iio.imread(run / "traversal.gif")
    assert gif.shape[0] == 11                                   # 11 frames
    assert iio.immeta(run / "traversal.gif")["duration"] == 150  # ms per frame, not fps
    assert "β=  4" in (root / "summary.txt").read_text()


def test_rerun_skips_finished_runs(beta_root, capsys):
    out, root = beta_root
    before = (root / "dsprites" / "beta_1" / "seed_0" / METRICS).stat().st_mtime_ns
    study.main("beta", FAST + ["--results-dir", str(out)])
    assert "2 already finished or failed, 0 to train" in capsys.readouterr().out
    assert (root / "dsprites" / "beta_1" / "seed_0" / METRICS).stat().st_mtime_ns == before


def test_lambda_stage_continues_beta_checkpoints(beta_root):
    out, _ = beta_root
    root = study.main("lambda", FAST + ["--results-dir", str(out)])
    table = rows(root / "results.csv")
    assert sorted((r["beta"], r["lambda"]) for r in table) == [
        ("1.0", "0.0"), ("1.0", "2.0"), ("4.0", "0.0"), ("4.0", "2.0")]
    assert all(r["steps"] == "4" and r["status"] == "done" for r in table)
    assert (root / "dsprites" / "beta_4" / "lambda_2" / "seed_0" /
            "lambda_betavae_beta_4_lambda_2_seed_0.pth").exists()
    assert iio.imread(root / "metric_heatmaps_across_datasets.png").ndim == 3
    assert "dsprites mig (baseline" in (root / "percent_change.txt").read_text()
    change = rows(root / "percent_change.csv")
    base = [r for r in change if r["beta"] == "1.0" and r["lambda"] == "0.0"]
    assert base and all(float(r["percent_change"]) == 0.0 for r in base if float(r["baseline_beta1_lambda0"]))
    # A zero baseline (SAP of an untrained model) has no percent change.
    assert all(r["percent_change"] == "nan" for r in change if float(r["baseline_beta1_lambda0"]) == 0)


def test_missing_beta_checkpoint_is_one_clear_line(beta_root):
    out, _ = beta_root
    with pytest.raises(SystemExit) as err:
        study.main("lambda", FAST + ["--results-dir", str(out), "--beta", "8"])
    message = str(err.value)
    assert "missing β checkpoint" in message and "betavae_beta_8_seed_0.pth" in message
    assert "python main_beta.py" in message


def test_real_source_with_missing_files_points_to_demo(tmp_path):
    with pytest.raises(SystemExit) as err:
        study.main("beta", ["--source", "real", "--data-dir", str(tmp_path), "--datasets", "dsprites",
                            "--results-dir", str(tmp_path / "r")])
    assert "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz" in str(err.value)
    assert "--demo" in str(err.value)


def test_incompatible_results_directory_is_refused(beta_root):
    out, _ = beta_root
    with pytest.raises(SystemExit) as err:
        study.main("beta", FAST + ["--results-dir", str(out), "--lr", "0.01"])
    assert err.value.code == 2
