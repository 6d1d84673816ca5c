"""Does training the dynamics in bfloat16 cost model quality? The MBPO Hopper config's ensemble, trained to early
stopping on a real run's transitions, in float32 and with ``train_bf16`` (matmuls in bfloat16 under autocast),
from the same initial weights per seed; the held-out error that stops training and ranks the elites is evaluated in
float32 either way.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/bf16_dynamics.py \\
        --checkpoint runs/mbpo_hopper/version_0/checkpoints/last.ckpt [--rows 37000] [--seeds 0 1 2] [--warm]

``--warm`` starts every training from the checkpoint's model (trained in float32), as a run's next training would:
its difference is the cost of one training in bf16, not of a whole run's.

Per seed and precision: epochs to early stopping, seconds, seconds per epoch, and the elites' held-out error (the
normalised-delta MSE plus the reward head's, ``model/held_out_loss``); then the paired bf16 - float32 difference of
that error, mean ± its standard error over the seeds. The split is the run's own (the DataModule's fixed 20 %).
Runs on the CPU; wants one with native bf16 matmuls (AVX512-BF16 or AMX): elsewhere bfloat16 is emulated, and slow.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile

import torch
from mbpo_hopper import TrainModel, UpdateTimer, build, cpu_model, run_transitions, trainer  # benchmarks/

from mbrl_lightning.callbacks import CollectInterleaved
from mbrl_lightning.precision import cpu_has_bf16


def train_once(data: dict[str, torch.Tensor], seed: int, bf16: bool, log_dir: str,
               warm: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    agent, dm = build(0, data=data, seed=seed, dynamics={"train_bf16": bf16})
    if warm is not None:  # the run's model weights, as its next training starts from them
        agent.dynamics.load_state_dict(warm)
    timing = TrainModel(profile=False)
    trainer([CollectInterleaved(num_steps=1, every_n_updates=20), timing, UpdateTimer(1, 0)], log_dir).fit(
        agent, datamodule=dm)
    epochs = timing.metrics["model/epochs"]
    return {"epochs": epochs, "seconds": timing.seconds, "per_epoch": timing.seconds / epochs,
            "held_out": timing.metrics["model/held_out_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="an MBPO Hopper run's last.ckpt (its replay buffer)")
    parser.add_argument("--rows", type=int, default=None, help="the first N transitions (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--warm", action="store_true", help="start from the run's model weights (as a run's next "
                        "training does: some 50 epochs) instead of the seed's fresh ones (some 300 to 550)")
    args = parser.parse_args()
    data = run_transitions(args.checkpoint, args.rows)
    warm = None
    if args.warm:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        warm = {k.removeprefix("dynamics."): v for k, v in state.items() if k.startswith("dynamics.")}
    start = "the run's" if args.warm else "fresh"
    print(f"{datetime.date.today()}, {cpu_model()}, native bf16: {cpu_has_bf16()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); {data['obs'].shape[0]} transitions of {args.checkpoint}, "
          f"{start} weights")
    print("| seed | precision | epochs | s | s / epoch | held-out error (elites) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    diffs = []
    with tempfile.TemporaryDirectory() as log_dir:
        for seed in args.seeds:
            out = {}
            for bf16 in (False, True):
                r = out[bf16] = train_once(data, seed, bf16, log_dir, warm)
                print(f"| {seed} | {'bfloat16' if bf16 else 'float32'} | {r['epochs']:.0f} | {r['seconds']:.1f} | "
                      f"{r['per_epoch']:.2f} | {r['held_out']:.5f} |", flush=True)
            diffs.append(out[True]["held_out"] - out[False]["held_out"])
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    print(f"held-out error, bf16 - float32 (paired over {len(diffs)} seeds): {statistics.mean(diffs):+.5f} ± {se:.5f}")


if __name__ == "__main__":
    main()
