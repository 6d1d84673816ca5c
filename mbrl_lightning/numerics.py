"""Flush denormal floats to zero on CPU: a model whose weights decay towards zero plans 20x slower without it.

Weight decay drives unused weights of a trained ensemble below float32's smallest normal number (1.2e-38);
x86 CPUs multiply such denormals through a slow microcode path, so one planned PETS action on
InvertedPendulum-v5 took 3.7 s instead of 0.18 s after four iterations (benchmarks/denormals.py). Values
that small change no prediction, so importing the model or planning package sets flush-to-zero (FTZ) and
denormals-are-zero (DAZ). The flags live in each thread's MXCSR register: they hold for the importing thread
and the threads it creates afterwards, such as torch's intra-op pool when it starts at the first parallel op.
In a script of your own, import ``mbrl_lightning.agents`` (or ``.models``, ``.planning``) before any torch work,
or call ``torch.set_flush_denormal(True)`` first. This is a side effect on that thread's float arithmetic
(numpy and MuJoCo on it included).
"""

from __future__ import annotations

import torch

FLUSH_DENORMALS: bool = torch.set_flush_denormal(True)  # False where the CPU has no FTZ/DAZ (then nothing changes)
