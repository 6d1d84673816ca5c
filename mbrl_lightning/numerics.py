"""Flush denormal floats to zero on CPU: a model whose weights decay towards zero plans 20x slower without it.

Weight decay drives unused weights of a trained ensemble below float32's smallest normal number (1.2e-38);
x86 CPUs multiply such denormals through a slow microcode path, so one planned PETS action on
InvertedPendulum-v5 took 3.7 s instead of 0.18 s after four iterations (benchmarks/denormals.py). Values
that small change no prediction, so flush-to-zero (FTZ) and denormals-are-zero (DAZ) are set process-wide
when the model or planning package is imported. The flags live in each thread's MXCSR register and new
threads inherit them, so this runs before torch starts its intra-op thread pool (the first parallel op).
"""

from __future__ import annotations

import torch

FLUSH_DENORMALS: bool = torch.set_flush_denormal(True)  # False where the CPU has no FTZ/DAZ (then nothing changes)
