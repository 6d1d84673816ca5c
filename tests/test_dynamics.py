"""The ensemble dynamics model: batched layers, normalisation, fitting a known system, member independence."""

import pytest
import pytorch_lightning as pl
import torch

from mbrl_lightning.data import ReplayDataModule
from mbrl_lightning.models import DynamicsEnsemble, EnsembleLinear, Normalizer


def linear_system(n, seed, obs_dim=4, act_dim=2):
    """s' = s + A s + B a with fixed A, B; goal-like constant last dimension."""
    g = torch.Generator().manual_seed(seed)
    A = torch.tensor([[0.0, 0.1, 0.0, 0.0], [-0.1, 0.0, 0.0, 0.0], [0.0, 0.0, -0.05, 0.0], [0.0, 0.0, 0.0, 0.0]])
    B = torch.tensor([[0.1, 0.0], [0.0, 0.1], [0.05, -0.05], [0.0, 0.0]])
    obs = torch.rand(n, obs_dim, generator=g) * 2 - 1
    obs[:, 3] = 0.7  # constant, like the obstacles env's goal coordinates
    act = torch.rand(n, act_dim, generator=g) * 2 - 1
    next_obs = obs + obs @ A.T + act @ B.T
    return {"obs": obs, "act": act, "next_obs": next_obs, "reward": torch.zeros(n),
            "terminated": torch.zeros(n, dtype=torch.bool)}


def test_ensemble_linear_matches_per_member_linear():
    layer = EnsembleLinear(3, 5, 4)
    x = torch.randn(3, 7, 5)
    y = layer(x)
    for e in range(3):
        assert torch.allclose(y[e], x[e] @ layer.weight[e] + layer.bias[e], atol=1e-6)


def test_normalizer_round_trip_and_constant_dims():
    norm = Normalizer(3)
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([5.0, 0.01, 0.0]) \
        + torch.tensor([1.0, -2.0, 0.7])
    norm.fit(x)
    z = norm.normalize(x)
    assert torch.isfinite(z).all()
    # float32 rounding of a mean of -2 at a std of 0.01 is ~2e-5 in normalised units
    assert torch.allclose(z[:, :2].mean(0), torch.zeros(2), atol=1e-4)
    assert torch.allclose(z[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-4)
    assert torch.allclose(norm.unnormalize(z), x, atol=1e-5)


def fit(model, dm, tmp_path, max_epochs=1):
    trainer = pl.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    return trainer


def test_fits_linear_system_to_small_held_out_error(tmp_path):
    pl.seed_everything(0)
    dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=128, steps_per_epoch=400, capacity=5000)
    dm.add(linear_system(4000, seed=1))
    model = DynamicsEnsemble(dm.obs_dim, dm.act_dim, ensemble_size=3, hidden_size=64, num_layers=2, lr=3e-3)
    fit(model, dm, tmp_path)
    test = linear_system(1000, seed=2)  # held out: never in the buffer
    with torch.no_grad():
        pred = model.predict_next(test["obs"], test["act"])  # (E, N, obs_dim), original units
    delta = test["next_obs"] - test["obs"]
    err = (pred - test["next_obs"]).pow(2).mean(dim=(1, 2))
    baseline = delta.pow(2).mean()  # predicting "no change"
    assert pred.shape == (3, 1000, 4)
    assert (err < 0.01 * baseline).all(), (err, baseline)
    assert torch.allclose(pred[..., 3], torch.full_like(pred[..., 3], 0.7), atol=1e-4)  # constant stays put


def test_members_get_independent_batches_and_end_different(tmp_path):
    pl.seed_everything(0)
    dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=32, steps_per_epoch=5, capacity=1000)
    dm.add(linear_system(500, seed=3))
    model = DynamicsEnsemble(dm.obs_dim, dm.act_dim, ensemble_size=4, hidden_size=16, num_layers=1)
    trainer = fit(model, dm, tmp_path)
    batch = next(iter(trainer.train_dataloader))
    assert batch["obs"].shape == (4, 32, 4)
    rows = [set(map(tuple, batch["obs"][e].tolist())) for e in range(4)]
    assert all(len(rows[i] & rows[j]) < 16 for i in range(4) for j in range(i + 1, 4))
    w = model.net[0].weight
    assert all(not torch.allclose(w[i], w[j]) for i in range(4) for j in range(i + 1, 4))


def test_gaussian_nll_learns_bounded_variance(tmp_path):
    pl.seed_everything(0)
    dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=128, steps_per_epoch=300, capacity=5000)
    data = linear_system(4000, seed=4)
    noise = torch.randn(4000, 4, generator=torch.Generator().manual_seed(5)) * 0.02
    noise[:, 3] = 0
    data["next_obs"] = data["next_obs"] + noise
    dm.add(data)
    model = DynamicsEnsemble(dm.obs_dim, dm.act_dim, ensemble_size=2, hidden_size=64, loss="nll", lr=3e-3)
    fit(model, dm, tmp_path)
    test = linear_system(500, seed=6)
    with torch.no_grad():
        mean, logvar = model(test["obs"].expand(2, -1, -1), test["act"].expand(2, -1, -1))
    assert (logvar <= model.max_logvar + 1e-6).all() and (logvar >= model.min_logvar - 1e-6).all()
    # the learned std of the noisy dims, in original units, is near the true 0.02
    std = (0.5 * logvar[..., :3]).exp() * model.delta_norm.std[:3]
    assert 0.01 < std.mean() < 0.04, std.mean()


def test_train_bf16_fits_as_well_as_float32_and_predicts_in_float32(tmp_path):
    """``train_bf16``: gradient steps run the net's matmuls in bfloat16 (``training_precision()``), weights,
    prediction and evaluation stay float32; the fitted model's held-out error is close to float32's."""
    errors = {}
    for bf16 in (False, True):
        pl.seed_everything(0)
        dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=128, steps_per_epoch=300, capacity=5000)
        dm.add(linear_system(4000, seed=1))
        model = DynamicsEnsemble(dm.obs_dim, dm.act_dim, ensemble_size=2, hidden_size=32, num_layers=2, lr=3e-3,
                                 train_bf16=bf16)
        assert model.training_bf16() is bf16
        fit(model, dm, tmp_path)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        test = linear_system(1000, seed=2)
        batch = {k: v.expand(2, *v.shape) for k, v in test.items()}
        model.train()  # a fresh model is in training mode with gradients on: only training_precision() rounds
        plain = model.heads(batch["obs"], batch["act"])[0]
        with model.training_precision():
            step = model.heads(batch["obs"], batch["act"])[0]
        with torch.no_grad():
            pred = model.predict_next(test["obs"], test["act"])
        assert plain.dtype == step.dtype == pred.dtype == torch.float32
        gap = (step - plain).detach().abs().max()
        if bf16:  # bfloat16 keeps 8 bits of mantissa: the training pass is rounded, the others are not
            assert 0 < gap < 0.1, gap
        else:
            assert gap == 0
        errors[bf16] = (pred - test["next_obs"]).pow(2).mean().item()
    baseline = (test["next_obs"] - test["obs"]).pow(2).mean().item()
    assert errors[False] < 0.01 * baseline, (errors, baseline)
    assert errors[True] < 2 * errors[False], errors


def test_train_bf16_auto_follows_the_device_and_bad_values_fail(monkeypatch):
    import mbrl_lightning.precision as precision
    from mbrl_lightning.agents import MPCAgent

    for native in (True, False):
        monkeypatch.setattr(precision, "device_has_bf16", lambda device, native=native: native)
        assert DynamicsEnsemble(4, 2, train_bf16="auto").training_bf16() is native
    assert DynamicsEnsemble(4, 2).training_bf16() is False  # float32 unless asked: the brief's runs are unchanged
    assert MPCAgent(4, 2, train_bf16=True).training_bf16() is True
    with pytest.raises(ValueError, match="train_bf16"):
        DynamicsEnsemble(4, 2, train_bf16="yes")
    monkeypatch.setattr(precision, "cpu_lacks_bf16", lambda: True)
    with pytest.warns(UserWarning, match="emulated"):
        DynamicsEnsemble(4, 2, train_bf16=True).training_precision()


def test_silu_runs_out_of_place_in_training_with_the_same_numbers():
    """Training runs SiLU out of place (a faster backward), prediction in place: the same values and gradients."""
    model = DynamicsEnsemble(4, 2, ensemble_size=3, hidden_size=16, num_layers=2, activation="silu")
    x = torch.randn(3, 10, 6)
    with torch.no_grad():
        in_place = model.net(x)
    model.net.zero_grad()
    out_of_place = model.net(x)  # weights require grad: the recorded, out-of-place path
    assert out_of_place.requires_grad and torch.equal(out_of_place.detach(), in_place)
    out_of_place.square().sum().backward()
    grads = [p.grad.clone() for p in model.net.parameters()]
    model.net.zero_grad()
    y = x
    for layer in model.net:  # in place, by hand: the gradients must be the same
        y = layer(y) if isinstance(layer, EnsembleLinear) else layer(y.clone())
    y.square().sum().backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.net.parameters(), strict=True))
