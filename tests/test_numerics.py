"""Denormal floats are flushed to zero in every compute thread once the model or planning code is imported."""

import subprocess
import sys

import pytest

# A (4096 x 200) @ (200 x 200) matmul on two threads whose weights are all denormal (1e-39, below float32's
# smallest normal 1.2e-38): with denormals-are-zero the product is exactly 0 in every row, whichever thread
# computed it; without it the rows are sums of tiny non-zero products.
PROBE = """
import sys, torch
torch.set_num_threads(2)
if sys.argv[1] == "import":
    import {module}
a = torch.randn(4096, 200, generator=torch.Generator().manual_seed(0))
w = torch.full((200, 200), 1e-39)
print(float((a @ w).abs().max()), float(torch.tensor([1e-39]) * 1.0))
"""


def _probe(module: str, mode: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module), mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), float(out[1])


@pytest.mark.parametrize("module", ["mbrl_lightning.planning", "mbrl_lightning.models"])
def test_importing_the_math_flushes_denormals_in_all_threads(module: str) -> None:
    control_max, control_scalar = _probe(module, "plain")
    if control_max == 0.0:
        pytest.skip("this CPU or build flushes denormals already: nothing to check")
    assert control_scalar > 0.0  # the control keeps denormals (so the check below can fail)
    flushed_max, flushed_scalar = _probe(module, "import")
    assert flushed_max == 0.0, "some rows of the matmul kept denormal weights (a thread without DAZ)"
    assert flushed_scalar == 0.0
