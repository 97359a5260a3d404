"""The linear λβ-VAE: closed forms against sampling, solvers against each other and the theory, metrics, CLI."""
import math
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from lbvae.linear import grid as main_linear
from lbvae.linear import report as linear_report
from lbvae.linear import solver as lv

torch.set_num_threads(1)


def small_problem(n=8, s=3, seed=0):
    rng = np.random.default_rng(seed)
    sigma_v = rng.uniform(0.1, 1.0, s)
    gamma = rng.standard_normal((n, s))
    return lv.Problem(sigma_v, gamma, gamma @ np.diag(sigma_v) @ gamma.T + lv.NOISE_VAR * np.eye(n))


def random_spd(rng, d, scale=1.0):
    q = rng.standard_normal((d, d))
    return scale * (q @ q.T / d + 0.5 * np.eye(d))


def fp_inits(n, m, k, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(k, m, n)), np.stack([random_spd(rng, m) for _ in range(k)])


def test_seed_order_gives_the_originals_sigma_v():
    draws = lv.draw_study([50], m=10, s=5, solutions=2)
    np.testing.assert_allclose(draws[50].problem.sigma_v,
                               [0.43708611, 0.95564288, 0.75879455, 0.63879264, 0.24041678], atol=1e-8)


def test_one_n_alone_gets_the_full_grids_problem():
    # The original draws n = 50 before n = 100 from one stream: --n 100 alone must not get a fresh problem.
    full = lv.draw_study([50, 100], m=10, s=5, solutions=2)[100]
    alone = lv.draw_study([100], m=10, s=5, solutions=2)
    assert list(alone) == [100]
    for got, want in ((alone[100].problem.sigma_y, full.problem.sigma_y), (alone[100].adamw["L_Z"], full.adamw["L_Z"]),
                      (alone[100].fixed_point["B"], full.fixed_point["B"])):
        np.testing.assert_array_equal(got, want)
    # Other n keep the order they are given in, after the original's.
    assert lv.draw_order([30]) == [30] and lv.draw_order([100, 30]) == [50, 100, 30]
    assert lv.draw_order([50, 30]) == [50, 30]


def test_closed_form_losses_match_monte_carlo_and_the_papers_four_traces():
    rng = np.random.default_rng(0)
    p, m = small_problem(n=5, s=2), 3
    A, B = rng.standard_normal((5, m)) * 0.5, rng.standard_normal((m, 5)) * 0.5
    sz, sw = random_spd(rng, 5), random_spd(rng, m, 0.3)
    beta, lam = 3.0, 0.7
    out = {k: float(v) for k, v in lv.losses(A, B, sz, sw, p.sigma_y, beta, lam).items() if k != "ok"}

    # The paper's formulas, literally (explicit inverse and det are fine on these well-conditioned matrices).
    inv_z, sx = np.linalg.inv(sz), B @ p.sigma_y @ B.T + sw
    recon = -0.5 * (np.trace(A.T @ inv_z @ p.sigma_y @ B.T) + np.trace(inv_z @ A @ B @ p.sigma_y)
                    - np.trace(inv_z @ p.sigma_y) - np.trace(A.T @ inv_z @ A @ sx)
                    - 5 * np.log(2 * np.pi) - np.log(np.linalg.det(sz)))
    kl = 0.5 * (np.trace(sx) - np.log(np.linalg.det(sw)) - m)
    r = np.eye(5) - A @ B
    l2 = np.trace(r @ p.sigma_y @ r.T + A @ sw @ A.T)
    np.testing.assert_allclose([out["recon"], out["kl"], out["l2"], out["total"]],
                               [recon, kl, l2, recon + beta * kl + lam * l2], rtol=1e-10)

    # Sampling: Y ~ N(0, Σ_Y), X = BY + W; recon = −log N(Y; AX, Σ_Z), KL per Y, L2 = ‖Y − AX‖².
    k = 200_000
    y = rng.multivariate_normal(np.zeros(5), p.sigma_y, size=k)
    x = y @ B.T + rng.multivariate_normal(np.zeros(m), sw, size=k)
    e = y - x @ A.T
    _, logdet_z = np.linalg.slogdet(sz)
    samples = {
        "recon": 0.5 * (np.einsum("ij,jk,ik->i", e, inv_z, e) + logdet_z + 5 * np.log(2 * np.pi)),
        "kl": 0.5 * (np.trace(sw) + ((y @ B.T) ** 2).sum(1) - m - np.linalg.slogdet(sw)[1]),
        "l2": (e ** 2).sum(1),
    }
    for key, v in samples.items():
        assert abs(v.mean() - out[key]) < 4 * v.std() / math.sqrt(k), key


def total_and_grads(sol, sigma_y, beta, lam):
    ts = [torch.tensor(sol[key][0], requires_grad=True) for key in ("A", "B", "sigma_z", "sigma_w")]
    total = lv.losses(*ts, sigma_y, beta, lam)["total"]
    total.backward()
    return total.detach().item(), [t.grad.numpy() for t in ts]


def test_fixed_point_is_a_stationary_point_and_never_worse_than_adamw():
    p, m = small_problem(), 3
    b0, w0 = fp_inits(p.n, m, 1)
    beta, lam = 4.0, 1.0
    fp = lv.solve_fixed_point(p.sigma_y, beta, lam, b0, w0, tol=1e-10, max_iters=20_000)
    assert fp["converged"][0]
    total, grads = total_and_grads(fp, p.sigma_y, beta, lam)
    for g in grads:                       # symmetric parts for Σ_Z, Σ_W (the directions they can move in)
        g = (g + g.T) / 2 if g.shape[0] == g.shape[1] else g
        assert np.abs(g).max() < 1e-6

    rng = np.random.default_rng(2)
    inits = {"A": rng.standard_normal((2, p.n, m)), "B": rng.standard_normal((2, m, p.n)),
             "L_Z": np.stack([np.linalg.cholesky(random_spd(rng, p.n)) for _ in range(2)]),
             "L_W": np.stack([np.linalg.cholesky(random_spd(rng, m)) for _ in range(2)])}
    # A larger step than the study's 1e-3, so that a few hundred steps get close.
    aw = lv.solve_adamw(p.sigma_y, beta, lam, inits, iters=600, clip_ab=1.0, clip_l=2.0, lr=3e-2)
    aw_totals = lv.losses(aw["A"], aw["B"], aw["sigma_z"], aw["sigma_w"], p.sigma_y, beta, lam)["total"]
    assert total <= float(aw_totals.min()) + 1e-9
    assert float(aw_totals.min()) < total + 1e-3     # AdamW did get close: the comparison means something


def test_fixed_point_total_never_increases():
    p, m = small_problem(), 3
    b0, w0 = fp_inits(p.n, m, 1)
    totals = []
    for iters in range(1, 30):
        sol = lv.solve_fixed_point(p.sigma_y, 2.0, 0.5, b0, w0, tol=1e-14, max_iters=iters)
        loss = lv.losses(sol["A"], sol["B"], sol["sigma_z"], sol["sigma_w"], p.sigma_y, 2.0, 0.5)
        totals.append(float(loss["total"]))
    assert np.all(np.diff(totals) <= 1e-9)


def test_batched_solvers_equal_one_solution_at_a_time():
    p, m = small_problem(), 3
    b0, w0 = fp_inits(p.n, m, 3)
    beta, lam = np.array([4.0, 1.5, 8.0]), np.array([1.0, 0.0, 2.0])
    batch = lv.solve_fixed_point(p.sigma_y, beta, lam, b0, w0, tol=1e-8, max_iters=5000)
    for i in range(3):
        one = lv.solve_fixed_point(p.sigma_y, beta[i], lam[i], b0[i:i + 1], w0[i:i + 1], tol=1e-8, max_iters=5000)
        assert one["iterations"][0] == batch["iterations"][i]
        for key in ("A", "B", "sigma_z", "sigma_w"):
            np.testing.assert_allclose(one[key][0], batch[key][i], rtol=1e-10, atol=1e-12)

    rng = np.random.default_rng(3)
    inits = {"A": rng.standard_normal((3, p.n, m)), "B": rng.standard_normal((3, m, p.n)) * 3,
             "L_Z": np.stack([np.linalg.cholesky(random_spd(rng, p.n)) for _ in range(3)]),
             "L_W": np.stack([np.linalg.cholesky(random_spd(rng, m)) for _ in range(3)])}
    batch = lv.solve_adamw(p.sigma_y, 4.0, 1.0, inits, iters=40, clip_ab=1.0, clip_l=2.0)
    for i in range(3):
        one = lv.solve_adamw(p.sigma_y, 4.0, 1.0, {k: v[i:i + 1] for k, v in inits.items()}, iters=40,
                             clip_ab=1.0, clip_l=2.0)
        for key in ("A", "B", "sigma_z", "sigma_w"):
            np.testing.assert_allclose(one[key][0], batch[key][i], rtol=1e-10, atol=1e-12)


def test_adamw_is_the_single_run_algorithm_with_clip_grad_norm():
    """One solution, written the plain way: torch's AdamW and clip_grad_norm_ per parameter group."""
    p, m = small_problem(), 3
    rng = np.random.default_rng(4)
    init = {"A": rng.standard_normal((1, p.n, m)) * 3, "B": rng.standard_normal((1, m, p.n)) * 3,
            "L_Z": np.linalg.cholesky(random_spd(rng, p.n))[None], "L_W": np.linalg.cholesky(random_spd(rng, m))[None]}
    ours = lv.solve_adamw(p.sigma_y, 4.0, 1.0, init, iters=25, clip_ab=1.0, clip_l=2.0)

    params = [torch.tensor(init[k][0], requires_grad=True) for k in ("A", "B", "L_Z", "L_W")]
    a, b, lz, lw = params
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    best, best_loss = None, math.inf
    for _ in range(25):
        opt.zero_grad()
        sz = lz @ lz.T + lv.JITTER * torch.eye(p.n, dtype=torch.float64)
        sw = lw @ lw.T + lv.JITTER * torch.eye(m, dtype=torch.float64)
        loss = lv.losses(a, b, sz, sw, p.sigma_y, 4.0, 1.0)["total"]
        loss.backward()
        if loss.item() < best_loss:
            best_loss, best = loss.item(), (a.detach().clone(), sz.detach().clone())
        torch.nn.utils.clip_grad_norm_([a, b], 1.0)
        torch.nn.utils.clip_grad_norm_([lz, lw], 2.0)
        opt.step()
        with torch.no_grad():
            lz.copy_(torch.tril(lz))
            lw.copy_(torch.tril(lw))
    np.testing.assert_allclose(ours["A"][0], best[0].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours["sigma_z"][0], best[1].numpy(), rtol=1e-10, atol=1e-12)


def test_matrix_adamw_is_adamw_on_single_entries_and_its_step_commutes_with_latent_rotations():
    """linear_vae.MatrixAdamW: on 1 × 1 matrices (one entry, so its mean square is the entry's)
    it is torch's AdamW step for step; on B-shaped parameters (K, m, n) a rotated gradient
    sequence Q G_t from the rotated start Q B_0 ends at Q times the unrotated end, which
    torch's AdamW, scaling each entry by its own mean square, does not."""
    rng = np.random.default_rng(7)
    grads = [torch.tensor(rng.standard_normal((3, 4, 6))) for _ in range(5)]
    start = torch.tensor(rng.standard_normal((3, 4, 6)))
    q = torch.tensor(ortho_group.rvs(4, random_state=1))
    settings = {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}

    def run(optimizer, x0, rotate):
        x = x0.clone().requires_grad_(True)
        opt = optimizer([x], **settings)
        for g in grads:
            x.grad = q @ g if rotate else g.clone()
            opt.step()
        return x.detach()

    for optimizer, commutes in ((lv.MatrixAdamW, True), (torch.optim.AdamW, False)):
        moved = (run(optimizer, q @ start, True) - q @ run(optimizer, start, False)).abs().max().item()
        assert (moved < 1e-14) == commutes, (optimizer.__name__, moved)
    singles = [g[:, :1, :1] for g in grads]
    for optimizer in (lv.MatrixAdamW, torch.optim.AdamW):
        x = start[:, :1, :1].clone().requires_grad_(True)
        opt = optimizer([x], **settings)
        for g in singles:
            x.grad = g.clone()
            opt.step()
        if optimizer is lv.MatrixAdamW:
            ours = x.detach()
    assert torch.equal(ours, x.detach())


def test_collapse_at_lambda_zero_and_recovery_with_lambda():
    p, m = small_problem(n=10), 4
    b0, w0 = fp_inits(p.n, m, 2)
    for lam, collapsed in ((0.0, True), (2.0, False)):
        sol = lv.solve_fixed_point(p.sigma_y, 8.0, lam, b0, w0, tol=1e-9, max_iters=20_000)
        rows = lv.solution_metrics(sol, p, 8.0, lam)
        for i, r in enumerate(rows):
            rho2, _ = lv.factor_mi(sol["B"][i], sol["sigma_w"][i], p)
            if collapsed:
                assert rho2.max() < 1e-12 and r["i_m"] < 1e-12 and r["kl"] < 1e-10 and r["sap"] < 1e-12
            else:
                assert r["i_m"] > 0.1 and r["kl"] > 0.1


def test_fixed_point_kl_is_the_predicted_information():
    p, m = small_problem(n=10), 4
    b0, w0 = fp_inits(p.n, m, 1)
    for beta, lam in ((4.0, 2.0), (1.5, 0.3), (30.0, 1.0)):
        sol = lv.solve_fixed_point(p.sigma_y, beta, lam, b0, w0, tol=1e-11, max_iters=50_000)
        kl = lv.solution_metrics(sol, p, beta, lam)[0]["kl"]
        np.testing.assert_allclose(kl, lv.predicted_information(p.sigma_y, m, beta, lam).sum(), rtol=1e-6, atol=1e-9)


def test_a_rotated_optimum_has_the_same_loss_and_another_i_m():
    p, m = small_problem(n=10), 4
    b0, w0 = fp_inits(p.n, m, 1)
    sol = lv.solve_fixed_point(p.sigma_y, 4.0, 2.0, b0, w0, tol=1e-10, max_iters=20_000)
    A, B, sz, sw = (sol[key][0] for key in ("A", "B", "sigma_z", "sigma_w"))
    rotations = [np.eye(m), np.eye(m)[[2, 0, 3, 1]]] + list(ortho_group.rvs(m, size=20, random_state=0))
    before = lv.losses(A, B, sz, sw, p.sigma_y, 4.0, 2.0)
    for q in rotations:
        a, b, w = lv.rotate(A, B, sw, q)
        after = lv.losses(a, b, sz, w, p.sigma_y, 4.0, 2.0)
        for key in ("recon", "kl", "l2", "total"):
            assert float(after[key]) == pytest.approx(float(before[key]), rel=1e-12, abs=1e-12), key
    ims = lv.i_m_over_rotations(B, sw, p, rotations)
    own = lv.i_m(lv.factor_mi(B, sw, p)[1])
    assert ims[0] == pytest.approx(own, abs=1e-15) and ims[1] == pytest.approx(own, abs=1e-12)
    assert own > 0.1 and ims[2:].max() - ims[2:].min() > 0.1 * own      # the loss does not pin I_m


def test_metrics_by_hand_and_invariant_to_permuting_latents():
    rho2 = np.array([[0.9, 0.1], [0.5, 0.2], [0.0, 0.6]])
    assert lv.sap(rho2) == pytest.approx(((0.9 - 0.5) + (0.6 - 0.2)) / 2)
    mi = -0.5 * np.log1p(-rho2)
    assert lv.i_m(mi) == pytest.approx(mi[0, 0] + mi[2, 1])

    p, m = small_problem(n=10), 4
    rng = np.random.default_rng(5)
    B, sw = rng.standard_normal((m, p.n)), random_spd(rng, m)
    perm = np.array([2, 0, 3, 1])
    r1, mi1 = lv.factor_mi(B, sw, p)
    r2, mi2 = lv.factor_mi(B[perm], sw[np.ix_(perm, perm)], p)
    assert lv.sap(r1) == pytest.approx(lv.sap(r2), abs=1e-15)
    assert lv.i_m(mi1) == pytest.approx(lv.i_m(mi2), abs=1e-15)
    assert lv.i_m(mi1) > 0 and lv.sap(r1) > 0


def test_a_non_positive_definite_covariance_fails_that_solution_only():
    p, m = small_problem(), 3
    b0, w0 = fp_inits(p.n, m, 2)
    w0[1] = -w0[1]
    sol = lv.solve_fixed_point(p.sigma_y, 4.0, 1.0, b0, w0, tol=1e-8, max_iters=5000)
    assert sol["converged"].tolist() == [True, False]
    assert sol["failure"] == ["", "initial Σ_W is not positive definite"]


# ----------------------------------------------------------------------------- command line

TINY = ["--n", "6", "--m", "2", "--s", "2", "--betas", "4", "--lambdas", "0", "1", "--solutions", "2",
        "--adamw-iters", "5", "--sweep-points", "3", "--workers", "1"]

BAD = [
    (["--n", "0"], "--n is 0"),
    (["--n", "6", "x"], "--n: invalid int value: 'x'"),
    (["--m", "-1"], "--m is -1"),
    (["--m", "7"], "--m is 7, larger than --n 6"),
    (["--s", "9"], "--s is 9, larger than --n 6"),
    (["--betas", "0"], "--betas is 0"),
    (["--betas", "nan"], "--betas is nan"),
    (["--lambdas", "-1"], "--lambdas is -1"),
    (["--lambdas", "inf"], "--lambdas is inf"),
    (["--tol", "0"], "--tol is 0"),
    (["--tol=-1e-6"], "--tol is -1e-06"),
    (["--solutions", "0"], "--solutions is 0"),
    (["--betas", "4", "4"], "--betas has duplicates"),
    (["--solvers", "newton"], "--solvers has 'newton'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--device", "tpu"], "--device is 'tpu': choose cpu or cuda"),
    (["--cells-per-solve", "0"], "--cells-per-solve is 0"),
]


@pytest.mark.parametrize("extra, needle", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_setting_is_one_line_exit_2(extra, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main_linear.main(TINY + ["--results-dir", str(tmp_path / "r")] + extra)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]


def test_grid_writes_tables_figures_resumes_and_refuses_other_settings(tmp_path, capsys):
    root = tmp_path / "r"
    main_linear.main(TINY + ["--results-dir", str(root)])
    out = capsys.readouterr().out
    assert "0 of 4 cells already done" in out and str(root / "results.csv") in out
    rows = main_linear.read_csv(root / "results.csv")
    assert len(rows) == 2 * 2 * 2 and {r["status"] for r in rows} <= {"converged", "done"}
    for name in ("summary.csv", "summary.txt", "Sigma_V_n6_m2_s2.npz", "Gamma_Sigma_Y_n6_m2_s2.npz",
                 "boxplots_betavae_n6_m2_s2.png", "heatmap_lambda_betavae_n6_m2_s2.png",
                 "collapse_vs_beta_n6_m2_s2.png", "adamw_vs_fixed_point_n6_m2_s2.png"):
        assert (root / name).exists(), name
    per_cell = {}
    for r in rows:
        per_cell.setdefault((r["solver"], r["beta"], r["lambda"]), set()).add(r["cell_seconds"])
    assert all(len(v) == 1 for v in per_cell.values())      # one time per cell, shared by its rows
    adamw = sum(v.pop() for k, v in per_cell.items() if k[0] == "adamw")
    time_table = (root / "summary.txt").read_text().split("Solving time per cell")[1].splitlines()
    adamw_line, = [line for line in time_table if line.startswith("| 6 | adamw | 2 |")]
    assert adamw_line.split(" | ")[6] == (f"{adamw:,.0f}" if adamw >= 10 else f"{adamw:.2f}")
    before = {f.name: f.stat().st_mtime_ns for f in (root / "cells").glob("*.csv")}

    main_linear.main(TINY + ["--results-dir", str(root)])
    assert "4 of 4 cells already done" in capsys.readouterr().out
    assert before == {f.name: f.stat().st_mtime_ns for f in (root / "cells").glob("*.csv")}

    with pytest.raises(SystemExit) as exit_:
        main_linear.main(TINY + ["--results-dir", str(root), "--solutions", "3"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was made with solutions=2, not 3" in err[0]


def test_collect_tabulates_finished_cells_and_solves_none(tmp_path, capsys):
    root = tmp_path / "r"
    main_linear.main(TINY + ["--results-dir", str(root)])
    (root / "cells" / "n6_adamw_beta4_lambda1.csv").unlink()
    capsys.readouterr()
    main_linear.main(TINY + ["--results-dir", str(root), "--collect"])
    out = capsys.readouterr().out
    assert "3 of 4 cells already done" in out and "solving none (1 not run yet)" in out
    assert "(1 of 4 cells not run yet: rerun without --collect)" in out.splitlines()[-1]
    assert not (root / "cells" / "n6_adamw_beta4_lambda1.csv").exists()
    assert len(main_linear.read_csv(root / "results.csv")) == 3 * 2
    text = (root / "summary.txt").read_text()
    adamw_im = text.split("n = 6, adamw: I_m")[1].splitlines()
    assert adamw_im[3].startswith("| 0 | 0.") and adamw_im[4] == "| 1 | not run |"
    assert "not run: 1 of n = 6's adamw cells have no results yet" in text
    assert "Every solution of the cells run entered the means" in text
    with pytest.raises(SystemExit):
        main_linear.main(TINY + ["--results-dir", str(tmp_path / "none"), "--collect"])
    err, = capsys.readouterr().err.strip().splitlines()
    assert "has no cells/ to collect" in err and not (tmp_path / "none").exists()


def test_a_folder_being_solved_is_refused_and_a_killed_writes_leftovers_are_swept(tmp_path, capsys, monkeypatch):
    root = tmp_path / "r"
    beats = []
    with monkeypatch.context() as patch:    # the lock's heartbeat: another host must not find it stale
        patch.setattr(main_linear.RunLock, "touch", lambda lock: beats.append(lock.path))
        main_linear.main(TINY + ["--results-dir", str(root)])
    assert beats and set(beats) == {root / main_linear.LOCK}
    assert not (root / main_linear.LOCK).exists()           # released at the end
    (root / "cells" / "n6_adamw_beta4_lambda1.csv").unlink()
    capsys.readouterr()
    held = main_linear.RunLock(root / main_linear.LOCK).acquire()       # a live run: this process
    try:
        with pytest.raises(SystemExit) as exit_:
            main_linear.main(TINY + ["--results-dir", str(root)])
        assert exit_.value.code == 2
        err, = capsys.readouterr().err.strip().splitlines()
        assert f"{root} is being solved by pid {os.getpid()}" in err and "--collect" in err
        assert not (root / "cells" / "n6_adamw_beta4_lambda1.csv").exists()
        main_linear.main(TINY + ["--results-dir", str(root), "--collect"])      # no lock needed
        assert "3 of 4 cells already done" in capsys.readouterr().out
    finally:
        held.release()
    # A write killed between its temporary file and the rename leaves the temporary behind.
    (root / "partial").mkdir()
    leftovers = [root / "partial" / ".n6_adamw_beta4_lambda1.pt.ab12cd34.tmp",
                 root / "cells" / ".n6_adamw_beta4_lambda1.csv.x_9yz012.tmp", root / ".results.csv.00000000.tmp"]
    for f in leftovers:
        f.write_bytes(b"half a file")
    main_linear.main(TINY + ["--results-dir", str(root)])
    assert "3 of 4 cells already done" in capsys.readouterr().out
    assert not any(f.exists() for f in leftovers) and not (root / "partial").exists()
    assert not (root / main_linear.LOCK).exists()


def test_a_cell_missing_outside_this_commands_grid_reads_not_run(tmp_path):
    root = tmp_path / "r"
    main_linear.main(TINY + ["--betas", "4", "8", "--results-dir", str(root)])
    for name in ("n6_adamw_beta4_lambda1", "n6_adamw_beta8_lambda0"):
        (root / "cells" / f"{name}.csv").unlink()
    main_linear.main(TINY + ["--betas", "4", "--lambdas", "0", "--results-dir", str(root), "--collect"])
    adamw_im = (root / "summary.txt").read_text().split("n = 6, adamw: I_m")[1].splitlines()
    assert adamw_im[1] == "| λ \\ β | 4 | 8 |"
    assert adamw_im[3].startswith("| 0 | 0.") and adamw_im[3].endswith("| not run |")
    assert adamw_im[4].startswith("| 1 | not run | 0.")
    text = (root / "summary.txt").read_text()
    assert "not run: 2 of n = 6's adamw cells have no results yet" in text
    assert "Every solution of the cells run entered the means" in text


def test_adamw_reports_its_steps_and_two_workers_give_the_rows_of_one(tmp_path, capsys, monkeypatch):
    p, m = small_problem(), 3
    steps = []
    lv.solve_adamw(p.sigma_y, 4.0, 1.0, adamw_inits(np.random.default_rng(2), p.n, m, 2), iters=250,
                   clip_ab=1.0, clip_l=2.0, progress=steps.append)
    assert steps == [100, 200, 250]

    # In a pool worker the steps go into the batch's slot of the array the main process polls.
    shared = multiprocessing.Array("q", 2, lock=False)
    monkeypatch.setattr(main_linear, "_STEPS_DONE", None)
    monkeypatch.setattr(main_linear, "_PARENT", None)
    main_linear._worker_setup(shared)
    task = {"problem": p, "m": m, "solver": "adamw", "beta": 4.0, "lambda": 1.0,
            "per_n": {"adamw_iters": 250, "clip_ab": 1.0, "clip_l": 2.0},
            "adamw": main_linear.settings_from_args(TINY)["adamw"],
            "inits": adamw_inits(np.random.default_rng(2), p.n, m, 2)}
    main_linear.solve_cells([task], slot=1)
    assert list(shared) == [0, 250]

    grid = TINY + ["--adamw-iters", "250", "--sweep-points", "0"]
    main_linear.main(grid + ["--results-dir", str(tmp_path / "one")])
    capsys.readouterr()
    main_linear.main(grid + ["--results-dir", str(tmp_path / "two"), "--workers", "2"])
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    assert "4.0/4" in bar[-1]
    one, two = (main_linear.read_csv(tmp_path / d / "results.csv") for d in ("one", "two"))
    assert [{k: v for k, v in r.items() if k != "cell_seconds"} for r in one] == \
        [{k: v for k, v in r.items() if k != "cell_seconds"} for r in two]


def test_a_folder_with_only_its_config_is_taken_over_one_with_cells_is_not(tmp_path, capsys):
    root = tmp_path / "r"
    root.mkdir()
    main_linear.check_results_dir(root, main_linear.settings_from_args(TINY + ["--solutions", "3"]))
    ours = main_linear.settings_from_args(TINY)
    main_linear.check_results_dir(root, ours)
    line, = capsys.readouterr().out.splitlines()
    assert str(root) in line and "held no cells" in line and "solutions=3" in line
    assert main_linear.read_json(root / "config.json")["solutions"] == ours["solutions"]
    (root / "cells").mkdir()
    with pytest.raises(main_linear.SettingError, match="was made with solutions=2, not 3"):
        main_linear.check_results_dir(root, main_linear.settings_from_args(TINY + ["--solutions", "3"]))


def adamw_inits(rng, n, m, k):
    return {"A": rng.standard_normal((k, n, m)), "B": rng.standard_normal((k, m, n)),
            "L_Z": np.stack([np.linalg.cholesky(random_spd(rng, n)) for _ in range(k)]),
            "L_W": np.stack([np.linalg.cholesky(random_spd(rng, m)) for _ in range(k)])}


def test_closed_form_gradients_equal_autograd_through_the_losses():
    p, m = small_problem(n=9), 3
    inits = adamw_inits(np.random.default_rng(5), p.n, m, 4)
    beta, lam = torch.tensor([1.0, 4.0, 16.0, 0.5], dtype=lv.DTYPE), torch.tensor([0.0, 2.0, 8.0, 1.0], dtype=lv.DTYPE)
    a, b, lz, lw = (torch.tensor(inits[key]) for key in ("A", "B", "L_Z", "L_W"))
    total, ok, grads = lv.loss_and_gradients(a, b, lz, lw, torch.tensor(p.sigma_y), beta, lam)
    leaves = [x.clone().requires_grad_(True) for x in (a, b, lz, lw)]
    jitter = lambda d: lv.JITTER * torch.eye(d, dtype=lv.DTYPE)
    out = lv.losses(leaves[0], leaves[1], leaves[2] @ leaves[2].mT + jitter(p.n), leaves[3] @ leaves[3].mT + jitter(m),
                    p.sigma_y, beta, lam)
    out["total"].sum().backward()
    assert ok.all()
    np.testing.assert_allclose(total, out["total"].detach(), rtol=1e-12)
    for name, ours, theirs in zip(("A", "B", "L_Z", "L_W"), grads, leaves):
        np.testing.assert_allclose(ours, theirs.grad, rtol=1e-10, atol=1e-10, err_msg=name)


def plain_loss_and_gradients(A, B, L_Z, L_W, sigma_y, beta, lam):
    """``lv.loss_and_gradients`` as first written, every operation out of place: the
    arithmetic that solved the study's first AdamW cells."""
    n, m, k = A.shape[-2], A.shape[-1], A.shape[0]
    eye_n, eye_m = torch.eye(n, dtype=A.dtype), torch.eye(m, dtype=A.dtype)
    sigma_w = L_W @ L_W.mT + lv.JITTER * eye_m
    by = B @ sigma_y
    sigma_x = by @ B.mT + sigma_w
    aby = A @ by
    err = sigma_y - aby - aby.mT + A @ sigma_x @ A.mT
    chol_z, _ = torch.linalg.cholesky_ex(L_Z @ L_Z.mT + lv.JITTER * eye_n)
    chol_w, _ = torch.linalg.cholesky_ex(sigma_w)
    inv_z, inv_w = torch.cholesky_inverse(chol_z), torch.cholesky_inverse(chol_w)
    logdet_z = 2 * chol_z.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet_w = 2 * chol_w.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    inv_z_err = inv_z @ err
    recon = 0.5 * (lv._trace(inv_z_err) + logdet_z + n * math.log(2 * math.pi))
    kl = 0.5 * (lv._trace(sigma_x) - logdet_w - m)
    total = recon + beta * kl + lam * lv._trace(err)
    b3, l3 = beta.reshape(k, 1, 1), lam.reshape(k, 1, 1)
    g = 0.5 * inv_z + l3 * eye_n
    ga = g @ A
    return total, (2 * (g @ (A @ sigma_x) - g @ by.mT), 2 * (ga.mT @ (aby - sigma_y)) + b3 * by,
                   (inv_z - inv_z_err @ inv_z) @ L_Z, 2 * (A.mT @ ga + 0.5 * b3 * (eye_m - inv_w)) @ L_W)


def test_the_in_place_gradients_are_bit_for_bit_the_plain_ones():
    """The in-place forms must not move a single bit: cells solved before and after share a table."""
    p, m = small_problem(n=12), 4
    inits = adamw_inits(np.random.default_rng(8), p.n, m, 5)
    beta = torch.tensor([1.0, 4.0, 8.0, 16.0, 32.0], dtype=lv.DTYPE)
    lam = torch.tensor([0.0, 2.0, 4.0, 6.0, 8.0], dtype=lv.DTYPE)
    args = [torch.tensor(inits[key]) for key in ("A", "B", "L_Z", "L_W")] + [torch.tensor(p.sigma_y), beta, lam]
    total, _, grads = lv.loss_and_gradients(*args)
    plain_total, plain_grads = plain_loss_and_gradients(*args)
    assert torch.equal(total, plain_total)
    for name, ours, plain in zip(("A", "B", "L_Z", "L_W"), grads, plain_grads):
        assert torch.equal(ours, plain), name


def test_a_cells_adamw_result_does_not_depend_on_the_cells_beside_it():
    """Several (β, λ) cells in one batch: each cell's best iterate equals the cell solved alone."""
    p, m = small_problem(), 3
    inits = adamw_inits(np.random.default_rng(6), p.n, m, 2)
    cells = [(1.0, 0.0), (4.0, 2.0), (16.0, 8.0)]
    stacked = {key: np.concatenate([v] * len(cells)) for key, v in inits.items()}
    beta = np.repeat([c[0] for c in cells], 2)
    lam = np.repeat([c[1] for c in cells], 2)
    batch = lv.solve_adamw(p.sigma_y, beta, lam, stacked, iters=60, clip_ab=1.0, clip_l=2.0, lr=1e-2)
    for c, (b_, l_) in enumerate(cells):
        alone = lv.solve_adamw(p.sigma_y, b_, l_, inits, iters=60, clip_ab=1.0, clip_l=2.0, lr=1e-2)
        np.testing.assert_array_equal(alone["best_iteration"], batch["best_iteration"][2 * c:2 * c + 2])
        for key in ("A", "B", "sigma_z", "sigma_w"):
            np.testing.assert_allclose(alone[key], batch[key][2 * c:2 * c + 2], rtol=0, atol=1e-12, err_msg=key)


def test_a_solutions_step_at_the_studys_size_does_not_depend_on_its_batch():
    # n = 100, m = 10, K = 50 against two batches of 25 (other cells' β, λ): one step's loss and
    # gradients agree to 1e-12 relative. (Not bit for bit: torch computes B Σ_Y for a whole batch as
    # one product, whose rounding depends on the batch size; docs/linear.md says what that does.)
    rng = np.random.default_rng(7)
    n, m, k = 100, 10, 50
    p = small_problem(n=n, s=5, seed=3)
    inits = adamw_inits(rng, n, m, k)
    beta, lam = np.repeat([1.0, 4.0], 25), np.repeat([0.0, 8.0], 25)
    def step(sl):
        a, b, lz, lw = (torch.tensor(inits[key][sl]) for key in ("A", "B", "L_Z", "L_W"))
        total, ok, grads = lv.loss_and_gradients(a, b, lz, lw, torch.tensor(p.sigma_y),
                                                 torch.tensor(beta[sl]), torch.tensor(lam[sl]))
        return [total, *grads]
    whole = step(slice(None))
    halves = [torch.cat(parts) for parts in zip(step(slice(0, 25)), step(slice(25, 50)))]
    for name, x, y in zip(("total", "A", "B", "L_Z", "L_W"), whole, halves):
        scale = y.abs().amax(dim=tuple(range(1, y.dim()))) if y.dim() > 1 else y.abs()
        err = (x - y).abs().amax(dim=tuple(range(1, y.dim()))) if y.dim() > 1 else (x - y).abs()
        assert (err <= 1e-12 * scale).all(), name


def test_cells_solved_in_one_batch_give_the_rows_of_cells_solved_one_by_one(tmp_path):
    grid = TINY + ["--betas", "4", "16", "--solvers", "adamw", "--sweep-points", "0"]
    main_linear.main(grid + ["--results-dir", str(tmp_path / "one")])
    main_linear.main(grid + ["--results-dir", str(tmp_path / "all"), "--cells-per-solve", "4"])
    one, batched = (main_linear.read_csv(tmp_path / d / "results.csv") for d in ("one", "all"))
    assert len(one) == len(batched) == 2 * 2 * 2
    for a, b in zip(one, batched):
        assert (a["beta"], a["lambda"], a["solution"]) == (b["beta"], b["lambda"], b["solution"])
        assert (a["status"], a["best_iteration"]) == (b["status"], b["best_iteration"])
        for key in linear_report.METRICS:
            assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-12), key


def test_a_run_over_some_lambdas_adds_to_the_collapse_sweep_and_drops_nothing(tmp_path):
    one_run, in_parts = tmp_path / "one", tmp_path / "parts"
    settings = TINY[:TINY.index("--lambdas")] + TINY[TINY.index("--solutions"):] + ["--solvers", "fixed-point"]
    main_linear.main(settings + ["--lambdas", "0", "1", "3", "--results-dir", str(one_run)])
    main_linear.main(settings + ["--lambdas", "0", "1", "--results-dir", str(in_parts)])
    main_linear.main(settings + ["--lambdas", "3", "1", "--results-dir", str(in_parts)])
    name = "collapse_sweep_n6_m2_s2.csv"
    merged = (in_parts / name).read_text()
    assert merged == (one_run / name).read_text()
    assert {r["lambda"] for r in main_linear.read_csv(in_parts / name)} == {0.0, 1.0, 3.0}
    main_linear.main(settings + ["--lambdas", "5", "--results-dir", str(in_parts), "--collect"])
    assert (in_parts / name).read_text() == merged          # --collect solves no new λ


def test_a_saved_sweep_keeps_its_unconverged_points(tmp_path):
    path = tmp_path / "sweep.csv"
    main_linear.write_csv(path, [{"n": 6, "beta": 2.0, "lambda": 0.0, "converged": False, "failure": None}])
    cfg = {"lambdas": [0.0]}
    row, = main_linear.update_sweep(path, draws=None, cfg=cfg, n=6)
    assert row["converged"] is False and row["failure"] == ""


def test_no_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        main_linear.main(TINY + ["--results-dir", str(tmp_path / "r"), "--device", "cuda"])
    err, = capsys.readouterr().err.strip().splitlines()
    assert "--device cuda: no CUDA device is visible to torch; use --device cpu" in err


def test_the_solver_figure_puts_each_cell_at_adamws_gap_to_the_fixed_point(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    figures = []
    monkeypatch.setattr(linear_report, "_save", lambda fig, path: figures.append(fig))
    cells = (("fixed-point", 4.0, 0.0, 10.0, 0.5, 0.2), ("adamw", 4.0, 0.0, 10.5, 0.4, 0.3),
             ("fixed-point", 1.0, 2.0, 20.0, 1.5, None), ("adamw", 1.0, 2.0, 16.0, 1.6, 0.1),
             ("fixed-point", 8.0, 0.0, 12.0, 0.0, 0.0))                             # the last: no AdamW, not drawn
    summary = [{"n": 6, "solver": solver, "beta": beta, "lambda": lam, "used": 4, "total_mean": total,
                "total_std": 0.1, "i_m_mean": i_m, "i_m_std": i_m_std}
               for solver, beta, lam, total, i_m, i_m_std in cells]
    linear_report.draw_solvers(summary, 6, 2, 2, tmp_path)
    total_ax, i_m_ax = figures[0].axes

    def points(ax):   # (x, y, half-length of the error bar) per drawn cell
        out = []
        for c in ax.containers:
            if c.lines[0] is not None and len(c.lines[0].get_xdata()):
                (bar,) = c.lines[2]
                low, high = bar.get_segments()[0][:, 1]
                out.append((float(c.lines[0].get_xdata()[0]), float(c.lines[0].get_ydata()[0]), (high - low) / 2))
        return sorted(out)
    # β = 1 is the first tick, β = 4 the second; λ = 0 sits left of the tick, λ = 2 right of it.
    (x1, gap1, err1), (x4, gap4, err4) = points(total_ax)
    assert x1 == pytest.approx(1 - 1 + 0.3) and x4 == pytest.approx(2 - 1 - 0.3)
    assert gap1 == pytest.approx(100 * (16.0 - 20.0) / 20.0) and gap4 == pytest.approx(100 * 0.5 / 10.0)
    assert err4 == pytest.approx(100 * math.sqrt(2 * 0.1 ** 2 / 4) / 10.0)
    (_, d1, e1), (_, d4, e4) = points(i_m_ax)
    assert d1 == pytest.approx(0.1) and d4 == pytest.approx(-0.1)
    assert e1 == pytest.approx(math.sqrt(0.1 ** 2 / 4)) and e4 == pytest.approx(math.sqrt((0.09 + 0.04) / 4))
    assert total_ax.get_yscale() == "symlog"
    table = linear_report.summary_text([dict(e, solutions=4, sap_mean=0.1) for e in summary]).splitlines()
    assert "| 1 | 2 (no minimum) | -2.00e-01 ± 3.5e-03 | +0.100 ± 0.050 |" in table
    assert "| 4 | 0 | +5.00e-02 ± 7.1e-03 | -0.100 ± 0.180 |" in table
    assert "no minimum" in " ".join(t.get_text() for t in total_ax.get_legend().get_texts())
    plt.close("all")
    assert linear_report.draw_solvers([e for e in summary if e["solver"] == "fixed-point"], 6, 2, 2, tmp_path) is None


def test_adamw_resumed_from_a_saved_state_ends_bit_for_bit_where_an_unbroken_solve_does():
    """A state saved part way (serialised, as a file would hold it) and passed back as ``resume``
    continues the solve exactly: best iterates, best steps and failures alike."""
    import io
    p, m = small_problem(), 3
    inits = adamw_inits(np.random.default_rng(7), p.n, m, 3)
    inits["A"][2, 0, 0] = np.nan                      # a solution that fails at step 1 stays failed
    beta, lam = np.array([1.0, 4.0, 4.0]), np.array([0.0, 2.0, 2.0])
    kwargs = dict(iters=350, clip_ab=1.0, clip_l=2.0, lr=1e-2)
    whole = lv.solve_adamw(p.sigma_y, beta, lam, inits, **kwargs)
    saved = {}

    def save(step, state):
        buffer = io.BytesIO()
        torch.save(state(), buffer)
        saved[step] = buffer.getvalue()
    lv.solve_adamw(p.sigma_y, beta, lam, inits, **kwargs, save=save)
    assert sorted(saved) == [100, 200, 300]                # never at the last step: the result is written then
    resume = torch.load(io.BytesIO(saved[200]), weights_only=True)
    assert resume["step"] == 200
    resumed = lv.solve_adamw(p.sigma_y, beta, lam, inits, **kwargs, resume=resume)
    assert whole["failure"][2].endswith("iteration 1") and resumed["failure"] == whole["failure"]
    assert 1 < whole["best_iteration"][0] <= 350
    for key in ("A", "B", "sigma_z", "sigma_w", "best_iteration"):
        np.testing.assert_array_equal(resumed[key], whole[key], err_msg=key)


def test_an_interrupted_adamw_cell_resumes_from_its_partial_state(tmp_path, capsys, monkeypatch):
    """Killed after a save, the cell's batch leaves partial/<cell>.pt; the rerun resumes from it
    (not from step 0) and writes the rows an uninterrupted run writes; partial/ is then gone."""
    import contextlib
    grid = TINY + ["--betas", "4", "--lambdas", "1", "--solvers", "adamw", "--adamw-iters", "250",
                   "--sweep-points", "0"]
    main_linear.main(grid + ["--results-dir", str(tmp_path / "whole")])

    monkeypatch.setattr(main_linear, "PARTIAL_SECONDS", 0)
    real_write, saves = main_linear.atomic_write, []

    @contextlib.contextmanager
    def killed_after_two_saves(path, mode="w"):
        with real_write(path, mode) as f:
            yield f
        saves.extend([path] if path.suffix == ".pt" else [])
        if len(saves) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(main_linear, "atomic_write", killed_after_two_saves)
    root = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        main_linear.main(grid + ["--results-dir", str(root)])
    partial = root / "partial" / "n6_adamw_beta4_lambda1.pt"
    assert saves[-1] == partial and not (root / "cells" / "n6_adamw_beta4_lambda1.csv").exists()
    assert torch.load(partial, weights_only=True)["step"] == 200
    monkeypatch.setattr(main_linear, "atomic_write", real_write)

    capsys.readouterr()
    with pytest.raises(SystemExit):
        main_linear.main(grid + ["--results-dir", str(root), "--collect"])
    assert "has no cells/ to collect (1 AdamW batch(es) stopped part way in partial/)" in capsys.readouterr().err
    main_linear.main(grid + ["--lambdas", "0", "--results-dir", str(root)])          # another cell is finished
    main_linear.main(grid + ["--results-dir", str(root), "--collect"])
    assert "n6_adamw_beta4_lambda1 at step 200 (a run without --collect resumes them)" in capsys.readouterr().out
    assert partial.exists()

    resumed_at = []
    real_solve = lv.solve_adamw
    monkeypatch.setattr(lv, "solve_adamw", lambda *a, resume=None, **k: (
        resumed_at.append(resume and resume["step"]), real_solve(*a, resume=resume, **k))[1])
    capsys.readouterr()
    main_linear.main(grid + ["--results-dir", str(root)])
    out, err = capsys.readouterr()
    assert "1 AdamW batch(es) stopped part way wait in" in out
    assert resumed_at == [200] and not (root / "partial").exists()
    bar = err.replace("\r", "\n").strip().splitlines()
    assert "0.8/1" in bar[0] and "1.0/1" in bar[-1]             # the bar starts where the save left off
    whole, resumed = (main_linear.read_csv(d / "cells" / "n6_adamw_beta4_lambda1.csv")
                      for d in (tmp_path / "whole", root))
    assert [{k: v for k, v in r.items() if k != "cell_seconds"} for r in resumed] == \
        [{k: v for k, v in r.items() if k != "cell_seconds"} for r in whole]

    # A state from other inputs (here: a tampered fingerprint) is not resumed: the batch starts over.
    (root / "cells" / "n6_adamw_beta4_lambda1.csv").unlink()
    partial.parent.mkdir()
    torch.save({"fingerprint": "another batch", "step": 200}, partial)
    resumed_at.clear()
    main_linear.main(grid + ["--results-dir", str(root)])
    assert resumed_at == [None] and not partial.exists()


def test_a_worker_whose_run_was_killed_saves_its_batch_and_stops(tmp_path, monkeypatch):
    """Killing the main process alone leaves the pool's workers running; at its next 100 steps a
    worker sees another parent, saves its batch at once (not two minutes later) and exits."""
    p, m = small_problem(), 3
    task = {"problem": p, "m": m, "solver": "adamw", "beta": 4.0, "lambda": 1.0,
            "per_n": {"adamw_iters": 250, "clip_ab": 1.0, "clip_l": 2.0},
            "adamw": main_linear.settings_from_args(TINY)["adamw"],
            "inits": adamw_inits(np.random.default_rng(2), p.n, m, 2)}

    class Exited(Exception):
        pass

    def exit_():
        raise Exited
    monkeypatch.setattr(main_linear, "_stop_orphan", exit_)
    monkeypatch.setattr(main_linear, "_PARENT", os.getppid())
    main_linear.solve_cells([task], partial=tmp_path)            # its parent lives: no save, no exit
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(main_linear, "_PARENT", os.getppid() + 1)
    with pytest.raises(Exited):
        main_linear.solve_cells([task], partial=tmp_path)
    assert torch.load(tmp_path / "n8_adamw_beta4_lambda1.pt", weights_only=True)["step"] == 100


def test_initial_point_correlations_pair_solutions_by_index_and_skip_failed_ones(tmp_path):
    """scripts/linear_rotations.py --inherited: solution i of one cell against solution i of the
    others (rows stored out of order), failed solutions left out, one list of pairs per solver."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import linear_rotations
    i_m = {(4.0, 2.0): [1.0, 2.0, 3.0, 4.0, 9.0], (8.0, 2.0): [2.0, 4.0, 6.0, 8.0, -9.0],
           (16.0, 2.0): [4.0, 3.0, 2.0, 1.0, 0.0]}
    for c, ((beta, lam), values) in enumerate(i_m.items()):
        rows = [{"solution": i, "i_m": v, "status": "failed" if i == 4 and beta == 8.0 else "done"}
                for i, v in enumerate(values)]
        rows = rows[c:] + rows[:c]                   # each cell's file in another order
        main_linear.write_csv(tmp_path / "cells" / f"{main_linear.cell_name(6, 'adamw', beta, lam)}.csv", rows)
    found = linear_rotations.initial_point_correlations(tmp_path, 6, sorted(i_m) + [(32.0, 2.0)])
    assert found["fixed-point"] == {"cells": [], "correlations": []}
    assert found["adamw"]["cells"] == sorted(i_m)
    np.testing.assert_allclose(found["adamw"]["correlations"],
                               [1.0, np.corrcoef(i_m[4.0, 2.0], i_m[16.0, 2.0])[0, 1], -1.0])


def test_adamw_with_the_studys_settings_gives_the_folders_rows_and_changed_settings_move_them(tmp_path):
    """scripts/linear_adamw_settings.py: its solve is the study's (0 change with no setting
    changed), it pairs solutions by index, and a changed setting reaches the solver."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import linear_adamw_settings as las
    root = tmp_path / "r"
    main_linear.main(TINY + ["--lambdas", "1", "--results-dir", str(root)])
    folder = main_linear.read_csv(root / "cells" / "n6_adamw_beta4_lambda1.csv")
    same = las.solve_with(root, 6, [(4.0, 1.0)], {})
    keys = ("solution", "recon", "kl", "total", "sap", "i_m", "best_iteration")
    assert [[r[k] for k in keys] for r in same] == [[r[k] for k in keys] for r in folder]
    assert "| 4 | 1 | 2 |" in las.report(root, 6, same, {}) and "| 0.0e+00 |" in las.report(root, 6, same, {})
    first = las.solve_with(root, 6, [(4.0, 1.0)], {}, solutions=1)
    assert [[r[k] for k in keys] for r in first] == [[r[k] for k in keys] for r in folder[:1]]
    clipped = las.solve_with(root, 6, [(4.0, 1.0)], {"clip_ab": 1e-3})
    assert all(a["total"] != b["total"] for a, b in zip(clipped, folder))
    scaled = las.solve_with(root, 6, [(4.0, 1.0)], {}, init_scale=3.0)
    assert all(a["total"] != b["total"] for a, b in zip(scaled, folder))
    blind = las.solve_with(root, 6, [(4.0, 1.0)], {}, second_moment="matrix")
    assert all(a["total"] != b["total"] for a, b in zip(blind, folder))
    assert "second_moment matrix" in las.report(root, 6, blind, {"second_moment": "matrix"})
    line = las.report(root, 6, clipped, {"clip_ab": 1e-3}).splitlines()[-1]
    by_hand = np.mean([a["i_m"] - b["i_m"] for a, b in zip(clipped, folder)])
    assert line.split(" | ")[4].startswith(f"{by_hand:+.3f} ± ")


def test_a_cells_rotations_keep_its_loss_and_their_figure_is_drawn(tmp_path):
    """scripts/linear_rotations.py: the rotations' percentiles (per solution, averaged) are
    ordered and spread, every rotation keeps the total, and the figure is written."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import linear_rotations
    draws = lv.draw_study([6], 2, 2, 4, 42)[6]
    cell = linear_rotations.rotation_cell(draws, {"tol": 1e-9, "fp_iters": 20_000}, 4.0, 1.0, 60)
    lo, q1, mid, q3, hi = cell["percentiles"]
    assert cell["solutions"] == 4 and lo < q1 < mid < q3 < hi and cell["drift"] < 1e-12
    sol = lv.solve_fixed_point(draws.problem.sigma_y, 4.0, 1.0, draws.fixed_point["B"],
                               draws.fixed_point["sigma_w"], 1e-9, 20_000)
    own = [lv.i_m(lv.factor_mi(sol["B"][i], sol["sigma_w"][i], draws.problem)[1]) for i in range(4)]
    assert cell["fixed_point"] == pytest.approx(np.mean(own), rel=1e-12)
    assert cell["fixed_point_se"] == pytest.approx(np.std(own, ddof=1) / 2, rel=1e-12)
    rotated = [lv.i_m_over_rotations(sol["B"][i], sol["sigma_w"][i], draws.problem,
                                     ortho_group.rvs(2, size=60, random_state=i)).mean() for i in range(4)]
    assert cell["mean"] == pytest.approx(np.mean(rotated), rel=1e-12)
    assert f"| {0.5 - cell['mean']:+.3f} ± 0.100 |" in linear_rotations.table_row(cell, (0.5, 0.1))
    assert "| – | – |" in linear_rotations.table_row(cell, None)
    columns = linear_rotations.TABLE_HEADER.splitlines()[1].count("---")
    assert linear_rotations.table_row(cell, (0.5, 0.1)).count("|") - 1 == columns
    path = linear_rotations.draw_rotations([cell], {(4.0, 1.0): (0.5, 0.1)}, 6, 60, tmp_path / "rotations.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
