"""Every test starts from the same process-wide state and leaves it as it found it, and the
suite leaves the checkout as it found it, ignored files included: a stray results folder
would bind the user's first real run to a test's settings."""
import hashlib
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

CHECKOUT = Path(__file__).resolve().parent.parent
# Python's and pytest's own caches: kept out of the checkout (below), and not compared.
CACHES = {".git", "__pycache__", ".pytest_cache", ".ruff_cache"}

# No bytecode cache in the checkout, from this process or any script a test starts. Only
# this file's own cache is written before these lines run; pytest_unconfigure removes it.
sys.dont_write_bytecode = True
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"


def checkout_files() -> dict[str, tuple[int, int]]:
    """Every file of the checkout (ignored ones included, caches aside) with its size and mtime."""
    files = {}
    for folder, dirs, names in os.walk(CHECKOUT):
        dirs[:] = [d for d in dirs if d not in CACHES]
        for name in names:
            path = os.path.join(folder, name)
            try:
                stat = os.lstat(path)
            except FileNotFoundError:           # removed while we walked
                continue
            files[os.path.relpath(path, CHECKOUT)] = (stat.st_size, stat.st_mtime_ns)
    return files


def digest(relpath: str) -> str:
    path = CHECKOUT / relpath
    if path.is_symlink():
        return "link:" + os.readlink(path)
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def changes(before: dict, after: dict) -> list[str]:
    """'new PATH', 'changed PATH' and 'removed PATH', sorted."""
    return sorted([f"new {p}" for p in after.keys() - before.keys()]
                  + [f"removed {p}" for p in before.keys() - after.keys()]
                  + [f"changed {p}" for p in before.keys() & after.keys() if before[p] != after[p]])


def pytest_sessionstart(session):
    session.config.checkout_before = {path: digest(path) for path in checkout_files()}
    # The data folder a test gets when it names none: empty and outside the checkout, so
    # neither the user's own files ($DISENT_DATA_DIR) nor data/ reach a test. Caches then
    # go beside the data they are made from, in the test's own folders.
    session.config.scratch = tempfile.mkdtemp(prefix="disent-tests-")
    os.environ["DISENT_DATA_DIR"] = os.path.join(session.config.scratch, "data")
    os.environ.pop("DISENT_CACHE_DIR", None)


def pytest_sessionfinish(session, exitstatus):
    before = session.config.checkout_before
    found = changes(before, {path: digest(path) for path in checkout_files()})
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_sep("=", "the test suite wrote into the checkout", red=True)
        for line in found:
            reporter.write_line(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    if getattr(config, "scratch", None):
        shutil.rmtree(config.scratch, ignore_errors=True)
    cache = Path(__file__).parent / "__pycache__"
    for pyc in cache.glob("conftest.*.pyc"):
        pyc.unlink(missing_ok=True)
    if cache.is_dir() and not any(cache.iterdir()):
        cache.rmdir()


@pytest.fixture(autouse=True)
def leaves_the_checkout_alone():
    """Names the test that wrote into the checkout (sizes and mtimes: cheap enough per test);
    the session check above compares contents too."""
    before = checkout_files()
    yield
    found = changes(before, checkout_files())
    assert not found, "this test wrote into the checkout (give it tmp_path folders): " + ", ".join(found)


@pytest.fixture(autouse=True)
def restore_global_state():
    """Threads, default dtype, working directory and the global RNGs, restored after each
    test: the code under test seeds torch's global RNG (initial weights), and a test that
    changes the thread count would change the arithmetic of every test after it."""
    threads, dtype, cwd = torch.get_num_threads(), torch.get_default_dtype(), os.getcwd()
    rng_torch, rng_numpy, rng_python = torch.get_rng_state(), np.random.get_state(), random.getstate()
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
    os.chdir(cwd)
    torch.set_rng_state(rng_torch)
    np.random.set_state(rng_numpy)
    random.setstate(rng_python)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: sums then run in one order on every machine, and a
    pack's runs and a run alone get the same thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
