r"""Numerical check of the simulation lemma and the alternative simulation lemma (Problem 2.1).

With Q^pi = r + gamma P V^pi, V^pi = Pi Q^pi and P^pi = P Pi (see :mod:`.tabular` for the shapes):

* Simulation lemma (lecture):   Q^pi - Q_hat^pi = gamma (I - gamma P_hat^pi)^{-1} (P - P_hat) V^pi.
* Alternative simulation lemma: Q^pi - Q_hat^pi = gamma (I - gamma P^pi)^{-1} (P - P_hat) V_hat^pi.

Proof of the alternative lemma (add and subtract gamma P V_hat^pi):

    Q^pi - Q_hat^pi = gamma P V^pi - gamma P_hat V_hat^pi
                    = gamma P (V^pi - V_hat^pi) + gamma (P - P_hat) V_hat^pi
                    = gamma P^pi (Q^pi - Q_hat^pi) + gamma (P - P_hat) V_hat^pi,

using V^pi - V_hat^pi = Pi (Q^pi - Q_hat^pi).  Hence (I - gamma P^pi)(Q^pi - Q_hat^pi) =
gamma (P - P_hat) V_hat^pi, and I - gamma P^pi is invertible because P^pi is row-stochastic and gamma < 1
(its Neumann series sum_t (gamma P^pi)^t converges).  The lecture's lemma is the same argument with the
roles of (P, V^pi) and (P_hat, V_hat^pi) swapped.

Both identities are exact, so the residuals returned here should be at round-off level (~1e-13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mbrl_lightning.theory.tabular import (
    TabularMDP,
    deterministic_policy,
    estimate_transitions,
    evaluate_policy_state_action,
    random_mdp,
    random_policy,
    state_action_transition,
    transition_matrix,
)

__all__ = ["LemmaResiduals", "lemma_residuals", "check_simulation_lemmas"]


@dataclass(frozen=True)
class LemmaResiduals:
    """Max-abs residuals of both lemmas, plus ||Q^pi - Q_hat^pi||_inf to show the check is not vacuous."""

    simulation: float
    alternative: float
    q_gap: float
    num_cases: int


def lemma_residuals(mdp: TabularMDP, P_hat: np.ndarray, pi: np.ndarray) -> tuple[float, float, float]:
    """(simulation-lemma residual, alternative-lemma residual, ||Q - Q_hat||_inf) for one (M, M_hat, pi)."""
    S, A = mdp.r.shape
    gamma = mdp.gamma
    Q = evaluate_policy_state_action(mdp.P, mdp.r, gamma, pi).reshape(S * A)
    Q_hat = evaluate_policy_state_action(P_hat, mdp.r, gamma, pi).reshape(S * A)
    V = (Q.reshape(S, A) * pi).sum(axis=-1)
    V_hat = (Q_hat.reshape(S, A) * pi).sum(axis=-1)
    dP = transition_matrix(mdp.P) - transition_matrix(P_hat)
    eye = np.eye(S * A)
    sim = gamma * np.linalg.solve(eye - gamma * state_action_transition(P_hat, pi), dP @ V)
    alt = gamma * np.linalg.solve(eye - gamma * state_action_transition(mdp.P, pi), dP @ V_hat)
    diff = Q - Q_hat
    return (
        float(np.max(np.abs(diff - sim))),
        float(np.max(np.abs(diff - alt))),
        float(np.max(np.abs(diff))),
    )


def check_simulation_lemmas(
    rng: np.random.Generator,
    num_mdps: int = 5,
    num_states: int = 6,
    num_actions: int = 3,
    gamma: float = 0.9,
    n_samples: tuple[int, ...] = (1, 5, 50),
) -> LemmaResiduals:
    """Worst residuals over random MDPs x sample sizes x (stochastic, deterministic) random policies.

    Small N (down to one sample per pair) gives P_hat far from P with many zero entries, which is the
    hardest case for the identities.
    """
    worst_sim = worst_alt = worst_gap = 0.0
    cases = 0
    for _ in range(num_mdps):
        mdp = random_mdp(num_states, num_actions, gamma, rng)
        policies = [
            random_policy(num_states, num_actions, rng),
            deterministic_policy(rng.integers(num_actions, size=num_states), num_actions),
        ]
        for n in n_samples:
            P_hat = estimate_transitions(mdp.P, n, rng)
            for pi in policies:
                sim, alt, gap = lemma_residuals(mdp, P_hat, pi)
                worst_sim, worst_alt = max(worst_sim, sim), max(worst_alt, alt)
                worst_gap = max(worst_gap, gap)
                cases += 1
    return LemmaResiduals(simulation=worst_sim, alternative=worst_alt, q_gap=worst_gap, num_cases=cases)
