"""The whole MPC loop under DDP with 2 CPU processes: every rank ends with the same buffer holding both ranks'
data, and each rank takes the configured number of gradient steps."""

import pytorch_lightning as pl
import torch

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.callbacks import CollectOnPolicy, CollectRandom, Evaluate
from mbrl_lightning.data import ReplayDataModule
from mbrl_lightning.planning import RandomShooting


class SaveBuffer(pl.Callback):
    """Each rank writes its buffer and step count at fit end (the spawned processes' state is not returned)."""

    def __init__(self, folder):
        self.folder = folder

    def on_fit_end(self, trainer, pl_module):
        state = trainer.datamodule.buffer.state_dict()
        state["global_step"] = trainer.global_step
        state["eval_return"] = float(trainer.callback_metrics["eval/return"])
        torch.save(state, f"{self.folder}/rank{trainer.global_rank}.pt")


def test_ddp_two_cpu_processes_share_one_buffer(tmp_path):
    dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=32, steps_per_epoch=6)
    model = MPCAgent(dm.obs_dim, dm.act_dim, planner=RandomShooting(horizon=3, num_sequences=30),
                     ensemble_size=2, hidden_size=16)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        reload_dataloaders_every_n_epochs=1, default_root_dir=tmp_path,
        callbacks=[CollectRandom(num_steps=201), Evaluate(num_episodes=3), CollectOnPolicy(num_steps=51, num_envs=2),
                   SaveBuffer(tmp_path)],
    )
    trainer.fit(model, datamodule=dm)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0["size"] == r1["size"] == 201 + 51  # each rank collected a share; both hold everything
    for field in ("obs", "act", "next_obs", "reward", "terminated"):
        assert torch.equal(r0[field], r1[field])
    # rank 0 took 101 random steps and rank 1 100, with different seeds: the two halves differ
    first, second = r0["act"][:100], r0["act"][101:201]
    assert not torch.allclose(first, second)
    assert r0["global_step"] == r1["global_step"] == 2 * 6  # steps_per_epoch gradient steps on each rank
    assert r0["eval_return"] == r1["eval_return"]  # gathered: both ranks log the same evaluation
