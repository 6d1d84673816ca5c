"""Denormal floats are flushed to zero in every compute thread once the model or planning code is imported."""

import subprocess
import sys

import pytest

# A (4096 x 200) @ (200 x 200) matmul on two threads whose weights are all denormal (built from their bit
# patterns: a float literal like 1e-39 would itself be flushed to 0 on conversion once FTZ is on). With
# denormals-are-zero in every thread the product is exactly 0 in every row; a thread without it (e.g. one whose
# flags were set after torch's thread pool had started) leaves its share of the rows non-zero.
PROBE = """
import sys, torch
torch.set_num_threads(2)
if sys.argv[1] == "import":
    import {module}
bits = torch.randint(1, 1 << 23, (200, 200), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
w = bits.view(torch.float32)  # exponent field 0, mantissa non-zero: denormal
assert bool(((bits & 0x7F800000) == 0).all() and (bits != 0).all())
a = torch.randn(4096, 200, generator=torch.Generator().manual_seed(0))
out = a @ w
print(int((out != 0).any(1).sum()), float(out.abs().max()))
"""


def _nonzero_rows(module: str, mode: str) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module), mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), float(out[1])


@pytest.mark.parametrize("module", ["mbrl_lightning.planning", "mbrl_lightning.models"])
def test_importing_the_math_flushes_denormals_in_all_threads(module: str) -> None:
    rows, _ = _nonzero_rows(module, "plain")
    if rows == 0:
        pytest.skip("this CPU or build flushes denormals already: nothing to check")
    assert rows == 4096  # the control keeps denormals in every row (so the check below can fail)
    rows, largest = _nonzero_rows(module, "import")
    assert rows == 0, f"{rows} of 4096 rows kept denormal weights (a thread without denormals-are-zero)"
    assert largest == 0.0
