"""Import the original code's published runs into this project's results layout.

The original published each stage as flat folders, one per dataset:

    betavae_results/<dSprites|Shapes3D|MPI3D>/betavae_beta_{β}_seed_{s}.pth
                                              metrics_beta_{β}_seed_{s}.npz
    lambda_betavae_results/<ds>/lambda_betavae_beta_{β}_lambda_{λ}_seed_{s}.pth
                                metrics_beta_{β}_lambda_{λ}_seed_{s}.npz

The .npz files hold scalars NLL, KL, Total loss (and L2 in the λ stage), MIG, SAP, Im and
the (latents × factors) mi_matrix; the .pth files are plain BetaVAE state_dicts. Each run
becomes a run directory of this project (lbvae/pipeline/study.py's layout, the same weights file name)
with a metrics.json whose row has ``origin = original``; ``source`` keeps its meaning
(the data: the original trained on the real files). The original's "NLL" is the mean
training BCE over the last steps, so it becomes ``train_window_nll``; it has no held-out
numbers and no training log. Imported β weights sit where a local λ stage looks for
its parents, so ``python main_lambda.py`` can continue them.

    python main_beta.py   --import-original DIR --results-dir original
    python main_lambda.py --import-original DIR --results-dir original

DIR is the folder holding betavae_results/ and lambda_betavae_results/, or the stage
folder itself. A file that cannot be read costs one printed line; the rest is imported.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from config import Config, ConfigError
from datasets import CHANNELS, FACTORS
from lbvae.pipeline.runs import CHECKPOINT, FAILED, METRICS, RunSpec, read_row
from models import BetaVAE
from utils import atomic_write, read_json, write_json

ORIGIN = "original"
FOLDERS = {"dSprites": "dsprites", "Shapes3D": "shapes3d", "MPI3D": "mpi3d"}
_NUM = r"(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
METRICS_NAME = {"beta": re.compile(rf"metrics_beta_{_NUM}_seed_(\d+)\.npz"),
                "lambda": re.compile(rf"metrics_beta_{_NUM}_lambda_{_NUM}_seed_(\d+)\.npz")}
WEIGHTS_NAME = {"beta": re.compile(rf"betavae_beta_{_NUM}_seed_(\d+)\.pth"),
                "lambda": re.compile(rf"lambda_betavae_beta_{_NUM}_lambda_{_NUM}_seed_(\d+)\.pth")}
NAME_FORMAT = {("metrics", "beta"): "metrics_beta_{β}_seed_{s}.npz",
               ("metrics", "lambda"): "metrics_beta_{β}_lambda_{λ}_seed_{s}.npz",
               ("weights", "beta"): "betavae_beta_{β}_seed_{s}.pth",
               ("weights", "lambda"): "lambda_betavae_beta_{β}_lambda_{λ}_seed_{s}.pth"}
# npz key -> results-table column
COLUMNS = {"NLL": "train_window_nll", "KL": "train_window_kl", "Total loss": "train_window_total",
           "MIG": "mig", "SAP": "sap", "Im": "i_m"}
LAMBDA_COLUMNS = {"L2": "train_window_l2"}


class Unreadable(ValueError):
    """A published file that cannot be imported; the message says why."""


@dataclass(frozen=True)
class Found:
    dataset: str
    beta: float
    lam: float
    seed: int
    metrics: Path | None
    weights: Path | None

    @property
    def key(self) -> tuple:
        return self.dataset, self.beta, self.lam, self.seed


def settings(cfg: Config) -> Config:
    """The settings an imported results directory is recorded with: the original trained
    on the real files and on every image (no held-out split)."""
    if cfg.demo:
        raise ConfigError("--import-original: the original's runs are on the real files, not the demo's "
                          "stand-ins; drop --demo (and use --results-dir DIR to keep them apart)")
    return cfg.replace(source="real", heldout_fraction=0.0)


def stage_folder(src: Path, root_name: str) -> Path:
    """DIR/betavae_results (or DIR/lambda_betavae_results), else DIR itself."""
    inner = Path(src) / root_name
    return inner if inner.is_dir() else Path(src)


def _key(match: re.Match, stage: str) -> tuple[float, float, int]:
    if stage == "beta":
        return float(match[1]), 0.0, int(match[2])
    return float(match[1]), float(match[2]), int(match[3])


def scan(folder: Path, stage: str) -> tuple[list[Found], list[str]]:
    """The runs a published stage folder holds, and one line per file or folder that
    does not fit its layout. Other files (the original's figures, summaries) are ignored."""
    found, problems = {}, []
    if not folder.is_dir():
        return [], [f"{folder}: not a folder"]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in FOLDERS:
            problems.append(f"{sub}: not a dataset folder of the original ({', '.join(FOLDERS)}); skipped")
            continue
        dataset = FOLDERS[sub.name]
        for path in sorted(sub.iterdir()):
            kind = "metrics" if path.suffix == ".npz" else "weights" if path.suffix == ".pth" else None
            if kind is None:
                continue
            pattern = (METRICS_NAME if kind == "metrics" else WEIGHTS_NAME)[stage]
            match = pattern.fullmatch(path.name)
            if match is None:
                problems.append(f"{path}: name is not {NAME_FORMAT[kind, stage]}; skipped")
                continue
            beta, lam, seed = _key(match, stage)
            old = found.get((dataset, beta, lam, seed), Found(dataset, beta, lam, seed, None, None))
            found[old.key] = Found(dataset, beta, lam, seed, *(
                (path, old.weights) if kind == "metrics" else (old.metrics, path)))
    runs = []
    for run in found.values():
        if run.metrics is None:
            problems.append(f"{run.weights}: weights without their metrics_*.npz; not imported")
        else:
            runs.append(run)
    return runs, problems


def read_metrics(path: Path, stage: str) -> tuple[dict, np.ndarray | None]:
    """The results-table values of a published metrics .npz, and its MI matrix (None if absent)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except Exception as err:       # a truncated or foreign file: any reader error means unreadable
        raise Unreadable(f"cannot be read as .npz ({type(err).__name__}: {err})") from None
    columns = {**COLUMNS, **(LAMBDA_COLUMNS if stage == "lambda" else {})}
    missing = [k for k in columns if k not in data]
    if missing:
        raise Unreadable(f"missing key(s) {', '.join(missing)} (has {', '.join(sorted(data)) or 'none'})")
    values = {}
    for key, column in columns.items():
        value = np.asarray(data[key])
        if value.size != 1 or not np.issubdtype(value.dtype, np.number):
            raise Unreadable(f"{key} is {value.dtype} of shape {value.shape}, expected one number")
        values[column] = float(value.reshape(()))
    mi = data.get("mi_matrix")
    if mi is not None and (np.asarray(mi).ndim != 2 or not np.issubdtype(np.asarray(mi).dtype, np.number)):
        raise Unreadable(f"mi_matrix has shape {np.shape(mi)}, expected (latents, factors)")
    return values, None if mi is None else np.asarray(mi, float)


def check_weights(path: Path, dataset: str, latent_dim: int) -> None:
    """Raise Unreadable unless ``path`` is a state_dict that loads into this project's BetaVAE."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        BetaVAE(CHANNELS[dataset], latent_dim).load_state_dict(state)
    except Exception as err:       # unpickling and shape errors alike: not usable weights
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise Unreadable(f"not a BetaVAE state_dict ({type(err).__name__}: {reason})") from None


def _local_run(spec: RunSpec) -> bool:
    """True if the run directory holds a run trained here (which an import must not overwrite)."""
    if (spec.run_dir / CHECKPOINT).exists() or (spec.run_dir / FAILED).exists():
        return True
    metrics = spec.run_dir / METRICS
    if not metrics.exists():
        return False
    try:
        return read_json(metrics).get("row", {}).get("origin") != ORIGIN
    except (OSError, ValueError):
        return True


def _specs(runs: list[Found], cfg: Config, grid_specs: Callable[[Config], list[RunSpec]]) -> dict[tuple, RunSpec]:
    """RunSpecs of the imported runs, from study's own grid builders (so the layout and
    the weights' file names are study's)."""
    grid = cfg.replace(datasets=tuple(dict.fromkeys(r.dataset for r in runs)),
                       betas=tuple(sorted({r.beta for r in runs})), seeds=tuple(sorted({r.seed for r in runs})),
                       lambdas=tuple(sorted({r.lam for r in runs})))
    specs = grid_specs(grid)
    return {(s.dataset, s.beta, s.lam, s.seed): s for s in specs}


def import_run(run: Found, spec: RunSpec, cfg: Config, problems: list[str]) -> None:
    """Write one published run as a run directory; metrics.json last (the 'done' marker)."""
    values, mi = read_metrics(run.metrics, spec.stage)
    weights = run.weights
    if weights is None:
        problems.append(f"{run.metrics}: no weights file beside it; metrics imported, no checkpoint")
    else:
        try:
            check_weights(weights, spec.dataset, cfg.latent_dim)
        except Unreadable as err:
            problems.append(f"{weights}: {err}; metrics imported, no checkpoint")
            weights = None
    if weights is not None:
        with atomic_write(spec.weights_path) as f:
            f.write(weights.read_bytes())           # the published bytes, unchanged
    row = {"stage": spec.stage, "dataset": spec.dataset, "source": "real", "origin": ORIGIN,
           "beta": spec.beta, "lambda": spec.lam, "seed": spec.seed, "steps": None, "status": "done",
           "train_window_l2": None, **values}
    write_json(spec.run_dir / "config.json", {**cfg.to_dict(), "run": {
        "stage": spec.stage, "dataset": spec.dataset, "beta": spec.beta, "lambda": spec.lam, "seed": spec.seed,
        "imported_from": str(run.metrics)}})
    write_json(spec.run_dir / METRICS, {
        "row": row, "mi": mi, "factor_names": FACTORS[spec.dataset][0],
        "imported_from": {"metrics": str(run.metrics), "weights": None if weights is None else str(weights)},
        "definitions": {
            "train_window_nll": "the original's 'NLL': mean training BCE over its last training steps "
                                "(a train-window loss, not held out)",
            "steps": "not recorded in the original's metrics files",
            "heldout_*": "none: the original trained on every image",
            "mi": "the original's mi_matrix (latents × factors, nats)"}})


def import_stage(src, cfg: Config, stage: str, root: Path, specs_of: Callable[[Config], list[RunSpec]],
                 grid_specs: list[RunSpec]) -> tuple[list[dict], list[RunSpec]]:
    """Import a published stage into ``root``, the stage root named as the original named it
    (betavae_results, lambda_betavae_results), with the run folders ``specs_of`` gives a
    grid (study's own builders, so layout and weights' names are study's); print one line per
    file that could not be read. Returns the rows and specs of the imported runs plus
    the runs of ``grid_specs`` already in the directory (what ``study.summarize`` needs)."""
    folder = stage_folder(Path(src), Path(root).name)
    found, problems = scan(folder, stage)
    specs = _specs(found, cfg, specs_of) if found else {}
    imported = []
    for run in found:
        spec = specs[run.key]
        if _local_run(spec):
            problems.append(f"{run.metrics}: {spec.run_dir} holds a run trained here; not overwritten "
                            f"(import into another --results-dir)")
            continue
        try:
            import_run(run, spec, cfg, problems)
        except Unreadable as err:
            problems.append(f"{run.metrics}: {err}; not imported")
            continue
        imported.append(spec)
    for line in problems:
        print(f"import: {line}")
    print(f"import: {len(imported)} run(s) from {folder} into {root}; {len(problems)} problem(s) listed above")
    dirs = {s.run_dir for s in imported}
    all_specs = imported + [s for s in grid_specs if s.run_dir not in dirs and read_row(s) is not None]
    return [read_row(s) for s in all_specs], all_specs
