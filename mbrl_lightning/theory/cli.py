"""Command line for the analysis section: lemma residuals, coverage table (statement x N) and plot."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mbrl_lightning.theory.concentration import (
    CHECKS,
    DEFAULT_N_VALUES,
    ConcentrationResult,
    default_setup,
    format_table,
    format_verdicts,
    run_concentration,
)
from mbrl_lightning.theory.simulation_lemma import check_simulation_lemmas

PLOT_NAME = "concentration_coverage.png"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mbrl_lightning.theory",
        description="Numerical checks for the brief's analysis section (Problems 2.1 and 2.2).",
    )
    p.add_argument("--states", type=int, default=20, help="|S| of the random MDP (default 20)")
    p.add_argument("--actions", type=int, default=4, help="|A| of the random MDP (default 4)")
    p.add_argument("--gamma", type=float, default=0.9, help="discount factor (default 0.9)")
    p.add_argument("--delta", type=float, default=0.1, help="failure probability delta (default 0.1)")
    p.add_argument("--draws", type=int, default=2000, help="independent draws of P_hat per N (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="numpy seed (default 0)")
    p.add_argument(
        "--n",
        type=int,
        nargs="+",
        default=list(DEFAULT_N_VALUES),
        metavar="N",
        help="samples per (s, a) to sweep (default 10 30 100 300 1000)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/theory"),
        help=f"output directory for {PLOT_NAME} (default runs/theory)",
    )
    return p


def plot_coverage(result: ConcentrationResult, path: Path) -> Path:
    """Coverage vs N (with the 1 - delta line) and median LHS/bound vs N for every check; Agg backend.

    The right panel shows why the invalid statements still cover: their bounds are far from tight, while
    the adversarial data-dependent vector sits above Hoeffding's radius H (ratio > 1).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cov, ax_ratio) = plt.subplots(1, 2, figsize=(14, 5.5))
    ns = np.asarray(result.n_values)
    for check in CHECKS:
        statement = check.argument_valid is not None
        style = {
            "marker": "o" if statement else "s",
            "linestyle": "-" if statement else "--",
            "linewidth": 2.0 if statement else 1.2,
            "label": f"{check.key}: {' '.join(check.label.split())}",
        }
        ax_cov.plot(ns, result.coverage[check.key], **style)
        ax_ratio.plot(ns, result.median_ratio[check.key], **style)
    ax_cov.axhline(
        1.0 - result.delta,
        color="black",
        linestyle=":",
        linewidth=1.5,
        label=f"1 - delta = {1.0 - result.delta:.2f}",
    )
    ax_cov.set_ylim(-0.03, 1.05)
    ax_cov.set_ylabel("empirical P[inequality holds]")
    ax_cov.set_title("coverage (must be >= 1 - delta for a valid bound)")
    ax_ratio.axhline(1.0, color="black", linestyle=":", linewidth=1.5, label="LHS = bound")
    ax_ratio.set_yscale("log")
    ax_ratio.set_ylabel("median LHS / bound")
    ax_ratio.set_title("tightness (> 1: typically violated)")
    for ax in (ax_cov, ax_ratio):
        ax.set_xscale("log")
        ax.set_xlabel("N (simulator samples per state-action pair)")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax_cov.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(0.75, 0.5))
    fig.suptitle(
        f"Problem 2.2: |S|={result.num_states}, |A|={result.num_actions}, gamma={result.gamma}, "
        f"delta={result.delta}, {result.draws} draws of P_hat per N"
    )
    fig.tight_layout(rect=(0.0, 0.0, 0.75, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Print both lemma residuals, the coverage table and verdicts; save the coverage plot under --out."""
    args = build_parser().parse_args(argv)
    if args.states < 2 or args.actions < 1 or args.draws < 1 or min(args.n) < 1:
        raise SystemExit("need --states >= 2, --actions >= 1, --draws >= 1 and every N >= 1")

    res = check_simulation_lemmas(np.random.default_rng(args.seed), gamma=args.gamma)
    print(
        f"Problem 2.1 over {res.num_cases} (MDP, N, policy) cases (max ||Q - Qhat||_inf = {res.q_gap:.3g}):"
    )
    print(f"  simulation lemma             max |residual| = {res.simulation:.3e}")
    print(f"  alternative simulation lemma max |residual| = {res.alternative:.3e}")
    print()

    start = time.perf_counter()
    mdp, pi, rng = default_setup(args.states, args.actions, args.gamma, args.seed)
    result = run_concentration(mdp, pi, args.delta, args.draws, rng, n_values=args.n)
    elapsed = time.perf_counter() - start
    print(format_table(result))
    print()
    print(format_verdicts(result))
    path = plot_coverage(result, args.out / PLOT_NAME)
    print(f"\n(concentration sweep took {elapsed:.1f} s; plot written to {path})")
    return 0
