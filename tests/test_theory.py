"""Tests for the analysis section (``mbrl_lightning.theory``): simulation lemmas and Problem 2.2 coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mbrl_lightning.theory.cli import PLOT_NAME, main
from mbrl_lightning.theory.concentration import (
    ConcentrationResult,
    coverage_slack,
    default_setup,
    hoeffding_bound,
    l1_bound,
    run_concentration,
    statement_bound,
)
from mbrl_lightning.theory.simulation_lemma import check_simulation_lemmas, lemma_residuals
from mbrl_lightning.theory.tabular import (
    bellman_q,
    deterministic_policy,
    estimate_model,
    estimate_transitions,
    evaluate_policy,
    evaluate_policy_state_action,
    optimal_values,
    policy_iteration,
    random_mdp,
    random_policy,
    value_iteration,
)

DELTA = 0.1


# --------------------------------------------------------------------------- tabular utilities


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_policy_evaluation_routes_agree_and_solve_bellman(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mdp = random_mdp(7, 3, 0.95, rng)
    pi = random_policy(7, 3, rng)
    Q, V = evaluate_policy(mdp.P, mdp.r, mdp.gamma, pi)
    Q_sa = evaluate_policy_state_action(mdp.P, mdp.r, mdp.gamma, pi)
    np.testing.assert_allclose(Q, Q_sa, atol=1e-10)
    np.testing.assert_allclose(V, (Q * pi).sum(-1), atol=1e-10)
    np.testing.assert_allclose(Q, bellman_q(mdp.P, mdp.r, mdp.gamma, V), atol=1e-10)
    assert V.min() >= 0.0 and V.max() <= mdp.v_max + 1e-12


@pytest.mark.parametrize("seed", [0, 1])
def test_policy_iteration_matches_value_iteration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mdp = random_mdp(9, 4, 0.9, rng)
    Q_pi, V_pi = optimal_values(mdp)
    Q_vi, V_vi = value_iteration(mdp.P, mdp.r, mdp.gamma, tol=1e-11)
    np.testing.assert_allclose(V_pi, V_vi, atol=1e-9)
    np.testing.assert_allclose(Q_pi, Q_vi, atol=1e-9)
    # Bellman optimality and: no random policy beats V*.
    np.testing.assert_allclose(V_pi, bellman_q(mdp.P, mdp.r, mdp.gamma, V_pi).max(-1), atol=1e-10)
    for _ in range(5):
        _, V = evaluate_policy(mdp.P, mdp.r, mdp.gamma, random_policy(9, 4, rng))
        assert np.all(V <= V_pi + 1e-10)


def test_batched_policy_iteration_matches_per_model() -> None:
    rng = np.random.default_rng(3)
    mdp = random_mdp(6, 3, 0.9, rng)
    P_hat = estimate_transitions(mdp.P, 20, rng, draws=8)
    _, V_batch, _ = policy_iteration(P_hat, mdp.r, mdp.gamma)
    for d in range(8):
        _, V_single = optimal_values(mdp.with_transitions(P_hat[d]))
        np.testing.assert_allclose(V_batch[d], V_single, atol=1e-10)


def test_count_model_rows_sum_to_one_and_converge() -> None:
    rng = np.random.default_rng(4)
    mdp = random_mdp(8, 3, 0.9, rng)
    errors = []
    for n in (10, 100, 1_000, 10_000, 100_000):
        m_hat = estimate_model(mdp, n, rng)
        np.testing.assert_allclose(m_hat.P.sum(-1), 1.0, atol=1e-12)
        assert m_hat.P.min() >= 0.0
        # Every entry is an integer count divided by N.
        np.testing.assert_allclose(m_hat.P * n, np.round(m_hat.P * n), atol=1e-8)
        errors.append(np.abs(m_hat.P - mdp.P).sum(-1).max())
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.05


# --------------------------------------------------------------------------- Problem 2.1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_simulation_and_alternative_lemma(seed: int) -> None:
    rng = np.random.default_rng(seed)
    S, A = 5 + seed, 2 + seed % 3
    mdp = random_mdp(S, A, 0.8 + 0.05 * seed, rng)
    policies = [
        random_policy(S, A, rng),
        deterministic_policy(rng.integers(A, size=S), A),
        deterministic_policy(np.zeros(S, dtype=int), A),
    ]
    for n in (1, 3, 30):
        P_hat = estimate_transitions(mdp.P, n, rng)
        for pi in policies:
            sim, alt, gap = lemma_residuals(mdp, P_hat, pi)
            assert sim < 1e-8 and alt < 1e-8, (sim, alt)
            if n == 1:
                assert gap > 1e-3  # the identities are checked on a genuinely different model


def test_check_simulation_lemmas_summary() -> None:
    res = check_simulation_lemmas(np.random.default_rng(7))
    assert res.num_cases == 30
    assert res.simulation < 1e-8 and res.alternative < 1e-8
    assert res.q_gap > 0.1


# --------------------------------------------------------------------------- Problem 2.2


def test_bound_formulas() -> None:
    S, A, g, n = 10, 3, 0.9, 50
    L = np.log(2 * S * A / DELTA)
    assert l1_bound(S, A, g, DELTA, n) == pytest.approx(np.sqrt(2 * S * L / n) / (1 - g))
    assert statement_bound(S, A, g, DELTA, n) == pytest.approx(np.sqrt(2 * L / n) / (1 - g))
    assert statement_bound(S, A, g, DELTA, n) == pytest.approx(2 * hoeffding_bound(S, A, g, DELTA, n))


def test_fixed_vector_hoeffding_coverage_is_computed() -> None:
    """Statement-2/3 style bounds for a FIXED, data-independent vector hold at >= 1 - delta in simulation."""
    S, A, draws = 12, 3, 1000
    mdp, _, rng = default_setup(S, A, 0.9, seed=11)
    v_fixed = mdp.v_max * (rng.uniform(size=S) < 0.5)  # chosen before any sample; range [0, v_max]
    slack = coverage_slack(DELTA, draws)
    for n in (20, 200):
        P_hat = estimate_transitions(mdp.P, n, rng, draws=draws)
        dev = np.abs((mdp.P[None] - P_hat) @ v_fixed).max(axis=(1, 2))
        cov_tight = np.mean(dev <= hoeffding_bound(S, A, mdp.gamma, DELTA, n))
        cov_stmt2 = np.mean(dev <= l1_bound(S, A, mdp.gamma, DELTA, n))
        # Not vacuous: the deviations are a sizeable fraction of the tight radius.
        assert np.quantile(dev, 0.9) > 0.3 * hoeffding_bound(S, A, mdp.gamma, DELTA, n)
        assert cov_tight >= 1.0 - DELTA - slack, cov_tight
        assert cov_stmt2 >= 1.0 - DELTA - slack, cov_stmt2


@pytest.fixture(scope="module")
def coverage() -> ConcentrationResult:
    mdp, pi, rng = default_setup(32, 3, 0.9, seed=0)
    return run_concentration(mdp, pi, DELTA, draws=600, rng=rng, n_values=(30, 300))


def test_coverage_result_shapes(coverage: ConcentrationResult) -> None:
    for key, cov in coverage.coverage.items():
        assert cov.shape == (2,), key
        assert np.all((cov >= 0.0) & (cov <= 1.0))
    # Coverage is an empirical frequency over 600 draws, not a hard-coded 1.
    assert np.allclose(coverage.coverage["F01-H"] * 600, np.round(coverage.coverage["F01-H"] * 600))
    assert coverage.median_ratio["F01-H"].min() > 0.1


def test_statements_1_and_3_hold(coverage: ConcentrationResult) -> None:
    assert coverage.holds("S1")
    assert coverage.holds("S3")
    assert coverage.holds("F-H") and coverage.holds("F01-H")  # Hoeffding's own radius, fixed vectors


def test_adversarial_data_dependent_vector_breaks_hoeffding(coverage: ConcentrationResult) -> None:
    """Picking V from the data (worst TV row indicator) violates the fixed-vector Hoeffding radius far
    more often than delta, while the |S|-factor L1 bound of statement 1 still covers it."""
    violation = 1.0 - coverage.coverage["A-H"]
    assert np.all(violation > 5 * DELTA), violation
    fixed_violation = 1.0 - coverage.coverage["F01-H"]
    assert np.all(violation > fixed_violation + 0.3)
    assert coverage.holds("A-BS")


def test_cli_writes_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--states", "6", "--actions", "2", "--draws", "50", "--n", "10", "100", "--out", str(tmp_path)]
    rc = main(argv)
    assert rc == 0
    out = capsys.readouterr().out
    assert "alternative simulation lemma" in out
    assert "verdict" in out and "statement 3: CORRECT" in out and "statement 4: INCORRECT" in out
    png = tmp_path / PLOT_NAME
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
