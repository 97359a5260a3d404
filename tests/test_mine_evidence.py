"""docs/mine_evidence.md's numbers: capacity shares, the claims' verdicts and the page,
from a results tree written here."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from config import MINE_EVIDENCE_BASE, MINE_EVIDENCE_PRESET, MineConfig
from lbvae.data.ground_truth import FACTORS
from lbvae.mine import evidence as mine_evidence


def test_capacity_shares_split_each_latent_by_its_information_by_hand():
    mi = np.array([[1.0, 0.0, 0.5],         # factor 0: all of latent 0, half of latent 2
                   [0.0, 2.0, 0.5]])        # factor 1: all of latent 1, half of latent 2
    complexity = np.array([1.0, 3.0, 2.0])
    shares = mine_evidence.capacity_shares(mi, complexity)
    assert shares == pytest.approx([(1 + 1) / 6, (3 + 1) / 6])
    assert mine_evidence.capacity_shares(np.zeros((4, 3)), complexity) == pytest.approx([0.25] * 4)
    assert mine_evidence.capacity_correlation([0.1, 0.2, 0.7], np.log([3, 6, 40])) > 0.9
    assert math.isnan(mine_evidence.capacity_correlation([0.5, 0.5], [1.0, 2.0]))


def test_uniform_attention_has_nothing_removed_and_one_to_one_all():
    import torch
    uniform = torch.full((4, 5, 10), 0.1)
    u = mine_evidence.attention_uniformity(uniform)
    assert u["ent_removed"] == pytest.approx(0, abs=1e-6) and u["sparse_removed"] == pytest.approx(0, abs=1e-6)
    one = torch.zeros(4, 5, 10)
    one[:, torch.arange(5), torch.arange(5)] = 1.0
    o = mine_evidence.attention_uniformity(one)
    assert o["ent_removed"] == pytest.approx(1) and o["sparse_removed"] == pytest.approx(1)


def write_tree(root, rng):
    """3 variants × 3 seeds: full is one-to-one, allocates by complexity and is less redundant;
    MIG is the same in every variant (seed noise only)."""
    names, sizes = FACTORS["dsprites"]
    c = np.log(sizes)
    rows = []
    for variant in ("full", "no_mine", "no_sparse"):
        for seed in range(3):
            if variant == "full":
                attention = np.eye(5, 10) * 0.9 + 0.01
                mi = np.outer(c, np.ones(10)) * (1 + 0.05 * rng.random((5, 10)))
                sparse, ent, redundancy = 0.4 + 0.01 * seed, 0.5, 0.3 + 0.01 * seed
            else:
                attention = np.full((5, 10), 0.1)
                mi = np.outer(c[::-1], np.ones(10)) * (1 + 0.05 * rng.random((5, 10)))
                sparse, ent, redundancy = math.log(5) - 1e-4, math.log(10) - 1e-4, 1.0 + 0.01 * seed
                if variant == "no_sparse":
                    redundancy = 0.3 + 0.01 * seed
            run = root / "dsprites" / variant / f"seed_{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({"mi": mi.T.tolist(), "mean_attention": attention.tolist(),
                                                          "complexity_nats": [1.0] * 10}))
            rows.append({"status": "done", "dataset": "dsprites", "variant": variant, "seed": seed,
                         "train_window_sparse": sparse, "train_window_ent": ent, "mine_mi_posthoc": redundancy,
                         "train_window_mine_mi": 0.1, "mig": 0.1 + 0.02 * rng.standard_normal(), "wall_time_s": 60.0})
    return rows


def test_the_page_decides_each_claim_from_the_runs(tmp_path):
    root, docs = tmp_path / "runs", tmp_path / "docs"
    rows = write_tree(root, np.random.default_rng(0))
    cfg = MineConfig(**{**MINE_EVIDENCE_BASE, **MINE_EVIDENCE_PRESET})
    page = mine_evidence.write_report(rows, root, cfg, docs=docs).read_text()
    claims = {line.split(" | ")[0].lstrip("| "): line.rsplit(" | ", 1)[1].rstrip(" |")
              for line in page.splitlines() if line.startswith("| ") and " | " in line}
    assert claims["the cross-attention leaves uniform (full)"] == "**yes**"
    assert claims[next(k for k in claims if k.startswith("L_sparse makes"))] == "**yes**"
    assert claims[next(k for k in claims if k.startswith("capacity follows complexity"))] == "**yes**"
    assert claims[next(k for k in claims if k.startswith("MINE makes"))] == "**yes**"
    assert claims[next(k for k in claims if k.startswith("the mechanism disentangles"))] == "no (within one seed std)"
    for name in ("attention.png", "capacity.png"):
        assert (docs / mine_evidence.FIGURES / name).stat().st_size > 1000
    assert "mine_budget.csv is missing" in page


def test_a_run_that_stays_uniform_is_reported_as_such(tmp_path):
    root, docs = tmp_path / "runs", tmp_path / "docs"
    rows = write_tree(root, np.random.default_rng(1))
    for r in rows:                      # every variant stays at uniform attention...
        r["train_window_sparse"], r["train_window_ent"] = math.log(5) - 1e-4, math.log(10) - 1e-4
        saved = root / "dsprites" / r["variant"] / f"seed_{r['seed']}" / "metrics.json"
        full = json.loads((root / "dsprites" / "full" / f"seed_{r['seed']}" / "metrics.json").read_text())
        saved.write_text(json.dumps({**json.loads(saved.read_text()), "mi": full["mi"]}))   # ...and shares alike
    cfg = MineConfig(**{**MINE_EVIDENCE_BASE, **MINE_EVIDENCE_PRESET})
    page = mine_evidence.write_report(rows, root, cfg, docs=docs).read_text()
    assert "| the cross-attention leaves uniform (full) | L_ent removed per seed: 0.0 %, 0.0 %, 0.0 %" in page
    assert "no (it stays at its maximum)" in page
    assert "yes, but as much without the mechanism: not its doing" in page



def test_under_the_preset_settings_the_attention_leaves_uniform_on_a_toy_problem(tmp_path, request):
    """Squares (factors of 4, 4 and 3 classes), the evidence preset's model and weights:
    within a few hundred steps the attention is measurably away from uniform."""
    import torch

    from lbvae.mine import study as mine_study
    from lbvae.pipeline.evaluation import encode
    from lbvae.pipeline.loop import train_one
    from lbvae.pipeline.runs import RunSpec
    from tiny_data import Squares
    cfg = MineConfig(**{**MINE_EVIDENCE_BASE, **MINE_EVIDENCE_PRESET, "sample_interval": 0, "figures": False,
                        "log_interval": 50, "checkpoint_interval": 1000})
    data = Squares()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # small steps: a second thread only waits (docs/mine.md)
    request.addfinalizer(lambda: torch.set_num_threads(threads))

    def removed(steps: int) -> float:
        spec = RunSpec("mine", "squares", cfg.kl_weight, 0.0, 0, steps, tmp_path / f"s{steps}", variant="full")
        run = mine_study.MineRun(spec, cfg, data, torch.device("cpu"))
        if steps:
            train_one(run, steps, cfg)
        codes = encode(run.model, data, np.arange(len(data)), "cpu")
        return mine_evidence.attention_uniformity(mine_evidence.attention_of(run.model, codes, "cpu"))["ent_removed"]
    assert removed(0) < 0.01                    # it starts at uniform...
    assert removed(TOY_STEPS) >= mine_evidence.LEFT_UNIFORM     # ...and leaves it


TOY_STEPS = 150


def test_the_budget_script_appends_resumes_and_refuses_rows_of_other_settings(tmp_path):
    import sys
    from pathlib import Path

    from utils import read_csv, write_csv
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import mine_budget
    argv = ["--settings", "sparse_x10", "--seeds", "0", "--milestones", "0", "2", "--csv", str(tmp_path / "b.csv"),
            "--work", str(tmp_path / "runs")]
    mine_budget.main(argv)
    rows = read_csv(tmp_path / "b.csv")
    assert [(r["setting"], r["step"]) for r in rows] == [("sparse_x10", 0), ("sparse_x10", 2)]
    assert (rows[0]["attention_reg_weight"], rows[0]["entropy_reg_weight"]) == (1.0, 0.05)   # from the defaults
    assert rows[0]["l_ent"] <= rows[0]["l_ent_max"] and rows[0]["grad_recon"] == 0.0     # zero-initialised output
    mine_budget.main(argv)                                  # nothing left to measure: the table stays
    assert len(read_csv(tmp_path / "b.csv")) == 2
    rows[1]["attention_temperature"] = 0.25                 # a row measured with another value
    write_csv(tmp_path / "b.csv", rows, mine_budget.COLUMNS)
    with pytest.raises(SystemExit, match="sparse_x10 rows were measured with .*attention_temperature=0.25"):
        mine_budget.main(argv)
