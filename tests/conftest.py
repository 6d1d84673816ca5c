import os

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tmp_run(tmp_path):
    """A folder for a test run's logs and checkpoints."""
    return tmp_path


@pytest.fixture
def one_thread():
    """Small networks run faster on one thread; two threads stall when other jobs share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
