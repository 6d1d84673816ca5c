"""The whole loop under DDP with 2 CPU processes (MPC, SAC, MBPO): every rank ends with the same buffers holding
both ranks' data and the same weights, each rank takes the configured number of gradient steps, nothing hangs.

The runs use ``strategy="ddp"`` with their own processes (this file run as a script; Lightning relaunches it for
rank 1), as the CLI does: ``ddp_spawn`` on CPU would map the buffers of all ranks onto one shared memory, so their
equality would prove nothing. Each rank writes its state to a file that the test compares.
"""

import os
import signal
import subprocess
import sys
from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from mbrl_lightning.agents import MBPO, SAC, MPCAgent
from mbrl_lightning.callbacks import CollectOnPolicy, CollectRandom, Evaluate, ProgressReport
from mbrl_lightning.data import ReplayDataModule
from mbrl_lightning.models import DynamicsEnsemble
from mbrl_lightning.planning import RandomShooting

FIELDS = ("obs", "act", "next_obs", "reward", "terminated")
RANDOM_STEPS, POLICY_STEPS, STEPS_PER_EPOCH = 101, 21, 4


class SaveRankState(pl.Callback):
    """Each rank writes its weights, buffers, step counts and last evaluation at fit end."""

    def __init__(self, folder):
        self.folder = folder

    def on_fit_end(self, trainer, pl_module):
        state = {"weights": pl_module.state_dict(), "buffer": trainer.datamodule.buffer.state_dict(),
                 "global_step": trainer.global_step, "eval_return": float(trainer.callback_metrics["eval/return"])}
        if isinstance(pl_module, SAC):
            state["num_updates"] = pl_module.num_updates
        if isinstance(pl_module, MBPO):
            state["model_buffer"] = pl_module.model_buffer.state_dict()
            state["model_trained_steps"] = pl_module.model_trained_steps
        torch.save(state, f"{self.folder}/rank{trainer.global_rank}.pt")


def make_agent(name, dm):
    if name == "mpc":
        return MPCAgent(dm.obs_dim, dm.act_dim, planner=RandomShooting(horizon=3, num_sequences=30), ensemble_size=2,
                        hidden_size=16)
    if name == "sac":
        return SAC(dm.obs_dim, dm.act_dim, hidden_size=16, learn_temperature=True)
    return MBPO(dm.obs_dim, dm.act_dim, rollout_length=2, rollout_batch_size=6, rollout_every=2, model_train_steps=3,
                model_batch_size=16, dynamics=partial(DynamicsEnsemble, ensemble_size=2, hidden_size=16),
                hidden_size=16, model_buffer_capacity=1000, model_sampling="random", learn_temperature=True)


def fit_on_two_ranks(name, folder):
    """The run each of the two processes executes (ProgressReport and checkpoints included: they sync ranks)."""
    pl.seed_everything(0)
    dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=16, steps_per_epoch=STEPS_PER_EPOCH)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False, log_every_n_steps=2,
        enable_progress_bar=False, enable_model_summary=False, reload_dataloaders_every_n_epochs=1,
        default_root_dir=folder,
        callbacks=[CollectRandom(num_steps=RANDOM_STEPS), Evaluate(num_episodes=3),
                   CollectOnPolicy(num_steps=POLICY_STEPS, num_envs=2), ProgressReport(), SaveRankState(folder)],
    )
    trainer.fit(make_agent(name, dm), datamodule=dm)


def run_two_ranks(name, folder):
    """Both ranks' saved states; fails (instead of hanging) if the run does not finish in time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, __file__, name, str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # both ranks: rank 1 is in rank 0's session
        out, _ = proc.communicate()
        pytest.fail(f"the DDP run of {name} hung:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    return torch.load(folder / "rank0.pt"), torch.load(folder / "rank1.pt")


def assert_equal_buffers(b0, b1, size):
    assert b0["size"] == b1["size"] == size
    for field in FIELDS:
        assert torch.equal(b0[field], b1[field]), field


def assert_equal_weights(r0, r1):
    assert r0["weights"].keys() == r1["weights"].keys()
    for name, w in r0["weights"].items():
        assert torch.equal(w, r1["weights"][name]), name


def test_ddp_mpc_two_processes_share_one_buffer(tmp_path):
    r0, r1 = run_two_ranks("mpc", tmp_path)
    assert_equal_buffers(r0["buffer"], r1["buffer"], RANDOM_STEPS + POLICY_STEPS)  # each collected a share
    # rank 0 took 51 random steps and rank 1 50, with different seeds: the two halves differ
    assert not torch.allclose(r0["buffer"]["act"][:50], r0["buffer"]["act"][51:101])
    assert_equal_weights(r0, r1)
    assert r0["global_step"] == r1["global_step"] == 2 * STEPS_PER_EPOCH  # steps_per_epoch steps on each rank
    assert r0["eval_return"] == r1["eval_return"]  # gathered: both ranks log the same evaluation


def test_ddp_sac_ranks_end_with_equal_weights_and_buffer(tmp_path):
    r0, r1 = run_two_ranks("sac", tmp_path)
    assert_equal_buffers(r0["buffer"], r1["buffer"], RANDOM_STEPS + POLICY_STEPS)
    assert_equal_weights(r0, r1)  # actor, critics, target critics, temperature: each rank trained on its batches
    assert {"actor.0.weight", "critics.0.weight", "critics_target.0.weight", "log_alpha"} <= set(r0["weights"])
    assert r0["weights"]["log_alpha"] != torch.tensor(0.05).log()  # the temperature was trained too
    assert r0["num_updates"] == r1["num_updates"] == 2 * STEPS_PER_EPOCH
    assert r0["eval_return"] == r1["eval_return"]


def test_ddp_mbpo_ranks_end_with_equal_weights_and_buffers(tmp_path):
    r0, r1 = run_two_ranks("mbpo", tmp_path)
    assert_equal_buffers(r0["buffer"], r1["buffer"], RANDOM_STEPS + POLICY_STEPS)
    assert_equal_weights(r0, r1)
    assert any(name.startswith("dynamics.") for name in r0["weights"])
    assert r0["num_updates"] == r1["num_updates"] == 2 * STEPS_PER_EPOCH
    assert r0["model_trained_steps"] == r1["model_trained_steps"] == 2 * 3
    m0, m1 = r0["model_buffer"], r1["model_buffer"]
    assert_equal_buffers(m0, m1, m0["size"])
    # 2 epochs x 2 rounds x 6 starts (split over the ranks) x L=2, less a step for rollouts that terminated at once
    full = 2 * 2 * 6 * 2
    assert full - int(m0["terminated"].sum()) <= m0["total_added"] <= full
    # each round every rank rolls out its 3 of the 6 starts from its own random stream: had both ranks drawn the
    # same starts, every gathered transition would be there twice
    assert m0["obs"].unique(dim=0).shape[0] > 0.75 * m0["size"]


def _draw(module, queue):
    queue.put(torch.rand(4, generator=module.generator).tolist())


def test_mbpo_crosses_into_a_spawned_process():
    """ddp_spawn sends the module to new processes through shared memory; its random stream comes along."""
    model = MBPO(4, 2, hidden_size=8, dynamics=partial(DynamicsEnsemble, hidden_size=8), model_buffer_capacity=10,
                 seed=3)
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    child = ctx.Process(target=_draw, args=(model, queue))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert queue.get() == torch.rand(4, generator=model.generator).tolist()


if __name__ == "__main__":  # one DDP run (see run_two_ranks); Lightning starts rank 1 with the same command
    torch.set_num_threads(1)
    fit_on_two_ranks(sys.argv[1], sys.argv[2])
