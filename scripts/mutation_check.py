"""Put each deliberate mistake below into the code, one at a time, run the training
tests, and print which tests fail; the code is restored after each. A mistake that no
test catches prints "0 failing".

    python scripts/mutation_check.py
"""
import pathlib
import signal
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS = ["tests/test_guards.py", "tests/test_training.py", "tests/test_engine.py", "tests/test_pipeline.py"]
# (the mistake, the file, the code as it is, the code with the mistake)
MUTANTS = [
    ("λ zeroed inside the pack", "lbvae/pipeline/training.py",
     "self.lam = torch.tensor([s.lam for s in specs], dtype=torch.float32, device=device)",
     "self.lam = torch.zeros(len(specs), dtype=torch.float32, device=device)"),
    ("λ stage from fresh weights", "lbvae/pipeline/training.py",
     "    if spec.init_from is not None:\n        load_weights(spec.init_from, model, \"cpu\")", "    pass"),
    ("training reads held-out images", "lbvae/pipeline/training.py",
     "    train_idx, _ = heldout_split(len(dataset), cfg.heldout_fraction)\n    feed",
     "    train_idx = np.arange(len(dataset))\n    feed"),
    ("NaN/Inf parameter check removed", "lbvae/pipeline/training.py",
     "            bad_param |= ~torch.isfinite(p.detach()).flatten(1).all(1)", "            pass"),
    ("bf16 silently ignored", "lbvae/pipeline/engine.py", 'self.bf16 = precision == "bf16"', "self.bf16 = False"),
    ("metric points drawn before the distinct images", "lbvae/pipeline/evaluation.py",
     "    distinct = np.array([rng.integers(k * n // 5, (k + 1) * n // 5) for k in range(5)], dtype=np.int64)\n"
     "    points = rng.choice(n, size=min(n, n_train + n_test), replace=False).astype(np.int64)",
     "    points = rng.choice(n, size=min(n, n_train + n_test), replace=False).astype(np.int64)\n"
     "    distinct = np.array([rng.integers(k * n // 5, (k + 1) * n // 5) for k in range(5)], dtype=np.int64)"),
]


def main() -> int:
    # SIGTERM (timeout, a cluster's kill) would skip the finally below and leave a mutant in the tree.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    missed = 0
    for name, path, old, new in MUTANTS:
        file = ROOT / path
        source = file.read_text()
        if source.count(old) != 1:
            print(f"{name}: the code it changes is no longer in {path}; update this script")
            missed += 1
            continue
        file.write_text(source.replace(old, new))
        try:
            out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                                 capture_output=True, text=True, cwd=ROOT)
        finally:
            file.write_text(source)
        failing = [line.split(" - ")[0].removeprefix("FAILED ") for line in out.stdout.splitlines()
                   if line.startswith("FAILED")]
        missed += not failing
        print(f"{name}: {len(failing)} failing: {', '.join(failing) or '-'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
