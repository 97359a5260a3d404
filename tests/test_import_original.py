"""The importer reads a tree in the original's published format into this project's run
layout and results table, one line per file it cannot read."""
import csv

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from lbvae.pipeline import study
from lbvae.pipeline.runs import CHECKPOINT, METRICS
from models import BetaVAE
from utils import read_json, write_json

BETAS, SEEDS, LAMBDAS = (1, 4), (0, 1), (0, 2)


def _metrics(beta, lam, seed, stage):
    """Distinct, exactly representable numbers per run, so a round trip can be checked by ==."""
    base = 100 * beta + 10 * lam + seed
    out = {"NLL": np.float64(base + 0.25), "KL": np.float64(base / 8), "Total loss": np.float64(base + 1.5),
           "MIG": np.float64(seed / 8 + beta / 64), "SAP": np.float64(lam / 16), "Im": np.float64(beta / 2),
           "mi_matrix": np.full((10, 5), base / 1024)}
    if stage == "lambda":
        out["L2"] = np.float64(lam * 4)
    return out


def _weights(seed):
    torch.manual_seed(seed)
    return BetaVAE(1, 10).state_dict()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A small tree exactly as the original published it: dSprites only."""
    src = tmp_path_factory.mktemp("published")
    beta_dir, lambda_dir = src / "betavae_results" / "dSprites", src / "lambda_betavae_results" / "dSprites"
    beta_dir.mkdir(parents=True)
    lambda_dir.mkdir(parents=True)
    for beta in BETAS:
        for seed in SEEDS:
            np.savez(beta_dir / f"metrics_beta_{beta}_seed_{seed}.npz", **_metrics(beta, 0, seed, "beta"))
            torch.save(_weights(seed), beta_dir / f"betavae_beta_{beta}_seed_{seed}.pth")
        for lam in LAMBDAS:
            np.savez(lambda_dir / f"metrics_beta_{beta}_lambda_{lam}_seed_0.npz", **_metrics(beta, lam, 0, "lambda"))
            torch.save(_weights(lam), lambda_dir / f"lambda_betavae_beta_{beta}_lambda_{lam}_seed_0.pth")
    (beta_dir / "latent_traversal_beta_1_seed_0.gif").write_bytes(b"GIF89a")   # the original's figures: ignored
    return src


def _table(root):
    with open(root / "results.csv") as f:
        return list(csv.DictReader(f))


def test_round_trip_of_both_stages(published, tmp_path):
    out = str(tmp_path / "imported")
    beta_root = study.main("beta", ["--import-original", str(published), "--results-dir", out])
    rows = _table(beta_root)
    assert sorted((r["beta"], r["seed"]) for r in rows) == [("1.0", "0"), ("1.0", "1"), ("4.0", "0"), ("4.0", "1")]
    for r in rows:
        beta, seed = int(float(r["beta"])), int(r["seed"])
        npz = _metrics(beta, 0, seed, "beta")
        assert (r["origin"], r["source"], r["status"], r["stage"]) == ("original", "real", "done", "beta")
        for column, key in (("train_window_nll", "NLL"), ("train_window_kl", "KL"), ("mig", "MIG"),
                            ("sap", "SAP"), ("i_m", "Im"), ("train_window_total", "Total loss")):
            assert float(r[column]) == npz[key], column
        assert r["heldout_neg_elbo"] == "" and r["train_window_l2"] == ""
        run = beta_root / "dsprites" / f"beta_{beta}" / f"seed_{seed}"
        saved = read_json(run / METRICS)
        assert np.array_equal(saved["mi"], npz["mi_matrix"])
        weights = run / f"betavae_beta_{beta}_seed_{seed}.pth"
        assert weights.read_bytes() == (published / "betavae_results" / "dSprites" / weights.name).read_bytes()
        model = BetaVAE(1, 10)
        model.load_state_dict(torch.load(weights, weights_only=True))
        assert torch.equal(model.state_dict()["encoder.fc_mu.weight"], _weights(seed)["encoder.fc_mu.weight"])
    assert read_json(beta_root / "config.json")["heldout_fraction"] == 0.0    # the original held nothing out

    lambda_root = study.main("lambda", ["--import-original", str(published / "lambda_betavae_results"),
                                        "--results-dir", out])
    rows = _table(lambda_root)
    assert len(rows) == 4 and {r["origin"] for r in rows} == {"original"}
    r = next(r for r in rows if r["beta"] == "4.0" and r["lambda"] == "2.0")
    assert float(r["train_window_l2"]) == 8.0 and float(r["train_window_nll"]) == 420.25
    assert (lambda_root / "dsprites" / "beta_4" / "lambda_2" / "seed_0" /
            "lambda_betavae_beta_4_lambda_2_seed_0.pth").exists()
    for name in ("percent_change_heatmaps_across_datasets.png", "pareto_fronts_across_datasets.png",
                 "tchebycheff_heatmaps_across_datasets.png", "training_curves.png"):
        assert iio.imread(lambda_root / name).ndim == 3, name
    assert (lambda_root / "tradeoff_dsprites_original.html").exists() and (lambda_root / "report.html").exists()

    # Importing again changes nothing and duplicates nothing.
    study.main("lambda", ["--import-original", str(published), "--results-dir", out])
    assert _table(lambda_root) == rows


def test_malformed_tree_costs_one_line_per_file(published, tmp_path, capsys):
    import shutil
    src = tmp_path / "broken"
    shutil.copytree(published / "betavae_results", src / "betavae_results")
    ds = src / "betavae_results" / "dSprites"
    bad = {
        "metrics_beta_1_seed_0.npz": lambda p: p.write_bytes(p.read_bytes()[:100]),         # truncated
        "metrics_beta_1_seed_1.npz": lambda p: np.savez(p, **{k: v for k, v in _metrics(1, 0, 1, "beta").items()
                                                              if k != "MIG"}),                # a key missing
        "metrics_beta_4_seed_0.npz": lambda p: np.savez(p, **{**_metrics(4, 0, 0, "beta"),
                                                              "NLL": np.arange(3.0)}),        # not a scalar
        "betavae_beta_4_seed_1.pth": lambda p: p.write_bytes(b"not a checkpoint"),             # weights unreadable
    }
    for name, spoil in bad.items():
        spoil(ds / name)
    torch.save(_weights(0), ds / "betavae_beta_8_seed_0.pth")                             # weights, no metrics
    (ds / "metrics_beta_x_seed_0.npz").write_bytes(b"")                                    # not the pattern
    (src / "betavae_results" / "CelebA").mkdir()                                            # not a dataset folder
    root = study.main("beta", ["--import-original", str(src), "--results-dir", str(tmp_path / "out")])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("import: ")]
    problems = lines[:-1]
    expected = [*bad, "betavae_beta_8_seed_0.pth", "metrics_beta_x_seed_0.npz", "CelebA"]
    assert len(problems) == len(expected), "\n".join(problems)
    for name in expected:
        assert sum(name in line for line in problems) == 1, name
    assert "1 run(s)" in lines[-1] and "7 problem(s)" in lines[-1]
    # The β = 4 seed 1 metrics are fine: imported, without the unreadable weights.
    rows = _table(root)
    assert [(r["beta"], r["seed"]) for r in rows] == [("4.0", "1")]
    assert not (root / "dsprites" / "beta_4" / "seed_1" / "betavae_beta_4_seed_1.pth").exists()


def test_a_local_run_is_never_overwritten(published, tmp_path, capsys):
    run = tmp_path / "betavae_results" / "dsprites" / "beta_1" / "seed_0"
    run.mkdir(parents=True)
    (run / CHECKPOINT).write_bytes(b"a run trained here")
    root = study.main("beta", ["--import-original", str(published), "--results-dir", str(tmp_path)])
    assert (run / CHECKPOINT).read_bytes() == b"a run trained here" and not (run / METRICS).exists()
    assert "holds a run trained here" in capsys.readouterr().out
    assert len(_table(root)) == 3


def test_imported_beta_checkpoints_seed_a_local_lambda_stage(published, tmp_path, capsys):
    out = str(tmp_path)
    study.main("beta", ["--import-original", str(published), "--results-dir", out])
    flags = ["--source", "standin", "--datasets", "dsprites", "--beta", "4", "--seeds", "1", "--lambda", "2",
             "--lambda-steps", "2", "--log-interval", "2", "--checkpoint-interval", "2", "--loss-window", "2",
             "--batch-size", "4", "--metric-train-points", "200", "--metric-test-points", "100",
             "--heldout-eval-points", "10", "--heldout-fraction", "0", "--device", "cpu", "--no-figures",
             "--results-dir", out]
    # The imported β runs are real-data runs: a stand-in λ stage may not continue them.
    with pytest.raises(SystemExit):
        study.main("lambda", flags)
    assert "source='real'" in capsys.readouterr().err
    # No real files here: record the imported runs with this command's settings, so that what
    # is checked is that the λ stage starts from the imported weights file, in its published name.
    ours = {"source": "standin", "batch_size": 4, "loss_window": 2, "metric_train_points": 200,
            "metric_test_points": 100, "heldout_eval_points": 10}
    beta_run = tmp_path / "betavae_results" / "dsprites" / "beta_4" / "seed_1"
    for path in (tmp_path / "betavae_results" / "config.json", beta_run / "config.json"):
        write_json(path, {**read_json(path), **ours})
    root = study.main("lambda", flags)
    (row,) = _table(root)
    assert (row["status"], row["origin"], row["steps"]) == ("done", "", "2")
    config = read_json(root / "dsprites" / "beta_4" / "lambda_2" / "seed_1" / "config.json")
    assert config["run"]["init_from"].endswith("betavae_results/dsprites/beta_4/seed_1/betavae_beta_4_seed_1.pth")


def test_demo_import_is_refused(published):
    with pytest.raises(SystemExit) as err:
        study.main("beta", ["--import-original", str(published), "--demo"])
    assert err.value.code == 2
