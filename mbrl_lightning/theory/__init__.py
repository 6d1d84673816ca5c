"""Analysis part of the brief (Section 2): tabular MDPs, simulation lemmas and concentration checks.

Pure numpy; run ``python -m mbrl_lightning.theory --out DIR`` for the residuals, coverage table and plot.
"""

from mbrl_lightning.theory.concentration import ConcentrationResult, run_concentration
from mbrl_lightning.theory.simulation_lemma import LemmaResiduals, check_simulation_lemmas
from mbrl_lightning.theory.tabular import TabularMDP, optimal_values, random_mdp

__all__ = [
    "ConcentrationResult",
    "LemmaResiduals",
    "TabularMDP",
    "check_simulation_lemmas",
    "optimal_values",
    "random_mdp",
    "run_concentration",
]
