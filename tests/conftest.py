"""Every test starts from the same process-wide state and leaves it as it found it."""
import os
import random

import numpy as np
import pytest
import torch


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
