"""The linear-Gaussian β-VAE and λβ-VAE of Vu, Wan & Wei (2026), solved exactly.

Data Y = ΓV + noise with Σ_V = diag(u), Σ_Y = Γ Σ_V Γᵀ + 0.05·I. Encoder X|Y ~ N(BY, Σ_W),
decoder Y|X ~ N(AX, Σ_Z), prior X ~ N(0, I). Every expected loss and every metric is a
closed-form function of (A, B, Σ_Z, Σ_W), so nothing here samples: the paper's claim
(mutual information collapses as β grows, λ·L2 brings it back) is checked exactly.

Two solvers minimise total = recon + β·KL + λ·L2, both batched over a leading axis of K
independent solutions (a stack of K problems is K separate runs: every operation here is
per matrix, and AdamW is elementwise):
- ``solve_fixed_point``: alternating exact minimisation, decoder first (the paper's updates);
- ``solve_adamw``: AdamW on (A, B, L_Z, L_W) with Σ = L Lᵀ + 5e-5·I, as in the paper.

Metrics follow the paper: ρ²_ij between latent X_i and factor V_j from Cov(X, V) = B Γ Σ_V,
Gaussian MI_ij = −½ log(1 − ρ²_ij), SAP (Kumar et al. 2018) on ρ², and I_m, the total MI of
the best one-to-one latent–factor matching (Hungarian method, Kuhn 1955).

``predicted_information`` gives the collapse thresholds of the fixed point, derived in
docs/linear.md: latent k (reading the k-th principal direction of Y, variance d_k) carries
½ log(2λ d_k / (β − 1)) nats when β < 1 + 2λ d_k and none beyond; at λ = 0 every latent
collapses for every β > 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import make_spd_matrix

DTYPE = torch.float64
NOISE_VAR = 0.05          # the observation noise in Σ_Y
JITTER = 5e-5             # AdamW's Σ = L Lᵀ + JITTER·I keeps Σ_Z, Σ_W positive definite
SOLVERS = ("fixed-point", "adamw")
STUDY_NS = (50, 100)      # the original's data dimensions, in the order it draws them
PROGRESS_EVERY = 100      # AdamW steps between progress reports (a few seconds of a 50-solution cell)


@dataclass(frozen=True)
class Problem:
    """One generative model: factor variances Σ_V (diagonal, as a vector), mixing Γ, data covariance Σ_Y."""
    sigma_v: np.ndarray   # (s,)
    gamma: np.ndarray     # (n, s)
    sigma_y: np.ndarray   # (n, n)

    @property
    def n(self) -> int:
        return self.gamma.shape[0]

    @property
    def s(self) -> int:
        return self.gamma.shape[1]


@dataclass
class Draws:
    """Everything random for one n, drawn in the original's order: Σ_V, Γ, fixed-point inits, AdamW inits."""
    problem: Problem
    fixed_point: dict     # B (K, m, n), sigma_w (K, m, m)
    adamw: dict           # A (K, n, m), B (K, m, n), L_Z (K, n, n), L_W (K, m, m)


def draw_problem(n: int, s: int) -> Problem:
    """Σ_V = diag(u), u ~ U(0.1, 1)^s, then Γ ~ N(0, 1)^{n×s}, from NumPy's global generator (as the original)."""
    sigma_v = np.random.uniform(0.1, 1.0, s)
    gamma = np.random.randn(n, s)
    sigma_y = gamma @ np.diag(sigma_v) @ gamma.T + NOISE_VAR * np.eye(n)
    return Problem(sigma_v, gamma, sigma_y)


def draw_fixed_point_inits(n: int, m: int, k: int) -> dict:
    """B ~ U[0, 1)^{m×n} and Σ_W = make_spd_matrix(m) per solution, interleaved as the original draws them."""
    bs, ws = [], []
    for _ in range(k):
        bs.append(np.random.rand(m, n))
        ws.append(make_spd_matrix(m))
    return {"B": np.stack(bs), "sigma_w": np.stack(ws)}


def draw_adamw_inits(n: int, m: int, k: int) -> dict:
    """Solution i: torch.manual_seed(42 + i), A, B ~ N(0, 1); L_Z, L_W Cholesky factors of make_spd_matrix."""
    out = {"A": [], "B": [], "L_Z": [], "L_W": []}
    for i in range(k):
        torch.manual_seed(42 + i)
        out["A"].append(torch.randn(n, m, dtype=DTYPE).numpy())
        out["B"].append(torch.randn(m, n, dtype=DTYPE).numpy())
        out["L_Z"].append(np.linalg.cholesky(make_spd_matrix(n)))
        out["L_W"].append(np.linalg.cholesky(make_spd_matrix(m)))
    return {key: np.stack(v) for key, v in out.items()}


def draw_order(ns) -> list[int]:
    """The order the problems of ``ns`` are drawn in. The original draws n = 50, then n = 100, from
    one stream, so n = 100's problem depends on n = 50's draws. A study asking for any of the
    original's n therefore draws them first, in the original's order, up to the last one asked
    for (``--n 100`` alone gets the full grid's n = 100 problem, not a fresh one); other n follow
    in the order given."""
    asked = [n for n in STUDY_NS if n in ns]
    original = list(STUDY_NS[:STUDY_NS.index(asked[-1]) + 1]) if asked else []
    return original + [n for n in ns if n not in original]


def draw_study(ns, m: int, s: int, solutions: int, seed: int = 42) -> dict[int, Draws]:
    """All random draws of a study: one global seed, then per n (in ``draw_order``) Σ_V, Γ, the
    fixed-point inits and the AdamW inits. Both init sets are always drawn, so running one solver
    alone sees the same problem and inits as running both. Returns the n asked for, in their order."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    draws = {}
    for n in draw_order(ns):
        problem = draw_problem(n, s)
        fp = draw_fixed_point_inits(n, m, solutions)
        aw = draw_adamw_inits(n, m, solutions)
        draws[n] = Draws(problem, fp, aw)
    return {n: draws[n] for n in ns}


# ----------------------------------------------------------------------------- losses

def _t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=DTYPE)


def _trace(x: torch.Tensor) -> torch.Tensor:
    return x.diagonal(dim1=-2, dim2=-1).sum(-1)


def _add_to_diagonal(x: torch.Tensor, value) -> torch.Tensor:
    """x + value·I for a batch of square matrices, in place; ``value``: a number or (K,)."""
    diagonal = x.diagonal(dim1=-2, dim2=-1)
    diagonal.add_(value.unsqueeze(-1) if torch.is_tensor(value) else value)
    return x


def _per_solution(value, k: int) -> torch.Tensor:
    """A scalar or one value per solution, as a (K, 1, 1) tensor that broadcasts over matrices."""
    return _t(value).expand(k).reshape(k, 1, 1)


def losses(A, B, sigma_z, sigma_w, sigma_y, beta=1.0, lam=0.0) -> dict:
    """Closed-form expected per-sample losses of the linear λβ-VAE (Vu, Wan & Wei 2026).

    recon = E[−log N(Y; AX, Σ_Z)] = ½[tr(Σ_Z⁻¹ E) + log det Σ_Z + n log 2π], where
    E = E[(Y − AX)(Y − AX)ᵀ] = (I − AB) Σ_Y (I − AB)ᵀ + A Σ_W Aᵀ; expanding tr(Σ_Z⁻¹ E) gives the
    paper's four traces. KL = ½(tr Σ_X − log det Σ_W − m) with Σ_X = B Σ_Y Bᵀ + Σ_W, L2 = tr E,
    total = recon + β·KL + λ·L2. Works on torch tensors with any leading batch shape (autograd
    flows through); log-determinants and Σ_Z⁻¹ come from Cholesky factors, never det or inverse.
    ``ok`` is False where Σ_Z or Σ_W is not positive definite (the values there are meaningless).
    """
    A, B, sigma_z, sigma_w, sigma_y = (_t(x) for x in (A, B, sigma_z, sigma_w, sigma_y))
    n, m = sigma_y.shape[-1], B.shape[-2]
    by = B @ sigma_y
    sigma_x = by @ B.mT + sigma_w
    aby = A @ by
    err = sigma_y - aby - aby.mT + A @ sigma_x @ A.mT
    chol_z, info_z = torch.linalg.cholesky_ex(sigma_z)
    chol_w, info_w = torch.linalg.cholesky_ex(sigma_w)
    logdet_z = 2 * chol_z.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet_w = 2 * chol_w.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    recon = 0.5 * (_trace(torch.cholesky_solve(err, chol_z)) + logdet_z + n * math.log(2 * math.pi))
    kl = 0.5 * (_trace(sigma_x) - logdet_w - m)
    l2 = _trace(err)
    total = recon + _t(beta) * kl + _t(lam) * l2
    ok = (info_z == 0) & (info_w == 0) & torch.isfinite(total)
    return {"recon": recon, "kl": kl, "l2": l2, "total": total, "ok": ok}


# ----------------------------------------------------------------------------- fixed point

def _decoder(b, sigma_w, sigma_y):
    """Optimal decoder mean for an encoder: A = (Σ_Y⁻¹ + Bᵀ Σ_W⁻¹ B)⁻¹ Bᵀ Σ_W⁻¹ = Σ_Y Bᵀ Σ_X⁻¹
    (push-through identity), so only the m×m Σ_X is factorised, not an n×n matrix."""
    by = b @ sigma_y
    chol_x, info = torch.linalg.cholesky_ex(by @ b.mT + sigma_w)
    return torch.cholesky_solve(by, chol_x).mT, info


def solve_fixed_point(sigma_y, beta, lam, B0, sigma_w0, tol: float, max_iters: int) -> dict:
    """The paper's fixed-point iteration for K solutions at once (leading axis of B0, sigma_w0).

    One iteration is a decoder update, A = (Σ_Y⁻¹ + Bᵀ Σ_W⁻¹ B)⁻¹ Bᵀ Σ_W⁻¹ and
    Σ_Z = (Σ_Y⁻¹ + Bᵀ Σ_W⁻¹ B)⁻¹, then an encoder update with S = (Σ_Z⁻¹ + 2λI)/β:
    B = (I + Aᵀ S A)⁻¹ Aᵀ S, Σ_W = (I + Aᵀ S A)⁻¹. Each update is the exact minimiser of the
    total loss in its half, so the total never increases. A solution converges when both
    ‖ΔB‖_F and ‖ΔΣ_W‖_F over one iteration are ≤ tol; it then stops (its state is frozen), so
    each solution follows exactly the single-solution algorithm. ``beta`` and ``lam`` may be
    scalars or one value per solution.

    Returned: A, B, Σ_Z, Σ_W (NumPy, the final encoder with its optimal decoder), iterations,
    converged (bool) and failure ('' or why: a covariance that stopped being positive definite).
    """
    sigma_y = _t(sigma_y)
    b_all, w_all = _t(B0).clone(), _t(sigma_w0).clone()
    k, m = b_all.shape[0], b_all.shape[1]
    beta_all, lam_all = _per_solution(beta, k), _per_solution(lam, k)
    eye_m = torch.eye(m, dtype=DTYPE)
    chol_w, info = torch.linalg.cholesky_ex(w_all)
    p_all = torch.cholesky_inverse(chol_w)          # Σ_W⁻¹, carried exactly from then on
    iterations = np.zeros(k, dtype=np.int64)
    converged = np.zeros(k, dtype=bool)
    failure = ["" for _ in range(k)]
    for i in np.flatnonzero(info.numpy() > 0):
        failure[i] = "initial Σ_W is not positive definite"

    active = torch.as_tensor(np.flatnonzero(info.numpy() == 0))
    b, p, w = b_all[active], p_all[active], w_all[active]
    bt, lt = beta_all[active], lam_all[active]
    for it in range(1, max_iters + 1):
        if active.numel() == 0:
            break
        a, info_x = _decoder(b, w, sigma_y)
        # Aᵀ Σ_Z⁻¹ = Σ_W⁻¹ B for this decoder, so Aᵀ S needs no n×n inverse.
        ats = (p @ b + 2 * lt * a.mT) / bt
        p_new = eye_m + ats @ a
        chol_p, info_p = torch.linalg.cholesky_ex(p_new)
        b_new = torch.cholesky_solve(ats, chol_p)
        w_new = torch.cholesky_inverse(chol_p)
        step_b, step_w = (b_new - b).norm(dim=(-2, -1)), (w_new - w).norm(dim=(-2, -1))
        bad = (info_x > 0) | (info_p > 0) | ~torch.isfinite(step_b + step_w)   # a NaN anywhere makes its norm NaN
        done = (step_b <= tol) & (step_w <= tol)
        if bad.any():               # a failed solution keeps its last good state
            keep = ~bad[:, None, None]
            b_new, w_new, p_new = torch.where(keep, b_new, b), torch.where(keep, w_new, w), torch.where(keep, p_new, p)
        b, w, p = b_new, w_new, p_new
        leaving = done | bad
        if it == max_iters:
            leaving = torch.ones_like(done)
        if leaving.any():
            idx = active[leaving]
            iterations[idx.numpy()] = it
            b_all[idx], w_all[idx], p_all[idx] = b[leaving], w[leaving], p[leaving]
            for j, sol in zip(np.flatnonzero(leaving.numpy()), idx.numpy()):
                if bad[j]:
                    what = "Σ_X" if info_x[j] > 0 else "I + AᵀSA"
                    failure[sol] = f"{what} not positive definite (or non-finite) at iteration {it}"
                converged[sol] = bool(done[j])
            stay = ~leaving
            active, b, w, p, bt, lt = active[stay], b[stay], w[stay], p[stay], bt[stay], lt[stay]

    a_all, info_x = _decoder(b_all, w_all, sigma_y)
    # Σ_Z from its precision: Σ_Y − A B Σ_Y would lose digits where Σ_Z ≪ Σ_Y.
    prec_z = torch.cholesky_inverse(torch.linalg.cholesky(sigma_y)) + b_all.mT @ p_all @ b_all
    chol_z, info_z = torch.linalg.cholesky_ex(prec_z)
    sigma_z = torch.cholesky_inverse(chol_z)
    for i in np.flatnonzero(((info_x > 0) | (info_z > 0)).numpy()):
        if not failure[i]:
            failure[i] = "final decoder covariance not positive definite"
    converged &= np.array([f == "" for f in failure])
    return {"A": a_all.numpy(), "B": b_all.numpy(), "sigma_z": sigma_z.numpy(), "sigma_w": w_all.numpy(),
            "iterations": iterations, "converged": converged, "failure": failure}


# ----------------------------------------------------------------------------- AdamW

def loss_and_gradients(A, B, L_Z, L_W, sigma_y, beta, lam):
    """total = recon + β·KL + λ·L2 at Σ_Z = L_Z L_Zᵀ + JITTER·I, Σ_W = L_W L_Wᵀ + JITTER·I, and its
    gradients with respect to (A, B, L_Z, L_W), in closed form (checked against autograd in
    tests/test_linear.py). Batched over a leading axis of K solutions; β, λ: (K,).

    With Σ_X = B Σ_Y Bᵀ + Σ_W, E = Σ_Y − A B Σ_Y − (A B Σ_Y)ᵀ + A Σ_X Aᵀ and G = ½Σ_Z⁻¹ + λI
    (the derivative of recon + λ·L2 with respect to E):
        ∂/∂A = 2G(A Σ_X − Σ_Y Bᵀ),  ∂/∂B = 2AᵀG(A B Σ_Y − Σ_Y) + β B Σ_Y,
        ∂/∂Σ_Z = ½(Σ_Z⁻¹ − Σ_Z⁻¹ E Σ_Z⁻¹),  ∂/∂Σ_W = AᵀGA + ½β(I − Σ_W⁻¹),
        ∂/∂L = 2 (∂/∂Σ) L for Σ = L Lᵀ + JITTER·I (∂/∂Σ is symmetric).
    One Cholesky factorisation and one inverse of Σ_Z per step, no autograd graph: about 2.5×
    (n = 100) to 5.6× (n = 50) faster than autograd through ``losses`` per step, same numbers.
    Returns (total, ok, gradients); ``ok`` is False where Σ_Z or Σ_W is not positive definite
    or the loss is not finite."""
    n, m = A.shape[-2], A.shape[-1]
    k = A.shape[0]
    eye_m = torch.eye(m, dtype=A.dtype, device=A.device)
    # The n × n work is done in place where the arithmetic allows it: a fresh K·n² buffer per
    # operation (4 MB at n = 100) costs more in page faults than the operation itself. Every
    # in-place form computes the very numbers of the plain expression (x + 0 = x off the
    # diagonal), so results are bit-identical to it (tests/test_linear.py).
    sigma_w = _add_to_diagonal(L_W @ L_W.mT, JITTER)
    by = B @ sigma_y
    sigma_x = by @ B.mT + sigma_w
    aby = A @ by
    err = torch.sub(sigma_y, aby).sub_(aby.mT).add_(A @ sigma_x @ A.mT)
    chol_z, info_z = torch.linalg.cholesky_ex(_add_to_diagonal(L_Z @ L_Z.mT, JITTER))
    chol_w, info_w = torch.linalg.cholesky_ex(sigma_w)
    inv_z, inv_w = torch.cholesky_inverse(chol_z), torch.cholesky_inverse(chol_w)
    logdet_z = 2 * chol_z.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet_w = 2 * chol_w.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    inv_z_err = inv_z @ err
    recon = 0.5 * (_trace(inv_z_err) + logdet_z + n * math.log(2 * math.pi))
    kl = 0.5 * (_trace(sigma_x) - logdet_w - m)
    total = recon + beta * kl + lam * _trace(err)
    b3 = beta.reshape(k, 1, 1)
    g = _add_to_diagonal(0.5 * inv_z, lam)
    ga = g @ A
    grad_z = torch.sub(inv_z, inv_z_err @ inv_z, out=inv_z_err)          # inv_z_err is not needed again
    grads = (2 * (g @ (A @ sigma_x) - g @ by.mT),
             2 * (ga.mT @ (aby - sigma_y)) + b3 * by,
             grad_z @ L_Z,
             2 * (A.mT @ ga + 0.5 * b3 * (eye_m - inv_w)) @ L_W)
    ok = (info_z == 0) & (info_w == 0) & torch.isfinite(total)
    return total, ok, grads


class MatrixAdamW(torch.optim.Optimizer):
    """AdamW (Kingma & Ba 2015; decoupled weight decay, Loshchilov & Hutter 2019) with one
    second-moment estimate per solution and parameter matrix, the mean of the squared gradient
    over the matrix's entries, where AdamW keeps one per entry. Parameters are (K, rows, cols)
    stacks of K solutions; the first moment, the bias corrections and the weight decay are
    AdamW's. AdamW's per-entry scaling does not commute with a rotation of the latent space
    (B → QB, A → AQᵀ): it rescales each entry of the rotated gradient differently. This step
    does: a rotated gradient gives the rotated step. So it asks whether AdamW's per-entry scaling
    is what chooses the rotation, and with it the I_m, that AdamW ends in
    (scripts/linear_adamw_settings.py --second-moment matrix)."""

    def __init__(self, params, lr: float, betas, eps: float, weight_decay: float):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for x in group["params"]:
                state = self.state[x]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(x)
                    state["exp_avg_sq"] = x.new_zeros(x.shape[0], 1, 1)
                state["step"] += 1
                t = state["step"]
                x.mul_(1 - lr * decay)
                state["exp_avg"].lerp_(x.grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).add_(x.grad.pow(2).mean((-2, -1), keepdim=True), alpha=1 - beta2)
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2 ** t)).add_(eps)
                x.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1 ** t))


def solve_adamw(sigma_y, beta, lam, inits: dict, iters: int, clip_ab: float, clip_l: float,
                lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
                second_moment: str = "entry", device="cpu", progress=None, dtype=DTYPE,
                resume: dict | None = None, save=None) -> dict:
    """The paper's AdamW solver for K solutions at once (leading axis of every init).

    Parameters A, B, L_Z, L_W with Σ_Z = L_Z L_Zᵀ + 5e-5·I and Σ_W likewise; L is projected back
    to lower-triangular after each step. Gradients (``loss_and_gradients``, closed form) are
    clipped per solution and per group, as ``torch.nn.utils.clip_grad_norm_`` would clip
    [A, B] and [L_Z, L_W] of a single run (the same formula: factor min(1, max_norm / (norm +
    1e-6))). AdamW's update is elementwise, so one optimizer over the stacked tensors is K
    independent runs: K may hold many (β, λ) cells (β and λ are per solution), and a cell's
    result does not depend on which cells share its batch, up to the rounding of one product
    (B Σ_Y, computed for the whole batch; see docs/linear.md). Keeps, per solution, the iterate
    with the lowest total loss (the parameters the loss was evaluated at). ``second_moment``:
    "entry", the paper's AdamW; "matrix", ``MatrixAdamW`` (blind to latent rotations). ``device``: where
    to solve (a GPU runs the same arithmetic). ``dtype``: float64, the study's; float32 only to
    measure what it would change (benchmarks/linear_adamw.py --float32). ``progress``: called with the number
    of steps done every ``PROGRESS_EVERY`` steps and after the last (a cell at n = 100 takes
    minutes, so the caller can show how far it is). ``save``: called as ``save(step, state)`` at
    the same steps, ``state()`` giving everything the remaining steps depend on (parameters,
    AdamW's moments, the best iterates so far); passing such a state back as ``resume``
    continues from that step, bit for bit as if never stopped (an n = 100 cell takes over half an
    hour, so the caller can keep its work across an interruption).

    Returned as in ``solve_fixed_point``, plus best_iteration; a solution whose loss turned
    non-finite or whose covariance lost positive definiteness stops there and is marked failed.
    """
    device = torch.device(device)
    sigma_y = _t(sigma_y).to(device, dtype)
    n, m = sigma_y.shape[-1], inits["B"].shape[1]
    params = [_t(inits[key]).to(device, dtype).clone() for key in ("A", "B", "L_Z", "L_W")]
    a, b, lz, lw = params
    k = a.shape[0]
    beta_t, lam_t = _t(beta).to(device, dtype).expand(k), _t(lam).to(device, dtype).expand(k)
    jitter_n = JITTER * torch.eye(n, dtype=dtype, device=device)
    jitter_m = JITTER * torch.eye(m, dtype=dtype, device=device)
    optimizer = {"entry": torch.optim.AdamW, "matrix": MatrixAdamW}[second_moment]
    opt = optimizer(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    best_total = torch.full((k,), math.inf, dtype=dtype, device=device)
    best = [x.clone() for x in params]
    best_iteration = torch.zeros(k, dtype=torch.int64, device=device)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    failed_at = torch.zeros(k, dtype=torch.int64, device=device)
    first = 1
    if resume is not None:
        with torch.no_grad():
            for x, saved in zip(params + best, resume["params"] + resume["best"]):
                x.copy_(saved)
        opt.load_state_dict(resume["optimizer"])
        best_total, best_iteration, alive, failed_at = (resume[key].to(device) for key in
                                                        ("best_total", "best_iteration", "alive", "failed_at"))
        first = resume["step"] + 1

    def state():
        return {"step": it, "params": params, "best": best, "optimizer": opt.state_dict(),
                "best_total": best_total, "best_iteration": best_iteration, "alive": alive, "failed_at": failed_at}

    for it in range(first, iters + 1):
        total, ok, grads = loss_and_gradients(a, b, lz, lw, sigma_y, beta_t, lam_t)
        failed_at = torch.where(alive & ~ok, it, failed_at)
        alive &= ok
        if it % 64 == 1 and not alive.any():       # a host sync only now and then (GPU)
            break
        better = alive & (total < best_total)
        best_total = torch.where(better, total, best_total)
        best_iteration = torch.where(better, it, best_iteration)
        keep = better.reshape(k, 1, 1)
        for kept, x in zip(best, params):
            torch.where(keep, x, kept, out=kept)
        # A failed solution's gradient may be NaN: it must not move.
        dead = ~alive.reshape(k, 1, 1)
        for g in grads:
            g.masked_fill_(dead, 0.0)
        for group, max_norm in (((0, 1), clip_ab), ((2, 3), clip_l)):
            norm = torch.sqrt(sum(grads[i].pow(2).sum((-2, -1)) for i in group))
            coef = (max_norm / (norm + 1e-6)).clamp(max=1.0).reshape(k, 1, 1)
            for i in group:
                grads[i].mul_(coef)
        for x, g in zip(params, grads):
            x.grad = g
        opt.step()
        with torch.no_grad():
            lz.tril_()
            lw.tril_()
        if it % PROGRESS_EVERY == 0 or it == iters:
            if progress is not None:
                progress(it)
            if save is not None and it < iters:
                save(it, state)
    a, b, lz, lw = best
    failure = [f"loss non-finite or covariance not positive definite at iteration {int(i)}" if i else ""
               for i in failed_at.cpu()]
    return {"A": a.cpu().numpy(), "B": b.cpu().numpy(), "sigma_z": (lz @ lz.mT + jitter_n).cpu().numpy(),
            "sigma_w": (lw @ lw.mT + jitter_m).cpu().numpy(), "iterations": np.full(k, iters),
            "best_iteration": best_iteration.cpu().numpy(), "converged": np.zeros(k, dtype=bool),
            "failure": failure}


# ----------------------------------------------------------------------------- metrics

def factor_mi(B, sigma_w, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """ρ² (m × s) between latents and factors, from Cov(X, V) = B Γ Σ_V, and MI_ij = −½ log(1 − ρ²_ij) in nats."""
    B, sigma_w = np.asarray(B), np.asarray(sigma_w)
    var_x = np.einsum("ij,jk,ik->i", B, problem.sigma_y, B) + np.diag(sigma_w)
    cov = B @ problem.gamma * problem.sigma_v
    rho2 = cov ** 2 / (var_x[:, None] * problem.sigma_v[None, :])
    return rho2, -0.5 * np.log1p(-rho2)


def sap(rho2: np.ndarray) -> float:
    """SAP (Kumar et al. 2018) on exact ρ²: per factor, the gap between its two largest ρ²
    over latents; mean over factors."""
    top = np.sort(rho2, axis=0)
    return float(np.mean(top[-1] - top[-2]))


def i_m(mi: np.ndarray) -> float:
    """I_m (Vu, Wan & Wei 2026): the largest total MI of a one-to-one latent–factor matching
    (Hungarian method), nats."""
    rows, cols = linear_sum_assignment(mi, maximize=True)
    return float(mi[rows, cols].sum())


def rotate(A, B, sigma_w, q):
    """The same solution with its latent space rotated by the orthogonal q: A Qᵀ, Q B, Q Σ_W Qᵀ
    (A may be None: the metrics need only B and Σ_W). The prior N(0, I) is isotropic, so every
    loss is unchanged; SAP and I_m are not."""
    q = np.asarray(q)
    return (None if A is None else np.asarray(A) @ q.T), q @ np.asarray(B), q @ np.asarray(sigma_w) @ q.T


def i_m_over_rotations(B, sigma_w, problem: Problem, rotations) -> np.ndarray:
    """I_m of one solution after each rotation of its latent space (``rotate``): how much of
    I_m the loss leaves open, since all of them have the solution's total loss."""
    return np.array([i_m(factor_mi(*rotate(None, B, sigma_w, q)[1:], problem)[1]) for q in rotations])


def solution_metrics(solution: dict, problem: Problem, beta, lam) -> list[dict]:
    """recon, KL, L2, total, SAP and I_m of every solution in a solver's output."""
    out = losses(solution["A"], solution["B"], solution["sigma_z"], solution["sigma_w"], problem.sigma_y,
                 _t(beta), _t(lam))
    rows = []
    for i in range(len(solution["B"])):
        rho2, mi = factor_mi(solution["B"][i], solution["sigma_w"][i], problem)
        rows.append({"recon": float(out["recon"][i]), "kl": float(out["kl"][i]), "l2": float(out["l2"][i]),
                     "total": float(out["total"][i]), "sap": sap(rho2), "i_m": i_m(mi),
                     "max_rho2": float(rho2.max())})
    return rows


# ----------------------------------------------------------------------------- theory

def principal_variances(sigma_y, m: int) -> np.ndarray:
    """The m largest eigenvalues d_1 ≥ … ≥ d_m of Σ_Y: the directions the latents read."""
    return np.linalg.eigvalsh(np.asarray(sigma_y))[::-1][:m]


def collapse_thresholds(sigma_y, m: int, lam: float) -> np.ndarray:
    """β at which latent k collapses, β*_k = 1 + 2λ d_k (docs/linear.md derives it)."""
    return 1.0 + 2.0 * lam * principal_variances(sigma_y, m)


def predicted_information(sigma_y, m: int, beta: float, lam: float) -> np.ndarray:
    """Per-latent I(X_k; Y) in nats at the optimum, for β > 1: max(0, ½ log(2λ d_k / (β − 1))).

    Their sum is the KL at the optimum (the aggregate posterior then equals the prior). For
    β ≤ 1 there is no finite optimum (information is free or rewarded), so this returns inf
    (nan at β = 1, λ = 0, where every amount of information costs the same).
    """
    d = principal_variances(sigma_y, m)
    if beta <= 1:
        return np.full(m, np.nan if (beta == 1 and lam == 0) else np.inf)
    with np.errstate(divide="ignore"):
        return np.maximum(0.0, 0.5 * np.log(2 * lam * d / (beta - 1)))
