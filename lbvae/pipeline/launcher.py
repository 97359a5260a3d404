"""Run a stage's grid on a Slurm cluster through submitit; job status; collecting results.

    python main_beta.py --launcher slurm --partition P --gpus-per-job 1 --runs-per-job K
    python main_lambda.py --launcher slurm --partition P --gpus-per-job 1 --runs-per-job K
    python main_beta.py --status        # done / running / failed / pending runs, and queue states
    python main_beta.py --collect       # results.csv, summary and every figure from what exists

The grid's runs that are not complete are cut into chunks of K runs (one dataset per
chunk, so a chunk trains as one pack) and submitted as one Slurm job array. A job's
whole body is the stage's own run function (for example ``study.run_grid``) on its chunk, so a job
writes the same run directories as a local run; the local lock per run keeps a job and
a local process from training the same run. After the array, a small collect job
(dependency ``afterany``) rewrites results.csv and the figures.

Nothing is lost: every run checkpoints every ``checkpoint_interval`` steps. A job that is
preempted or reaches its time limit gets SIGUSR2 from Slurm (submitit asks for it 90 s
before the limit); submitit then calls the job's ``checkpoint()``, which resubmits the
same chunk, and requeues the job. The requeued job skips finished runs and resumes
the others from their checkpoint.pt: at most ``checkpoint_interval`` steps per run are
trained twice. Rerunning the submit command submits only runs that are neither
finished, failed, being trained, nor waiting in a queued job of the registry.

The λ stage continues β weights: its array waits (``afterok``) for the queued β jobs
that will write the weights it needs, and refuses, naming them, when no queued job will.

Everything the launcher writes sits under ``<stage root>/slurm/``: ``jobs.json`` (the
registry: which job trains which runs) and ``logs/`` (each job's stdout and stderr, as
``<job id>_0_log.out`` / ``_log.err``, next to submitit's pickles).

A stage plugs in through ``Stage``: its runs (``runs.RunSpec``) and its run and
summarize functions. Each study builds its own (``study.launcher_stage``,
``family.launcher_stage``); this module knows no study.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import getpass
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lbvae.pipeline import runs
from utils import CHECKOUT, read_json, write_json

try:
    import submitit
    _Checkpointable = submitit.helpers.Checkpointable
except ImportError:          # --status and --collect work without it; submitting says how to get it
    submitit = None
    _Checkpointable = object

LAUNCHERS = ("local", "slurm", "submitit-local")
SLURM_DIR = "slurm"                          # under the stage root
REGISTRY = "jobs.json"
REPO = CHECKOUT
# Resuming costs only the steps since the last checkpoint, so a job may time out and be
# requeued many times (submitit's default is 3).
MAX_TIMEOUTS = 20
# Slurm job states in which a job will still train its runs.
LIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
               "REQUEUE_FED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}


# --- the stage interface ------------------------------------------------------------------
@dataclass
class Stage:
    """What the launcher needs of one stage of a study.

    specs: every run of the grid (``runs.RunSpec``); ``init_from``, when set, is the
        weights of another stage's run it continues.
    run(specs, cfg) -> rows: trains the not-done runs among ``specs`` (it skips done ones,
        takes each run's lock and resumes from its checkpoint). It is pickled into the
        jobs, so it must be a module-level function (or a functools.partial of one).
    summarize(rows, specs, cfg) -> root: rewrites results.csv, summary and figures.
    """
    name: str                                     # "beta", "lambda", "mine": job names, messages
    script: str                                   # "main_beta.py": for the commands printed
    cfg: object                                   # the resolved config (a frozen dataclass)
    root: Path                                    # the stage's results tree
    specs: list
    run: Callable
    summarize: Callable
    config_argv: tuple = ()                       # the settings flags the user gave, for hints
    parent_root: Path | None = None               # the stage whose weights `init_from` points into
    parent_script: str | None = None
    preflight: Callable | None = None             # checks before submitting (data files present)

    def command(self, *extra: str, script: str | None = None) -> str:
        return " ".join(["python", script or self.script, *map(shlex.quote, self.config_argv), *extra])


def make_stage(name: str, script: str, cfg, root: Path, specs: list, run_grid: Callable, summarize: Callable,
               argv=None, retry_failed: bool = False, preflight: Callable | None = None,
               parent_root: Path | None = None, parent_script: str | None = None) -> Stage:
    """A Stage from a study's own functions; ``run_grid(specs, cfg, retry_failed=...)``
    and ``summarize(rows, specs, cfg)``. ``argv``: the command line (None: sys.argv)."""
    return Stage(name=name, script=script, cfg=cfg, root=Path(root), specs=specs,
                 run=functools.partial(run_grid, retry_failed=retry_failed), summarize=summarize,
                 config_argv=tuple(config_argv(sys.argv[1:] if argv is None else argv)),
                 parent_root=parent_root, parent_script=parent_script, preflight=preflight)


# --- command line -------------------------------------------------------------------------
# Flags of this module taking a value / taking none; stripped from the argv echoed in hints.
_VALUE_FLAGS = ("--launcher", "--out", "--partition", "--gpus-per-job", "--runs-per-job", "--cpus-per-job",
                "--mem-gb", "--time-min", "--max-parallel-jobs", "--slurm-arg")
_SWITCHES = ("--status", "--collect")
_SLURM_ONLY = ("partition", "gpus_per_job", "cpus_per_job", "mem_gb", "time_min", "max_parallel_jobs",
               "slurm_arg", "runs_per_job")


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the runs train and what to do with the results tree (not part of Config: they
    change where a run trains, never what it computes)."""
    g = parser.add_argument_group("launcher (where the runs train; not settings of the runs)")
    g.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: train here (default). slurm: submit a job array with submitit. "
                        "submitit-local: the same jobs as local processes (a dry run of the Slurm path)")
    g.add_argument("--status", action="store_true",
                   help="count done / running / failed / pending runs (and queued jobs), then exit")
    g.add_argument("--collect", action="store_true",
                   help="rewrite results.csv, summary and figures from the finished runs, then exit")
    g.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="with --collect: write results.csv, summary and figures to DIR instead of the results "
                        "tree (which may be read-only); with --eval-only: the folder for its results")
    g.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's default)")
    g.add_argument("--runs-per-job", type=int, default=None, metavar="K",
                   help="runs per job, trained as one pack (default 4)")
    g.add_argument("--gpus-per-job", type=int, default=None, metavar="G", help="default 1")
    g.add_argument("--cpus-per-job", type=int, default=None, metavar="C",
                   help="default 4 with GPUs, 1 without; also torch's thread count in the job")
    g.add_argument("--mem-gb", type=int, default=None, help="memory per job in GB (default 8)")
    g.add_argument("--time-min", type=int, default=None,
                   help="time limit per job in minutes (default 720); a job that reaches it is requeued")
    g.add_argument("--max-parallel-jobs", type=int, default=None, metavar="N",
                   help="at most N jobs of the array at once (default: no limit)")
    g.add_argument("--slurm-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="extra sbatch option, e.g. --slurm-arg account=proj --slurm-arg qos=high")


@dataclass(frozen=True)
class JobOptions:
    partition: str | None = None
    runs_per_job: int = 4
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    mem_gb: int = 8
    time_min: int = 720
    max_parallel_jobs: int | None = None
    extra: tuple = ()                             # (key, value) sbatch options

    @property
    def cpus(self) -> int:
        return self.cpus_per_job or (4 if self.gpus_per_job else 1)


def job_options(args: argparse.Namespace) -> JobOptions:
    """JobOptions from the flags; SystemExit with one line for a bad value."""
    given = {k: getattr(args, k) for k in _SLURM_ONLY if getattr(args, k, None) is not None}
    if args.launcher == "local" and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise SystemExit(f"{flags}: only used with --launcher slurm or submitit-local")
    for name, low in (("runs_per_job", 1), ("gpus_per_job", 0), ("cpus_per_job", 1), ("mem_gb", 1),
                      ("time_min", 1), ("max_parallel_jobs", 1)):
        if name in given and given[name] < low:
            raise SystemExit(f"--{name.replace('_', '-')} is {given[name]}: must be >= {low}")
    extra = []
    for item in given.pop("slurm_arg", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--slurm-arg {item!r}: write KEY=VALUE, e.g. account=myproject")
        extra.append((key.strip().lstrip("-").replace("-", "_"), value))
    return JobOptions(**given, extra=tuple(extra))


def config_argv(argv) -> list[str]:
    """``argv`` without this module's flags: the settings that name the grid."""
    out, skip = [], False
    for a in argv:
        if skip:
            if a.startswith("--"):
                skip = False
            else:
                continue
        flag = a.split("=", 1)[0]
        if flag in _SWITCHES:
            continue
        if flag in _VALUE_FLAGS:
            skip = "=" not in a
            continue
        out.append(a)
    return out


def check_flags(args: argparse.Namespace) -> None:
    """SystemExit with one line for a bad job option, or a Slurm-only flag without --launcher slurm."""
    job_options(args)
    if getattr(args, "out", None) is not None and not (args.collect or getattr(args, "eval_only", None)):
        raise SystemExit("--out: only used with --collect or --eval-only")


def wanted(args: argparse.Namespace) -> bool:
    """Whether this module handles the command (--status, --collect, a non-local launcher)
    instead of training here."""
    return args.launcher != "local" or args.status or args.collect


def dispatch(args: argparse.Namespace, stage: Stage) -> None:
    """Handle --collect, --status, or submit the grid to the launcher asked for."""
    if args.collect:
        collect(stage, out=args.out)
    if args.status:
        print_status(stage)
    if not (args.status or args.collect):
        submit(stage, job_options(args), launcher=args.launcher, retry_failed=args.retry_failed)


# --- the job ------------------------------------------------------------------------------
class TrainChunk(_Checkpointable):
    """One job's body: the stage's run function on its chunk of runs, as one pack.

    submitit's Checkpointable: on preemption or time-out, ``checkpoint`` returns this same
    callable with the same chunk and submitit requeues the job; the run function then
    skips finished runs and resumes the rest from their last checkpoint.pt.
    """

    def __init__(self, run: Callable, cfg, runs_per_job: int, cpus: int):
        self.run, self.cfg, self.runs_per_job, self.cpus = run, cfg, runs_per_job, cpus

    def __call__(self, specs: list) -> dict:
        import torch
        # torch defaults to one thread per core of the node, not per CPU of the job:
        # jobs sharing a node would oversubscribe it.
        torch.set_num_threads(self.cpus)
        print(f"{_job_label()}: {len(specs)} runs on {socket.gethostname()}, {self.cpus} CPU(s): "
              + "; ".join(s.name for s in specs), flush=True)
        cfg = self.cfg
        if hasattr(cfg, "pack_size"):
            cfg = cfg.replace(pack_size=self.runs_per_job)
        self.run(specs, cfg)
        done = [s.name for s in specs if s.is_done()]
        failed = [s.name for s in specs if not s.is_done() and s.is_failed()]
        other = [s.name for s in specs if not s.is_done() and s.name not in failed]
        if other:    # skipped: a live lock elsewhere, or a missing parent
            print(f"{_job_label()}: not finished here: {'; '.join(other)}", flush=True)
        print(f"{_job_label()}: {len(done)} done, {len(failed)} failed, {len(other)} not finished", flush=True)
        return {"done": done, "failed": failed, "not_finished": other}

    def checkpoint(self, specs: list):
        # The runs' own checkpoint.pt files are the state; nothing else to save. Locks
        # of this process are dropped first: the requeued job may start on another node,
        # where a lock of ours would look alive for an hour (see utils.RunLock).
        me = f"{socket.gethostname()} {os.getpid()}"
        for spec in specs:
            lock = spec.run_dir / runs.LOCK
            try:
                if lock.read_text().strip() == me:
                    lock.unlink()
            except OSError:
                pass
        print(f"{_job_label()}: preempted or out of time; requeued, each run resumes from its last "
              f"checkpoint", flush=True)
        return super().checkpoint(specs)


def collect_job(summarize: Callable, specs: list, cfg) -> str:
    """Body of the collect job that runs after an array: the stage's summarize on what exists."""
    rows = [r for r in map(runs.read_row, specs) if r is not None]
    return str(summarize(rows, specs, cfg))


def _job_label() -> str:
    try:
        return f"job {submitit.JobEnvironment().job_id}"
    except Exception:                          # not inside a submitit job (called directly)
        return f"pid {os.getpid()}"


# --- the results tree -----------------------------------------------------------------------
def chunk_runs(specs: list, runs_per_job: int) -> list[list]:
    """Chunks of at most ``runs_per_job`` runs, one dataset per chunk (a pack trains runs
    of one dataset: same images, same model shape), in grid order."""
    by_dataset = defaultdict(list)
    for spec in specs:
        by_dataset[getattr(spec, "dataset", None)].append(spec)
    return [group[i:i + runs_per_job] for group in by_dataset.values()
            for i in range(0, len(group), runs_per_job)]


# --- the jobs registry ----------------------------------------------------------------------
def slurm_dir(root: Path) -> Path:
    return Path(root) / SLURM_DIR


def read_registry(root: Path) -> list[dict]:
    path = slurm_dir(root) / REGISTRY
    if not path.exists():
        return []
    try:
        return read_json(path)["jobs"]
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"{path} is unreadable ({err}); move it aside (only --status uses it)") from None


def add_to_registry(root: Path, entries: list[dict]) -> None:
    jobs = read_registry(root) + entries
    write_json(slurm_dir(root) / REGISTRY, {"jobs": jobs})


def queue_states() -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} of this user's jobs in the Slurm queue (array tasks one
    per line, as "123_4"); None where there is no squeue (no Slurm here)."""
    if not shutil.which("squeue"):
        return None
    try:
        # -t all: finished jobs too, while slurmctld remembers them (MinJobAge).
        out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T|%r"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    states = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def live_jobs_by_run(root: Path, states: dict | None) -> dict[str, dict]:
    """{run dir relative to root: registry entry} for train jobs still in the queue."""
    if not states:
        return {}
    out = {}
    for job in read_registry(root):
        if job.get("kind") == "train" and states.get(job["job_id"], ("",))[0] in LIVE_STATES:
            for run in job["runs"]:
                out[run] = job
    return out


def _rel(path: Path, root: Path) -> str:
    return os.path.relpath(Path(path), Path(root))


# --- submit -----------------------------------------------------------------------------------
def submit(stage: Stage, opts: JobOptions, launcher: str = "slurm", retry_failed: bool = False) -> list:
    """Submit the runs of ``stage`` that are not complete as one job array (plus a collect
    job after it); returns submitit's jobs. ``submitit-local`` runs the same jobs as local
    processes, waits for them and collects."""
    require_submitit()
    if launcher == "slurm":
        check_slurm(opts.partition)
    if stage.preflight:
        stage.preflight()
    states = queue_states() if launcher == "slurm" else None
    todo, skipped = runs_to_submit(stage, states, retry_failed)
    if skipped:
        print("not submitted: " + ", ".join(f"{n} {why}" for why, n in skipped.items()))
    if not todo:
        print(f"nothing to submit: every run of the {len(stage.specs)}-run grid is finished, failed, "
              f"running or queued. Watch: {stage.command('--status')}")
        return []
    dependency = parent_dependency(stage, todo, states)
    chunks = chunk_runs(todo, opts.runs_per_job)
    logs = slurm_dir(stage.root) / "logs"
    # The jobs unpickle the stage's functions by module name: make this repository
    # importable whatever their working directory (sbatch passes the environment on).
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    executor = make_executor(launcher, logs, opts, name=f"{stage.name}-train", dependency=dependency)
    if hasattr(stage.cfg, "to_json"):
        print("resolved config:\n" + stage.cfg.to_json())
    jobs = executor.map_array(TrainChunk(stage.run, stage.cfg, opts.runs_per_job, opts.cpus), chunks)
    when = datetime.datetime.now().isoformat(timespec="seconds")
    entries = [{"job_id": str(job.job_id), "kind": "train", "launcher": launcher, "submitted": when,
                "runs": [_rel(s.run_dir, stage.root) for s in chunk],
                "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
               for job, chunk in zip(jobs, chunks)]
    array = str(jobs[0].job_id).split("_")[0]
    print(f"submitted {len(todo)} runs as {len(jobs)} job(s) of at most {opts.runs_per_job} runs"
          + (f": array {array}" if launcher == "slurm" else "")
          + (f" on partition {opts.partition}" if opts.partition else "")
          + (f", waiting for β jobs ({dependency})" if dependency else ""))
    if launcher == "slurm":
        collector = make_executor(launcher, logs, opts, name=f"{stage.name}-collect",
                                  dependency="afterany:" + array, collect=True)
        cjob = collector.submit(collect_job, stage.summarize, stage.specs, stage.cfg)
        entries.append({"job_id": str(cjob.job_id), "kind": "collect", "launcher": launcher, "submitted": when,
                        "runs": [], "stdout": str(cjob.paths.stdout), "stderr": str(cjob.paths.stderr)})
        add_to_registry(stage.root, entries)
        print(f"collect job {cjob.job_id} rewrites {stage.root}/results.csv and the figures when the array ends")
        print(f"job logs: {logs}/<job id>_0_log.out and _log.err; registry: {slurm_dir(stage.root) / REGISTRY}")
        print(f"watch:    {stage.command('--status')}")
        print(f"collect:  {stage.command('--collect')}  (any time; partial grids draw what exists)")
        return jobs
    add_to_registry(stage.root, entries)
    print(f"job logs: {logs}; waiting for the jobs")
    for job, entry in zip(jobs, entries):
        try:
            job.result()
        except Exception as err:                  # the job's traceback is in its log
            first = str(err).strip().splitlines()
            print(f"job {job.job_id} failed: {first[-1] if first else err!r}; log: {entry['stderr']}")
    collect(stage)
    return jobs


def runs_to_submit(stage: Stage, states: dict | None, retry_failed: bool):
    """(runs to submit, {reason: count} of runs left out): finished, failed (unless
    retried), being trained (a live lock) or waiting in a live job of the registry."""
    queued = live_jobs_by_run(stage.root, states)
    todo, skipped = [], Counter()
    for spec in stage.specs:
        state = spec.state()
        if state == "failed" and retry_failed:
            state = "pending"
        if state == "pending" and _rel(spec.run_dir, stage.root) in queued:
            state = "queued"
        if state == "pending":
            todo.append(spec)
        else:
            skipped[{"done": "finished", "failed": "failed (--retry-failed retrains them)",
                     "running": "being trained", "queued": "already queued"}[state]] += 1
    return todo, dict(skipped)


def parent_dependency(stage: Stage, todo: list, states: dict | None) -> str | None:
    """``afterok:<β arrays>`` for the queued β jobs that write the weights ``todo`` needs;
    SystemExit naming the missing ones when no queued job will write them."""
    missing = [s for s in todo if getattr(s, "init_from", None) and not Path(s.init_from).exists()]
    if not missing:
        return None
    queued = live_jobs_by_run(stage.parent_root, states) if stage.parent_root else {}
    arrays, orphans = set(), []
    for spec in missing:
        job = queued.get(_rel(Path(spec.init_from).parent, stage.parent_root)) if stage.parent_root else None
        if job:
            arrays.add(job["job_id"].split("_")[0])
        else:
            orphans.append(spec)
    if orphans:
        names = sorted({str(s.init_from) for s in orphans})
        more = f" (and {len(names) - 3} more)" if len(names) > 3 else ""
        how = stage.command("--launcher slurm ...", script=stage.parent_script) if stage.parent_script else ""
        raise SystemExit(f"{len(names)} β checkpoint(s) missing and no queued job will write them: "
                         f"{', '.join(names[:3])}{more}; train them first" + (f" with `{how}`" if how else ""))
    return "afterok:" + ":".join(sorted(arrays))


def require_submitit() -> None:
    if submitit is None:
        raise SystemExit("submitit is not installed: pip install -r requirements.txt "
                         "(or pip install 'submitit>=1.5,<2')")


def check_slurm(partition: str | None) -> None:
    """One-line errors for what sbatch would otherwise report in a traceback."""
    for tool in ("sbatch", "srun", "squeue"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: --launcher slurm runs on a Slurm login node; for a "
                             f"one-node test cluster on this machine run scripts/slurm_one_node.sh")
    if partition is None:
        return
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SystemExit(f"sinfo failed ({out.stderr.strip() or out.returncode}): is slurmctld up?")
    names = [p.strip() for p in out.stdout.split()]
    if partition not in {p.rstrip("*") for p in names}:
        raise SystemExit(f"unknown partition {partition!r}: this cluster has {', '.join(names) or 'none'} "
                         f"(* = default)")


def make_executor(launcher: str, folder: Path, opts: JobOptions, name: str,
                  dependency: str | None = None, collect: bool = False):
    """A submitit executor for the train array (or, with collect, the small collect job)."""
    cluster = "slurm" if launcher == "slurm" else "local"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=MAX_TIMEOUTS)
    params = dict(name=name, timeout_min=opts.time_min, nodes=1, tasks_per_node=1,
                  cpus_per_task=1 if collect else opts.cpus,
                  gpus_per_node=0 if collect else opts.gpus_per_job)
    if cluster == "slurm":
        params.update(mem_gb=4 if collect else opts.mem_gb,
                      slurm_partition=opts.partition,
                      slurm_array_parallelism=opts.max_parallel_jobs,
                      slurm_dependency=dependency,
                      slurm_additional_parameters=dict(opts.extra) or None)
        if collect:
            params["timeout_min"] = 60
    executor.update_parameters(**params)
    return executor


# --- status and collect -------------------------------------------------------------------------
def collect(stage: Stage, out: Path | None = None) -> Path:
    """Rewrite results.csv, summary and figures from every run under the stage's tree that
    has a result (the grid's and any other command's); to ``out`` if given (nothing is
    written into the tree then, so a read-only tree can be summarised)."""
    rows = [r for r in map(runs.read_row, stage.specs) if r is not None]
    with runs.outputs_to(stage.root, out):
        root = stage.summarize(rows, stage.specs, stage.cfg)
    done = sum(r.get("status") == "done" for r in rows)
    total = len(runs.read_csv(root / "results.csv"))
    print(f"collected {len(rows)} of {len(stage.specs)} runs ({done} done, {len(rows) - done} failed) "
          f"into {root}/results.csv ({total} run(s) in all under {stage.root}); summary and figures in {root}/")
    missing = [s.name for s in stage.specs if runs.read_row(s) is None]
    if missing:
        print(f"missing {len(missing)}: " + "; ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    return root


def print_status(stage: Stage) -> Counter:
    """Counts of done / running / failed / pending runs from the results tree; with a
    jobs registry and squeue, the states of the queued jobs too."""
    states = {s.run_dir: s.state() for s in stage.specs}
    counts = Counter(states.values())
    print(f"{stage.root}: {len(stage.specs)} runs: done {counts['done']}, running {counts['running']}, "
          f"failed {counts['failed']}, pending {counts['pending']}")
    failed = [s for s in stage.specs if states[s.run_dir] == "failed"]
    for spec in failed[:5]:
        print(f"  failed: {spec.name} (see {spec.run_dir / runs.FAILED}; --retry-failed retrains)")
    jobs = read_registry(stage.root)
    if not jobs:
        return counts
    logs = slurm_dir(stage.root) / "logs"
    queue = queue_states()
    if queue is None or not any(j["launcher"] == "slurm" for j in jobs):
        print(f"{len(jobs)} job(s) in {slurm_dir(stage.root) / REGISTRY}"
              + ("; no squeue here for their states" if queue is None else "") + f"; logs in {logs}/")
        return counts

    def state_of(job):        # jobs of submitit-local have a pid, not a Slurm id
        if job["launcher"] != "slurm":
            return "LOCAL", ""
        return queue.get(job["job_id"], ("ENDED", ""))

    by_state = Counter(state_of(j)[0] for j in jobs)
    print(f"jobs: {', '.join(f'{n} {s.lower()}' for s, n in sorted(by_state.items()))} "
          f"(of {len(jobs)} submitted; 'ended' = left the queue); logs in {logs}/")
    reasons = Counter(state_of(j)[1] for j in jobs if state_of(j)[0] == "PENDING")
    if reasons:
        print("  pending because: " + ", ".join(f"{r} ({n})" for r, n in reasons.most_common()))
    queued = live_jobs_by_run(stage.root, queue)
    waiting = sum(1 for s in stage.specs if states[s.run_dir] == "pending"
                  and _rel(s.run_dir, stage.root) in queued)
    if counts["pending"]:
        print(f"pending: {waiting} in queued jobs, {counts['pending'] - waiting} in no job "
              f"(resubmit with the same command to train them)")
    for job in jobs:
        state = state_of(job)[0]
        unfinished = [r for r in job["runs"] if states.get(stage.root / r) == "pending"]
        if state not in LIVE_STATES and job["kind"] == "train" and unfinished:
            print(f"  job {job['job_id']} {state.lower()} with {len(unfinished)} run(s) unfinished; "
                  f"log: {job.get('stderr', logs)}")
    return counts
