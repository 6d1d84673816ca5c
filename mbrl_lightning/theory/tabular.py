"""Tabular MDP utilities for the analysis part of the brief (Problems 2.1 and 2.2).

Conventions
-----------
* ``P`` has shape ``(..., S, A, S)``: ``P[..., s, a, s']`` is P(s' | s, a).  Any leading axes are batch
  axes, so the same functions evaluate thousands of estimated models ``P_hat`` at once (Problem 2.2 needs
  that to be fast).
* ``r`` has shape ``(S, A)`` with entries in [0, 1]; ``gamma`` is in (0, 1).
* A stochastic policy ``pi`` has shape ``(..., S, A)`` with rows summing to one; a deterministic policy
  is an integer array of shape ``(..., S)`` (convert with :func:`deterministic_policy`).
* The brief's "|S||A|-vector" view flattens state-action pairs row-major: index ``s * A + a``.  Then
  ``P`` as a matrix is ``(SA, S)`` (:func:`transition_matrix`), ``Pi`` is ``(S, SA)`` with
  ``Pi[s, s*A + a] = pi(a|s)`` (:func:`policy_matrix`) and ``P^pi = P Pi`` is the ``(SA, SA)``
  state-action transition matrix (:func:`state_action_transition`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "TabularMDP",
    "random_mdp",
    "random_policy",
    "deterministic_policy",
    "sample_counts",
    "estimate_transitions",
    "estimate_model",
    "transition_matrix",
    "policy_matrix",
    "state_action_transition",
    "state_transition",
    "evaluate_policy",
    "evaluate_policy_state_action",
    "bellman_q",
    "greedy_policy",
    "policy_iteration",
    "value_iteration",
    "optimal_values",
]


@dataclass(frozen=True)
class TabularMDP:
    """A discounted tabular MDP M = (S, A, P, r, gamma); ``P`` is (S, A, S), ``r`` is (S, A)."""

    P: np.ndarray
    r: np.ndarray
    gamma: float

    def __post_init__(self) -> None:
        if self.P.ndim != 3 or self.P.shape[0] != self.P.shape[2]:
            raise ValueError(f"P must have shape (S, A, S), got {self.P.shape}")
        if self.r.shape != self.P.shape[:2]:
            raise ValueError(f"r must have shape {self.P.shape[:2]}, got {self.r.shape}")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")
        if not np.allclose(self.P.sum(axis=-1), 1.0, atol=1e-9) or (self.P < 0).any():
            raise ValueError("every row P(.|s,a) must be a probability distribution")

    @property
    def num_states(self) -> int:
        return int(self.P.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.P.shape[1])

    @property
    def v_max(self) -> float:
        """Upper bound 1 / (1 - gamma) on every value function when rewards lie in [0, 1]."""
        return 1.0 / (1.0 - self.gamma)

    def with_transitions(self, P: np.ndarray) -> TabularMDP:
        """The MDP M_hat: identical to ``self`` except that the dynamics are replaced by ``P``."""
        return TabularMDP(P=P, r=self.r, gamma=self.gamma)


def random_mdp(
    num_states: int,
    num_actions: int,
    gamma: float,
    rng: np.random.Generator,
    concentration: float = 1.0,
) -> TabularMDP:
    """Random MDP: Dirichlet(concentration) transition rows and rewards uniform in [0, 1]."""
    P = rng.dirichlet(np.full(num_states, concentration), size=(num_states, num_actions))
    P = P / P.sum(axis=-1, keepdims=True)  # guard against float drift so multinomial accepts the rows
    r = rng.uniform(0.0, 1.0, size=(num_states, num_actions))
    return TabularMDP(P=P, r=r, gamma=gamma)


def random_policy(num_states: int, num_actions: int, rng: np.random.Generator) -> np.ndarray:
    """A random stochastic policy, shape (S, A), rows drawn from a flat Dirichlet."""
    return rng.dirichlet(np.ones(num_actions), size=num_states)


def deterministic_policy(actions: np.ndarray, num_actions: int) -> np.ndarray:
    """One-hot (..., S, A) policy from integer actions of shape (..., S)."""
    return np.eye(num_actions)[np.asarray(actions)]


def sample_counts(P: np.ndarray, n: int, rng: np.random.Generator, draws: int | None = None) -> np.ndarray:
    """count(s, a, s') from ``n`` simulator calls per (s, a); shape (draws, S, A, S) or (S, A, S)."""
    if n < 1:
        raise ValueError(f"need at least one sample per (s, a), got n={n}")
    size = P.shape[:-1] if draws is None else (draws, *P.shape[:-1])
    return rng.multinomial(n, P, size=size)


def estimate_transitions(
    P: np.ndarray, n: int, rng: np.random.Generator, draws: int | None = None
) -> np.ndarray:
    """Count-based model P_hat(s'|s,a) = count(s,a,s') / N (independent draws stacked on axis 0)."""
    return sample_counts(P, n, rng, draws) / float(n)


def estimate_model(mdp: TabularMDP, n: int, rng: np.random.Generator) -> TabularMDP:
    """The empirical MDP M_hat built from ``n`` samples per state-action pair."""
    return mdp.with_transitions(estimate_transitions(mdp.P, n, rng))


def transition_matrix(P: np.ndarray) -> np.ndarray:
    """P as the brief's (..., |S||A|, |S|) matrix."""
    S, A = P.shape[-3], P.shape[-2]
    return P.reshape(*P.shape[:-3], S * A, S)


def policy_matrix(pi: np.ndarray) -> np.ndarray:
    """Pi with shape (..., S, SA) and Pi[s, s*A + a] = pi(a|s), so that V = Pi Q and P^pi = P Pi."""
    S, A = pi.shape[-2], pi.shape[-1]
    eye = np.eye(S)
    out = eye[:, :, None] * pi[..., None, :, :]  # (..., S, S, A): out[s, s2, a] = [s == s2] pi(a|s2)
    return out.reshape(*pi.shape[:-2], S, S * A)


def state_action_transition(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """P^pi: (..., SA, SA) matrix, P^pi[(s,a), (s',a')] = P(s'|s,a) pi(a'|s')."""
    return transition_matrix(P) @ policy_matrix(pi)


def state_transition(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """State-to-state transition under pi: (..., S, S), sum_a pi(a|s) P(s'|s,a)."""
    return np.einsum("...sat,...sa->...st", P, pi)


def bellman_q(P: np.ndarray, r: np.ndarray, gamma: float, V: np.ndarray) -> np.ndarray:
    """Q(s, a) = r(s, a) + gamma * sum_s' P(s'|s,a) V(s'); batched over leading axes."""
    return r + gamma * np.einsum("...sat,...t->...sa", P, V)


def evaluate_policy(
    P: np.ndarray, r: np.ndarray, gamma: float, pi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Q^pi, V^pi) by one S x S linear solve: V = (I - gamma P_pi)^{-1} r_pi, Q = r + gamma P V."""
    S = P.shape[-1]
    P_s = state_transition(P, pi)
    r_pi = np.sum(pi * r, axis=-1)
    lhs = np.eye(S) - gamma * P_s
    V = np.linalg.solve(lhs, r_pi[..., None])[..., 0]
    return bellman_q(P, r, gamma, V), V


def evaluate_policy_state_action(P: np.ndarray, r: np.ndarray, gamma: float, pi: np.ndarray) -> np.ndarray:
    """Q^pi = (I - gamma P^pi)^{-1} r with the (SA x SA) matrix of the brief; returns shape (..., S, A).

    Slower than :func:`evaluate_policy` but literally the formula used in the simulation lemmas, so the
    tests can check the two routes agree.
    """
    S, A = r.shape
    P_pi = state_action_transition(P, pi)
    lhs = np.eye(S * A) - gamma * P_pi
    rhs = np.broadcast_to(r.reshape(S * A), (*P_pi.shape[:-2], S * A))
    q = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    return q.reshape(*q.shape[:-1], S, A)


def greedy_policy(Q: np.ndarray, previous: np.ndarray | None = None, tol: float = 1e-12) -> np.ndarray:
    """Integer argmax actions of Q (..., S, A); keeps ``previous`` where it is within ``tol`` of the max.

    Keeping the incumbent on ties makes policy iteration terminate despite floating-point noise.
    """
    best = np.argmax(Q, axis=-1)
    if previous is None:
        return best
    q_prev = np.take_along_axis(Q, previous[..., None], axis=-1)[..., 0]
    return np.where(q_prev >= Q.max(axis=-1) - tol, previous, best)


def policy_iteration(
    P: np.ndarray, r: np.ndarray, gamma: float, max_iterations: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact optimal (Q*, V*, greedy actions) by batched Howard policy iteration.

    Each step is an exact linear solve, so the answer is exact up to round-off once the greedy policy
    stops changing (finitely many steps for a finite MDP).
    """
    num_actions = r.shape[-1]
    actions = np.broadcast_to(np.argmax(r, axis=-1), P.shape[:-2]).copy()
    for _ in range(max_iterations):
        Q, V = evaluate_policy(P, r, gamma, deterministic_policy(actions, num_actions))
        new_actions = greedy_policy(Q, actions)
        if np.array_equal(new_actions, actions):
            return Q, V, actions
        actions = new_actions
    raise RuntimeError(f"policy iteration did not converge in {max_iterations} iterations")


def value_iteration(
    P: np.ndarray, r: np.ndarray, gamma: float, tol: float = 1e-10, max_iterations: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal (Q*, V*) by value iteration, stopped when the sup-norm error is provably below ``tol``."""
    V = np.zeros(P.shape[:-2])
    threshold = tol * (1.0 - gamma) / gamma  # ||V_k+1 - V_k|| <= this  =>  ||V_k+1 - V*|| <= tol
    for _ in range(max_iterations):
        Q = bellman_q(P, r, gamma, V)
        V_new = Q.max(axis=-1)
        if np.max(np.abs(V_new - V)) <= threshold:
            return bellman_q(P, r, gamma, V_new), V_new
        V = V_new
    raise RuntimeError(f"value iteration did not converge in {max_iterations} iterations")


def optimal_values(mdp: TabularMDP) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Q*, V*) of ``mdp`` (policy iteration)."""
    Q, V, _ = policy_iteration(mdp.P, mdp.r, mdp.gamma)
    return Q, V
