"""Training throughput: the naive upstream-style loop against the packed engine.

    python benchmarks/throughput.py                       # CPU or GPU, whichever --device auto finds
    python benchmarks/throughput.py --packs 1 5 10 50 --seconds 20
    python benchmarks/throughput.py --precision bf16 --compile   # the engine's options
    python benchmarks/throughput.py --loss-check 300      # fp32 vs bf16 vs compile: train loss after N steps
    python benchmarks/throughput.py --flops               # work per step against this device's matmul peak
    python benchmarks/throughput.py --profile 20          # where a pack step's time goes (torch.profiler)

In one process and on one device it times, per dataset shape (dSprites: 1 channel;
Shapes3D/MPI3D: 3 channels, the same network otherwise):
- ``naive``: the original code's loop: the images as one float32 tensor in memory, a
  shuffling DataLoader (batch 64), one run, NCHW, sigmoid + BCE, three ``.item()`` per
  step for the loss lists;
- ``engine P=k``: ``training.Pack.train_step`` (uint8 gather, per-run noise, one
  optimizer step for the pack, on-device loss bookkeeping) for packs of k runs.
Both read the same 16,384 stand-in images held in memory, so neither pays for image
rendering or file reads. Rates are images per second summed over the pack, the median
of the timed steps after warm-up steps. Checkpoint writes (every 5,000 steps) and
evaluation are not timed. The full-grid projection multiplies the study's step count
(3 datasets x 20 M optimizer steps of 64 images) by the measured rates.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import Config  # noqa: E402
from datasets import GroundTruthDataset, load_dataset  # noqa: E402
from lbvae.pipeline.runs import RunSpec  # noqa: E402
from lbvae.pipeline.training import ImageFeed, Pack  # noqa: E402
from models import BetaVAE  # noqa: E402
from utils import resolve_device  # noqa: E402

IMAGES = 16_384
BATCH = 64
# Optimizer steps of the paper's grid per dataset: 5 β x 10 seeds x 150k, then
# 5 β x 5 λ x 10 seeds x 50k (docs/study.md).
GRID_STEPS_PER_DATASET = 5 * 10 * 150_000 + 5 * 5 * 10 * 50_000
SHAPES = {"dsprites": ("dsprites",), "shapes3d": ("shapes3d", "mpi3d")}   # channels 1 and 3


class InMemory(GroundTruthDataset):
    """The first IMAGES stand-in images, rendered once and held as uint8."""

    def __init__(self, name: str, count: int = IMAGES):
        source = load_dataset(name, source="standin")
        self.name, self.channels = name, source.channels
        self.factor_names, self.factor_sizes = source.factor_names, source.factor_sizes
        self.array = source.images(np.arange(count))

    def __len__(self):
        return len(self.array)

    def _images(self, indices):
        return self.array[indices]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(step, device, seconds: float, warmup: int, min_steps: int = 3) -> float:
    """Median seconds per call of ``step`` after ``warmup`` calls, timing for ~``seconds``."""
    for _ in range(warmup):
        step()
    _sync(device)
    times, start = [], time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < seconds:
        tic = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


# --- the original's loop ---------------------------------------------------------------
def naive_rate(dataset: InMemory, device, seconds: float) -> float:
    images = torch.from_numpy(dataset.array).float().div(255)          # the whole set as float32
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(0), drop_last=True)
    torch.manual_seed(0)
    model = BetaVAE(dataset.channels, 10).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = iter(loader)
    losses = {"recon": [], "kl": [], "total": []}

    def step():
        nonlocal batches
        try:
            (x,) = next(batches)
        except StopIteration:
            batches = iter(loader)
            (x,) = next(batches)
        x = x.to(device)
        logits, mu, logvar = model(x)
        recon = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum") / len(x)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        loss = recon + 4.0 * kl
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses["recon"].append(recon.item())
        losses["kl"].append(kl.item())
        losses["total"].append(loss.item())

    return BATCH / timed_steps(step, device, seconds, warmup=3)


# --- the engine ---------------------------------------------------------------------------
def pack_specs(dataset, pack_size: int, root: Path) -> list[RunSpec]:
    """Run k of a benchmark pack: seed k, β = 1 + k % 5."""
    return [RunSpec("beta", dataset.name, float(1 + k % 5), 0.0, seed=k, steps=10**9, run_dir=root / f"run{k}")
            for k in range(pack_size)]


def make_pack(dataset, cfg: Config, device, pack_size: int, root: Path) -> Pack:
    return Pack(pack_specs(dataset, pack_size, root), cfg, dataset.channels, device, np.arange(len(dataset)))


def engine_rate(dataset, cfg: Config, device, pack_size: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        pack = make_pack(dataset, cfg, device, pack_size, Path(tmp))
        source = ImageFeed(dataset, device)
        warmup = 3 if not cfg.compile else 6         # compilation happens in the first calls
        return pack_size * BATCH / timed_steps(lambda: pack.train_step(source), device, seconds, warmup)


def throughput(args, device) -> None:
    cfg = Config(batch_size=BATCH, device=str(device), precision=args.precision, compile=args.compile)
    print(f"device: {_device_name(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"engine: precision {cfg.precision}, compile {cfg.compile}, "
          f"mode {'vmap' if device.type == 'cuda' else 'split'}")
    print(f"{'dataset shape':14s} {'loop':12s} {'images/s':>10s} {'vs naive':>9s} {'peak GPU MiB':>13s}")
    best = {}
    for name in args.datasets:
        dataset = InMemory(name, args.images)
        _reset_peak(device)
        naive = naive_rate(dataset, device, args.seconds)
        print(f"{name:14s} {'naive':12s} {naive:10.0f} {1.0:8.2f}x {_peak_mib(device):>13s}", flush=True)
        rates = {}
        for p in args.packs:
            _reset_peak(device)
            rates[p] = engine_rate(dataset, cfg, device, p, args.seconds)
            print(f"{name:14s} {f'engine P={p}':12s} {rates[p]:10.0f} {rates[p] / naive:8.2f}x "
                  f"{_peak_mib(device):>13s}", flush=True)
        best[name] = (naive, max(rates.values()), max(rates, key=rates.get))
    covered = [ds for name in best for ds in SHAPES[name]]
    print(f"\nProjected wall time of the paper's grid for {', '.join(covered)} "
          f"({len(covered) * GRID_STEPS_PER_DATASET / 1e6:.0f} M optimizer steps of 64 images; training only):")
    total_naive = total_engine = 0.0
    for name, (naive, engine, p) in best.items():
        for _ in SHAPES[name]:
            total_naive += GRID_STEPS_PER_DATASET * BATCH / naive
            total_engine += GRID_STEPS_PER_DATASET * BATCH / engine
        print(f"  {', '.join(SHAPES[name])}: naive {naive:.0f} img/s, engine {engine:.0f} img/s (P={p})")
    print(f"  naive loop: {total_naive / 3600:,.1f} h;  engine: {total_engine / 3600:,.1f} h "
          f"({total_naive / total_engine:.2f}x)")


# --- does bf16 / compile change what is learned? ----------------------------------------
def loss_check(args, device) -> None:
    dataset = InMemory("dsprites")
    source = ImageFeed(dataset, device)
    spec = pack_specs(dataset, 1, Path("."))[0]                                 # the run below
    print(f"device: {_device_name(device)}; one dSprites stand-in run (β={spec.beta:g}, seed {spec.seed}, "
          f"batch {BATCH}, lr {Config().lr:g}), {args.loss_check} steps; train loss = mean total loss of the "
          f"last 50 steps")
    reference = None
    for precision, compile_ in (("fp32", False), ("bf16", False), ("fp32", True)):
        cfg = Config(batch_size=BATCH, device=str(device), precision=precision, compile=compile_, loss_window=50)
        with tempfile.TemporaryDirectory() as tmp:
            pack = make_pack(dataset, cfg, device, 1, Path(tmp))
            tic = time.perf_counter()
            for _ in range(args.loss_check):
                pack.train_step(source)
            _sync(device)
            seconds = time.perf_counter() - tic
            loss = float(pack.record.window[0, :min(args.loss_check, 50), 0].mean())
            weights = pack.model.member_state_dict(0)
        if reference is None:
            reference = (loss, weights)
        diff = max(float((weights[k] - reference[1][k]).abs().max()) for k in weights)
        print(f"  {precision}{' + compile' if compile_ else '':10s}  train loss {loss:9.3f}  "
              f"({100 * (loss - reference[0]) / reference[0]:+.2f}% vs fp32)  max |Δw| vs fp32 {diff:.2e}  "
              f"{seconds:.1f} s incl. compilation")


# --- how close to the device's peak is the loop? ---------------------------------------------
def flops(args, device) -> None:
    """FLOPs of one training step (forward and backward, batch 64, 1 channel) from
    ``torch.utils.flop_counter``, and the GFLOP/s of a 2048^3 float32 matrix product on
    this device, the practical peak the convolutions are measured against."""
    from torch.utils.flop_counter import FlopCounterMode

    model = BetaVAE(1, 10).to(device)
    x = torch.rand(BATCH, 1, 64, 64, device=device)
    with FlopCounterMode(display=False) as counter:
        logits, mu, logvar = model(x)
        (F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + mu.square().sum()
         + logvar.exp().sum()).backward()
    step = counter.get_total_flops()
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    seconds = timed_steps(lambda: a @ b, device, args.seconds, warmup=2)
    peak = 2 * 2048 ** 3 / seconds
    print(f"device: {_device_name(device)}; threads {torch.get_num_threads()}")
    print(f"one training step of {BATCH} images (1 channel): {step / 1e9:.2f} GFLOP")
    print(f"2048^3 float32 matmul: {peak / 1e9:.0f} GFLOP/s (median of the timed products)")
    for rate in args.rates:
        used = rate / BATCH * step
        print(f"at {rate:g} images/s the loop does {used / 1e9:.0f} GFLOP/s = {100 * used / peak:.0f} % of that")


# --- where does a step's time go? ------------------------------------------------------------
# Self CPU time of an operator goes to the first part whose names it matches; the phases
# (recorded around the step's three calls) catch the rest.
PROFILE_PARTS = (
    ("convolutions, backward", ("convolution_backward",)),
    ("convolutions, forward", ("mkldnn_convolution", "_slow_conv2d", "slow_conv_transpose2d", "convolution")),
    ("linear layers (fwd + bwd)", ("addmm", "aten::mm", "aten::bmm")),
)
PHASES = ("batch gather", "forward + backward", "Adam step")


def profile_rows(events) -> tuple[list[tuple[str, float]], dict[str, dict[str, float]]]:
    """(part, self CPU seconds) of a profile's events: the named operator kinds, then
    the rest of each phase, then what ran outside the phases (Python, bookkeeping); and
    per part the self CPU seconds of each operator in it."""
    seconds = dict.fromkeys([name for name, _ in PROFILE_PARTS] + [f"other, {ph}" for ph in PHASES]
                            + ["outside the three calls"], 0.0)
    by_op = {part: {} for part in seconds}
    for ev in events:
        if ev.name in PHASES:
            continue
        self_s = ev.self_cpu_time_total / 1e6
        part = next((name for name, keys in PROFILE_PARTS if any(k in ev.name for k in keys)), None)
        if part is None:
            phase = next((ph for ph in PHASES if ph in _ancestors(ev)), None)
            part = f"other, {phase}" if phase else "outside the three calls"
        seconds[part] += self_s
        by_op[part][ev.name] = by_op[part].get(ev.name, 0.0) + self_s
    return list(seconds.items()), by_op


def _ancestors(ev) -> set[str]:
    names, parent = set(), ev.cpu_parent
    while parent is not None:
        names.add(parent.name)
        parent = parent.cpu_parent
    return names


def profiled_step(pack: Pack, feed: ImageFeed) -> None:
    """``Pack.train_step``'s three calls, each inside a named profiler range (PHASES)."""
    from torch.autograd.profiler import record_function
    with record_function(PHASES[0]):
        x = feed.batch(np.stack([order(pack.step) for order in pack.orders]))
        eps = torch.stack([torch.randn((x.shape[1], pack.cfg.latent_dim), generator=g, device=pack.device)
                           for g in pack.generators])
    with record_function(PHASES[1]):
        pack.model.forward_backward(x, eps, pack.beta, pack.lam, pack.step)
    with record_function(PHASES[2]):
        pack.optimizer.step()
    pack.step += 1


def profile(args, device) -> None:
    """torch.profiler over ``args.profile`` steps of a pack of one (its every operator runs in
    this thread; a CPU pack of P runs each run's forward and backward like this, one thread
    per run), per dataset shape, after 3 warm-up steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    print(f"device: {_device_name(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"a pack of one, batch {BATCH}, {args.profile} profiled steps; self CPU time per part")
    for name in args.datasets:
        dataset = InMemory(name, args.images)
        cfg = Config(batch_size=BATCH, device=str(device))
        with tempfile.TemporaryDirectory() as tmp:
            pack = make_pack(dataset, cfg, device, 1, Path(tmp))
            feed = ImageFeed(dataset, device)

            for _ in range(3):
                profiled_step(pack, feed)
            tic = time.perf_counter()
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.profile):
                    profiled_step(pack, feed)
            wall = (time.perf_counter() - tic) / args.profile
        rows, by_op = profile_rows(prof.events())
        total = sum(s for _, s in rows)
        print(f"\n{name} ({dataset.channels} channel{'s' if dataset.channels > 1 else ''}): "
              f"{1000 * wall:.1f} ms per step under the profiler, "
              f"{1000 * total / args.profile:.1f} ms of self CPU time")
        for part, seconds in rows:
            top = sorted(by_op[part].items(), key=lambda kv: -kv[1])[:4]
            ops = ", ".join(f"{op.removeprefix('aten::')} {100 * s / total:.1f}" for op, s in top if s > 0)
            print(f"  {part:28s} {1000 * seconds / args.profile:8.1f} ms  {100 * seconds / total:5.1f} %   {ops}")


def _reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device) -> str:
    """Peak GPU memory allocated since the last reset, in MiB ("-" on the CPU)."""
    return f"{torch.cuda.max_memory_allocated(device) / 2 ** 20:.0f}" if device.type == "cuda" else "-"


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"CPU {platform.processor() or platform.machine()}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--datasets", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--packs", nargs="+", type=int, default=[1, 5, 10, 50])
    parser.add_argument("--seconds", type=float, default=10.0, help="timing budget per measurement")
    parser.add_argument("--images", type=int, default=IMAGES, help="stand-in images held in memory per shape")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--loss-check", type=int, default=0, metavar="STEPS",
                        help="instead: train loss after STEPS steps in fp32, bf16 and with torch.compile")
    parser.add_argument("--flops", action="store_true",
                        help="instead: FLOPs per training step and the device's matmul GFLOP/s")
    parser.add_argument("--rates", type=float, nargs="*", default=[790.0],
                        help="with --flops: images/s to express as a fraction of the matmul peak")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="instead: torch.profiler over STEPS steps of a pack of one, time per part")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.profile:
        profile(args, device)
    elif args.flops:
        flops(args, device)
    elif args.loss_check:
        loss_check(args, device)
    else:
        throughput(args, device)


if __name__ == "__main__":
    main()
