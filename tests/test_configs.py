"""The brief's configs carry the public reference homework's values (experiments/mpc/*.yaml over mpc_config's
defaults: ensemble 3, lr 1e-3, K = 1000, train batch 512), and every one of them parses in the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Issue 13, section 4: per config, the reference's num_iters, initial_batch_size, batch_size (on-policy steps per
# iteration; None = no on-policy collection), num_agent_train_steps_per_iter, num_eval_trajectories (0 = none),
# mpc_horizon, num_layers x hidden_size, and the env.
REFERENCE = {
    "obstacles_1_iter": dict(iters=1, initial=5000, batch=None, train_steps=20, evals=20, horizon=10,
                             layers=2, hidden=250, env="mbrl/Obstacles-v0"),
    "obstacles_multi_iter": dict(iters=12, initial=5000, batch=1000, train_steps=20, evals=20, horizon=10,
                                 layers=2, hidden=250, env="mbrl/Obstacles-v0"),
    "reacher_multi_iter": dict(iters=15, initial=5000, batch=5000, train_steps=1000, evals=10, horizon=10,
                               layers=2, hidden=250, env="mbrl/Reacher7DOF-v0"),
    "reacher_ablation": dict(iters=15, initial=5000, batch=800, train_steps=1000, evals=10, horizon=10,
                             layers=2, hidden=250, env="mbrl/Reacher7DOF-v0"),
    "halfcheetah_multi_iter": dict(iters=15, initial=5000, batch=5000, train_steps=1500, evals=10, horizon=15,
                                   layers=2, hidden=250, env="mbrl/Cheetah-v0"),
    "halfcheetah_cem": dict(iters=5, initial=5000, batch=5000, train_steps=1500, evals=10, horizon=15,
                            layers=2, hidden=250, env="mbrl/Cheetah-v0"),
    "halfcheetah_0_iter": dict(iters=1, initial=20000, batch=None, train_steps=500, evals=0, horizon=None,
                               layers=1, hidden=32, env="mbrl/Cheetah-v0"),
}
EPISODE_LENGTH = {"mbrl/Obstacles-v0": 100, "mbrl/Reacher7DOF-v0": 200, "mbrl/Cheetah-v0": 500}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / "mpc" / f"{name}.yaml").read_text())


def callback(cfg: dict, name: str) -> dict | None:
    for cb in cfg["trainer"]["callbacks"]:
        if cb["class_path"].endswith(f".{name}"):
            return cb.get("init_args", {})
    return None


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_config_values_are_the_reference(name):
    ref, cfg = REFERENCE[name], load(name)
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert cfg["trainer"]["max_epochs"] == ref["iters"]
    assert callback(cfg, "CollectRandom")["num_steps"] == ref["initial"]
    on_policy = callback(cfg, "CollectOnPolicy")
    if ref["batch"] is None:
        assert on_policy is None
    else:
        assert on_policy["num_steps"] == ref["batch"]
        # whole episodes side by side, as the reference's sample_trajectories collects them
        assert on_policy["num_steps"] == on_policy["num_envs"] * EPISODE_LENGTH[ref["env"]]
    assert data["steps_per_epoch"] == ref["train_steps"]
    evaluate = callback(cfg, "Evaluate")
    assert (evaluate["num_episodes"] if evaluate else 0) == ref["evals"]
    assert data["env_id"] == ref["env"]
    assert (model["num_layers"], model["hidden_size"]) == (ref["layers"], ref["hidden"])
    # mpc_config defaults
    assert model["ensemble_size"] == 3 and model["lr"] == 1e-3 and data["batch_size"] == 512
    if ref["horizon"] is not None:
        planner = model["planner"]["init_args"]
        assert planner["horizon"] == ref["horizon"] and planner["num_sequences"] == 1000
    assert callback(cfg, "ModelCheckpoint")["save_last"] is True, "every run writes checkpoints/last.ckpt"


def test_cem_config_is_the_briefs_cem():
    """cem_num_iters 4, cem_num_elites 5, cem_alpha 1, and a uniform first population at every planning step."""
    planner = load("halfcheetah_cem")["model"]["init_args"]["planner"]
    assert planner["class_path"] == "mbrl_lightning.planning.CEM"
    args = planner["init_args"]
    assert (args["num_iterations"], args["num_elites"], args["alpha"], args["warm_start"]) == (4, 5, 1.0, False)
    for name in set(REFERENCE) - {"halfcheetah_cem", "halfcheetah_0_iter"}:
        assert load(name)["model"]["init_args"]["planner"]["class_path"] == "mbrl_lightning.planning.RandomShooting"


def test_problem_1_variants_differ_from_the_base_only_in_their_named_setting():
    base = load("halfcheetah_0_iter")
    for name, key, value in (("halfcheetah_0_iter_lr3e-3", "lr", 0.003),
                             ("halfcheetah_0_iter_wide", "hidden_size", 250)):
        variant = load(name)
        assert variant["model"]["init_args"][key] == value
        variant["model"]["init_args"][key] = base["model"]["init_args"][key]
        if name.endswith("wide"):
            assert variant["model"]["init_args"]["num_layers"] == 2
            variant["model"]["init_args"]["num_layers"] = base["model"]["init_args"]["num_layers"]
        variant["trainer"]["logger"]["init_args"]["name"] = base["trainer"]["logger"]["init_args"]["name"]
        assert variant == base


def _build(path: Path | str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """LightningCLI objects (trainer, model, DataModule) of a config, without a logger or a run."""
    from mbrl_lightning.cli import lightning_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mbrl_lightning"])  # LightningCLI warns when pytest's argv is also there
    return lightning_main(["--config", str(path), "--trainer.logger", "false"], run=False)


def test_every_config_parses_and_instantiates(tmp_path, monkeypatch):
    """Each YAML in configs/ builds its trainer, model and DataModule (a wrong key or type would fail here)."""
    paths = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(paths) >= 14
    for path in paths:
        cli = _build(path, monkeypatch, tmp_path)
        assert cli.model.hparams["obs_dim"] == cli.datamodule.obs_dim, path


def test_mbpo_paper_configs_keep_the_papers_ratios(tmp_path, monkeypatch):
    """MBPO's settings (Janner et al. 2019): 7 members / 5 elites, 5 % real data, 400 model rollouts per env step.
    Hopper as the authors' code runs it (jannerm/mbpo, examples/config/hopper/0.py): one env step then 20 SAC
    updates, the model trained every 250 env steps to early stopping and followed by a round of 100k rollouts,
    L 1 -> 15 over epochs 20 -> 150, target entropy -1, 1000 env steps per iteration, gymnasium's 11-number
    observation, a model pool of one iteration's rollouts."""
    from mbrl_lightning.callbacks import CollectInterleaved, CollectOnPolicy

    cli = _build(ROOT / "configs" / "mbpo" / "hopper.yaml", monkeypatch, tmp_path)
    m, dm = cli.model, cli.datamodule
    collect = next(c for c in cli.trainer.callbacks if isinstance(c, CollectInterleaved))
    assert not any(isinstance(c, CollectOnPolicy) for c in cli.trainer.callbacks)
    assert (collect.num_steps, collect.every_n_updates) == (1, 20)
    assert dm.steps_per_epoch == 20 * 1000
    assert m.model_train_freq == 250 and m.hparams.model_train_steps is None and m.hparams.model_patience == 10
    assert m.rollout_batch_size / m.model_train_freq == 400
    assert m.rollout_schedule == [20, 150, 1, 15] and cli.trainer.max_epochs == 125
    assert m.target_entropy == -1.0 and dm.obs_dim == 11 and m.obs_dim == 11
    assert m.dynamics.learn_reward and not m.dynamics.learn_termination
    assert m.model_retain_epochs == 1 and not m.checkpoint_model_buffer
    hopper = cli

    cli = _build(ROOT / "configs" / "mbpo" / "inverted_pendulum.yaml", monkeypatch, tmp_path)
    m, dm = cli.model, cli.datamodule
    collect = next(c for c in cli.trainer.callbacks if isinstance(c, CollectOnPolicy))
    assert collect.num_steps == 250 and dm.steps_per_epoch == 10 * 250
    assert m.rollout_batch_size * (dm.steps_per_epoch // m.rollout_every) / 250 == 400
    assert m.rollout_length == 1 and m.dynamics.learn_reward and m.dynamics.learn_termination
    for m, dm in ((cli.model, cli.datamodule), (hopper.model, hopper.datamodule)):
        assert (m.dynamics.ensemble_size, m.num_elites, m.real_ratio) == (7, 5, 0.05)
        assert m.dynamics.layer_decays == [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4] and dm.val_fraction > 0


@pytest.mark.parametrize("sac,partner", [("mbpo/hopper_sac", "mbpo/hopper"),
                                         ("mbpo/inverted_pendulum_sac", "mbpo/inverted_pendulum"),
                                         ("mbpo/reacher_sac", "pets/reacher")])
def test_sac_references_match_their_model_based_runs_env_steps(sac, partner, tmp_path, monkeypatch):
    """A model-free reference is plain SAC (no model rollouts, one update per env step) on its partner's task and
    observation (env_kwargs) with the partner's random warm-up, env steps per iteration, iterations and
    evaluation: curves compare at equal data."""
    from mbrl_lightning.callbacks import CollectInterleaved, CollectOnPolicy, CollectRandom, Evaluate

    clis = [_build(ROOT / "configs" / f"{name}.yaml", monkeypatch, tmp_path) for name in (sac, partner)]

    def schedule(cli):
        find = {kind: next((c for c in cli.trainer.callbacks if isinstance(c, kind)), None)
                for kind in (CollectRandom, CollectOnPolicy, CollectInterleaved, Evaluate)}
        random, on_policy, evaluate = find[CollectRandom], find[CollectOnPolicy], find[Evaluate]
        if on_policy is not None:
            env_steps = on_policy.num_steps
        else:  # interleaved: num_steps before every k-th of the iteration's updates
            interleaved = find[CollectInterleaved]
            env_steps = cli.datamodule.steps_per_epoch // interleaved.every_n_updates * interleaved.num_steps
        return (cli.datamodule.env_id, cli.datamodule.env_kwargs, cli.trainer.max_epochs, random.num_steps,
                env_steps, evaluate.num_episodes, evaluate.every_n_iters, evaluate.seed, evaluate.num_envs)

    assert schedule(clis[0]) == schedule(clis[1])
    ref = clis[0]
    assert ref.model.rollout_length == 0 and ref.model.rollout_schedule is None
    assert ref.datamodule.steps_per_epoch == schedule(ref)[4]  # one SAC update per env step (the num_steps)
