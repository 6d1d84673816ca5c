"""The folded planning step: same predictions and plans as ``predict_next``; ``bf16: auto`` picks by the hardware."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.envs import Task, get_task
from mbrl_lightning.models import DynamicsEnsemble
from mbrl_lightning.models.folded import FoldedStep
from mbrl_lightning.planning import CEM, MPCPolicy, RandomShooting, evaluate_sequences
from mbrl_lightning.precision import cpu_has_bf16, device_has_bf16

ROOT = Path(__file__).resolve().parents[1]
CHEETAH = get_task("mbrl/Cheetah-v0")
OBS, ACT = 21, 6


def fitted(model, seed=0, constant_dim=None):
    """Normalisers fitted to scaled, shifted random data; ``constant_dim`` is constant (std at the floor)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(400, model.obs_dim, generator=g) * 3 + torch.linspace(-5, 5, model.obs_dim)
    next_obs = obs + 0.2 * torch.randn(400, model.obs_dim, generator=g) + 0.5
    if constant_dim is not None:
        obs[:, constant_dim] = next_obs[:, constant_dim] = 0.7
    model.fit_normalizers({"obs": obs, "act": torch.rand(400, model.act_dim, generator=g) * 2 - 1,
                           "next_obs": next_obs})
    return model.eval()


@pytest.mark.parametrize("loss,num_layers,activation", [("mse", 2, "relu"), ("nll", 2, "tanh"), ("mse", 0, "relu"),
                                                        ("mse", 1, "gelu")])
def test_folded_step_matches_predict_next(loss, num_layers, activation):
    torch.manual_seed(0)
    model = fitted(DynamicsEnsemble(5, 3, ensemble_size=3, hidden_size=32, num_layers=num_layers,
                                    activation=activation, loss=loss), constant_dim=2)
    step = model.folded_step()
    assert isinstance(step, FoldedStep)
    g = torch.Generator().manual_seed(1)
    for n in (7, 19, 7):  # row counts that grow and shrink reuse the scratch memory
        obs = torch.randn(3, n, 5, generator=g) * 3
        obs[..., 2] = 0.7  # the constant input sits at its mean: folding the centring would cancel ~1e6 terms
        act = torch.rand(3, n, 3, generator=g) * 2 - 1
        torch.testing.assert_close(step(obs, act), model.predict_next(obs, act), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step(obs[0], act[0]), model.predict_next(obs[0], act[0]), rtol=1e-5, atol=1e-5)
    # a rollout: each call's input is the previous call's output. On a model with no constant input: there the
    # predicted constant drifts by delta * std_floor, which normalising scales back to O(1), so one float32 ulp
    # of rounding difference in a step becomes O(1) in the next input (both paths alike: 5e-3 apart after 4
    # steps on an AMD EPYC), an ill-conditioned comparison rather than a fold error
    model = fitted(DynamicsEnsemble(5, 3, ensemble_size=3, hidden_size=32, num_layers=num_layers,
                                    activation=activation, loss=loss))
    step = model.folded_step()
    for n in (7, 19, 7):
        obs = torch.randn(3, n, 5, generator=g) * 3
        act = torch.rand(3, n, 3, generator=g) * 2 - 1
        state, want = obs, obs
        for t in range(4):
            state, prev = step(state, act), state
            want = model.predict_next(want, act)
            torch.testing.assert_close(state, want, rtol=1e-4, atol=1e-4)
            if t:
                assert state.data_ptr() != prev.data_ptr()  # the input was not overwritten by the output


def test_folded_step_is_a_snapshot_rebuilt_by_each_policy():
    torch.manual_seed(0)
    agent = fitted(MPCAgent(OBS, ACT, planner=RandomShooting(3, 20), ensemble_size=2, hidden_size=16))
    old = agent.mpc_policy(CHEETAH, -torch.ones(ACT), torch.ones(ACT), 1)
    with torch.no_grad():
        agent.net[0].weight.mul_(2.0)  # "training" between collection phases
    new = agent.mpc_policy(CHEETAH, -torch.ones(ACT), torch.ones(ACT), 1)
    obs, act = torch.randn(2, 4, OBS), torch.rand(2, 4, ACT)
    torch.testing.assert_close(new.step(obs, act), agent.predict_next(obs, act), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(old.step(obs, act), agent.predict_next(obs, act), atol=1e-3)


def test_sampled_propagation_and_learned_heads_keep_predict():
    """PETS' sampled particles and a learned reward need the unfolded ``predict`` (the fold keeps the mean only)."""
    agent = MPCAgent(OBS, ACT, loss="nll", propagation="ts_inf", ensemble_size=2, hidden_size=16)
    assert not isinstance(agent.planning_step(), FoldedStep)
    learned = MPCAgent(OBS, ACT, ensemble_size=2, hidden_size=16, learn_reward=True)
    assert not isinstance(learned.planning_step(), FoldedStep)
    assert isinstance(MPCAgent(OBS, ACT, ensemble_size=2, hidden_size=16).planning_step(), FoldedStep)
    # a deterministic model under TS-inf steps its mean: the folded step serves it
    assert isinstance(MPCAgent(OBS, ACT, propagation="ts_inf", ensemble_size=2, hidden_size=16).planning_step(),
                      FoldedStep)


def plans(step, planner, agent, seed=3):
    """The plans of two successive MPC steps (a cold start, then a warm one) for two envs."""
    policy = MPCPolicy(step, agent.ensemble_size, CHEETAH, planner, -torch.ones(ACT), torch.ones(ACT), max_envs=2,
                       seed=seed, chunk_size=96)
    obs = torch.randn(2, OBS, generator=torch.Generator().manual_seed(5)) * 2
    out = []
    for _ in range(2):
        policy.act(obs, torch.arange(2))
        out.append(policy.plans.clone())
    return torch.stack(out)


def test_planner_picks_the_same_plan_after_folding():
    torch.manual_seed(0)
    agent = fitted(MPCAgent(OBS, ACT, ensemble_size=3, hidden_size=32), seed=4)
    rs = RandomShooting(horizon=5, num_sequences=200)
    # the scores themselves: same candidates, same returns, hence the same argmax
    actions = torch.rand(2, 200, 5, ACT, generator=torch.Generator().manual_seed(2)) * 2 - 1
    obs = torch.randn(2, OBS, generator=torch.Generator().manual_seed(5)) * 2
    before = evaluate_sequences(agent.predict_next, CHEETAH, obs, actions, 3, chunk_size=96)
    for chunk in (96, None):  # None: all rows at once, a GPU's default
        after = evaluate_sequences(agent.folded_step(), CHEETAH, obs, actions, 3, chunk_size=chunk)
        torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-4)
        assert torch.equal(after.argmax(1), before.argmax(1))
    assert torch.equal(plans(agent.folded_step(), rs, agent), plans(agent.predict_next, rs, agent))
    cem = CEM(horizon=5, num_sequences=200, num_iterations=3, num_elites=10)
    torch.testing.assert_close(plans(agent.folded_step(), cem, agent), plans(agent.predict_next, cem, agent),
                               rtol=1e-4, atol=1e-4)


def test_rollout_without_termination_sums_like_the_masked_one():
    torch.manual_seed(0)
    step = fitted(DynamicsEnsemble(OBS, ACT, ensemble_size=2, hidden_size=16)).folded_step()
    masked = Task(reward=CHEETAH.reward, terminated=lambda o, a, n: torch.zeros(n.shape[:-1], dtype=torch.bool))
    obs, actions = torch.randn(3, OBS), torch.rand(3, 40, 5, ACT) * 2 - 1
    for discount in (1.0, 0.9):
        torch.testing.assert_close(evaluate_sequences(step, CHEETAH, obs, actions, 2, discount, chunk_size=32),
                                   evaluate_sequences(step, masked, obs, actions, 2, discount, chunk_size=32))


def test_folded_step_under_autocast_runs_bf16_matmuls_with_float32_states():
    torch.manual_seed(0)
    model = fitted(DynamicsEnsemble(OBS, ACT, ensemble_size=2, hidden_size=64))
    step = model.folded_step()
    obs, act = torch.randn(2, 50, OBS) * 3, torch.rand(2, 50, ACT)
    fp32 = step(obs, act).clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = step(obs, act)
        reference = model.predict_next(obs, act)  # predict_next's own bfloat16 path
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, fp32)
    # as close to float32 as predict_next under autocast is: both round only the matmuls to bfloat16
    assert (bf16 - fp32).abs().max() <= 3 * (reference - fp32).abs().max()


@pytest.mark.parametrize("num_layers,activation", [(2, "relu"), (2, "tanh"), (1, "gelu"), (0, "relu")])
def test_bf16_folded_step_matches_float32_to_bf16_tolerance(num_layers, activation):
    """The bfloat16 step (weights cast once per snapshot, hidden activations in bfloat16 buffers, a ReLU on the
    bits) predicts the float32 step's delta to a few bfloat16 roundings, in float32 states, inputs untouched."""
    torch.manual_seed(0)
    model = fitted(DynamicsEnsemble(OBS, ACT, ensemble_size=3, hidden_size=64, num_layers=num_layers,
                                    activation=activation))
    step = model.folded_step()
    g = torch.Generator().manual_seed(1)
    for n in (100, 37):  # a smaller row count views the front of the same buffers
        obs, act = torch.randn(3, n, OBS, generator=g) * 3, torch.rand(n, ACT, generator=g) * 2 - 1
        obs_before = obs.clone()
        fp32 = step(obs, act).clone()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = step(obs, act)
            assert step.weights(torch.bfloat16) is step.weights(torch.bfloat16)  # cast once, then cached
        assert bf16.dtype == torch.float32 and torch.equal(obs, obs_before)
        assert all(w.dtype == torch.bfloat16 for w in step.weights(torch.bfloat16))
        delta = fp32 - obs
        # bfloat16 keeps 8 significant bits (eps 2^-8): within 2^-7 of the largest delta; seen: 1e-3 to 2.4e-3
        torch.testing.assert_close(bf16 - obs, delta, rtol=0.0, atol=2**-7 * float(delta.abs().max()))
        assert not torch.equal(bf16, fp32)  # the matmuls did run in bfloat16


def test_relu_on_the_bits_is_relu():
    from mbrl_lightning.models.folded import _relu_bits_

    for dtype in (torch.bfloat16, torch.float16):
        x = torch.cat([torch.randn(1000) * 10, torch.tensor([0.0, -0.0, 1e-30, -1e-30, float("inf"),
                                                               float("-inf")])]).to(dtype)
        want = torch.relu(x.float())
        got = _relu_bits_(x)
        assert got.data_ptr() == x.data_ptr() and got.dtype == dtype
        assert torch.equal(got.float(), want)
        assert not torch.signbit(got).any()  # -0.0 became +0.0


def test_bf16_planning_picks_a_plan_whose_return_is_close_to_float32s():
    """Behaviour, not timing: on a fixed model and seed, random shooting in bfloat16 ranks the same candidates
    (same stream) by bfloat16 returns; the plan it picks scores, by the float32 rollout, within a small part of
    the candidates' spread of float32's pick. CEM's plan (its own populations) scores close to float32's too."""
    torch.manual_seed(0)
    agents = {bf16: fitted(MPCAgent(OBS, ACT, planner=RandomShooting(horizon=8, num_sequences=400), ensemble_size=3,
                                    hidden_size=64, bf16=bf16), seed=4) for bf16 in (False, True)}
    agents[True].load_state_dict(agents[False].state_dict())
    obs = torch.randn(3, OBS, generator=torch.Generator().manual_seed(5)) * 2
    low, high = -torch.ones(ACT), torch.ones(ACT)
    step = agents[False].folded_step()

    def score(plans):  # float32 return of each env's plan, (P,)
        return evaluate_sequences(step, CHEETAH, obs, plans.unsqueeze(1), 3).squeeze(1)

    for planner in (RandomShooting(horizon=8, num_sequences=400), CEM(horizon=8, num_sequences=400,
                                                                      num_iterations=3, num_elites=20)):
        plans = {}
        for bf16, agent in agents.items():
            agent.planner = planner
            policy = agent.mpc_policy(CHEETAH, low, high, max_envs=3, seed=7)
            assert policy.bf16 is bf16
            policy.act(obs, torch.arange(3))
            plans[bf16] = policy.plans.clone()
        # the spread of float32 returns over uniform random candidates: the scale of "close"
        candidates = torch.rand(3, 400, 8, ACT, generator=torch.Generator().manual_seed(9)) * 2 - 1
        returns = evaluate_sequences(step, CHEETAH, obs, candidates, 3)
        spread = returns.max(1).values - returns.median(1).values
        gap = score(plans[False]) - score(plans[True])
        assert (gap.abs() <= 0.1 * spread).all(), (gap, spread)


def test_cpu_bf16_detection_agrees_with_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = cpuinfo.read_text()
    assert cpu_has_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert device_has_bf16(torch.device("cpu")) == cpu_has_bf16()


def test_bf16_setting_is_checked():
    assert MPCAgent(OBS, ACT, bf16=True).planning_bf16() is True
    assert MPCAgent(OBS, ACT, bf16=False).planning_bf16() is False
    assert MPCAgent(OBS, ACT).planning_bf16() is cpu_has_bf16()  # the default is auto: bf16 where it is native
    with pytest.raises(ValueError, match="bf16"):
        MPCAgent(OBS, ACT, bf16="yes")


def test_bf16_auto_from_the_command_line_prints_its_choice_once(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mbrl_lightning", "fit", "--config",
                           str(ROOT / "configs" / "tiny" / "obstacles.yaml"), "--model.init_args.bf16", "auto"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = "bfloat16" if cpu_has_bf16() else "float32"
    assert proc.stdout.count("bf16: auto -> planning in") == 1, proc.stdout
    assert f"bf16: auto -> planning in {want} on cpu" in proc.stdout
