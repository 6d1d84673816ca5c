"""Draw ``FigureSpec``s with matplotlib (Agg) to PNG and PDF, and write ``report.md``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from mbrl_lightning.report.figures import FigureSpec, ReportData
from mbrl_lightning.report.runs import Run
from mbrl_lightning.report.tables import Table, duration

MARKER_MAX_POINTS = 40  # short curves (returns per iteration) get markers; long ones (losses) do not
LEGEND_BELOW = 4  # a panel with more lines than this has its legend under the axes, where it hides no curve


def draw(spec: FigureSpec, out: Path) -> list[Path]:
    """Draw one figure (panels side by side, caption under them); returns the PNG and PDF paths."""
    import matplotlib.pyplot as plt

    fig = figure(spec)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{spec.key}.png", out / f"{spec.key}.pdf"]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1], metadata={"CreationDate": None})  # no date: an unchanged figure gives the same file
    plt.close(fig)
    return paths


def figure(spec: FigureSpec):
    """The matplotlib figure of ``spec`` (Agg), not saved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = len(spec.panels)
    width = max(6.5, 5.0 * n)
    caption = textwrap.fill(spec.caption, width=int(width * 16))
    lines = caption.count("\n") + 1
    caption_in = 0.14 * lines + 0.08  # inches under the axes for the caption
    below = max((len(p.series) for p in spec.panels if len(p.series) > LEGEND_BELOW), default=0)
    legend_in = 0.15 * below + 0.25 if below else 0.0  # inches for a legend under the axes (x label included)
    height = 4.2 + caption_in + legend_in
    fig, axes = plt.subplots(1, n, figsize=(width, height), squeeze=False)
    for ax, panel in zip(axes[0], spec.panels, strict=True):
        for s in panel.series:
            marker = "o" if len(s.x) <= MARKER_MAX_POINTS and s.style == "-" else None
            # seeds that do not share every x: the mean and band where every seed has a point, each seed thin
            keep = s.count == len(s.members) if s.partial else np.ones(len(s.x), dtype=bool)
            (line,) = ax.plot(s.x[keep], s.y[keep], s.style, marker=marker, ms=3.5,
                              lw=1.4 if marker or s.partial else 0.9, label=s.label)
            if s.lo is not None and s.hi is not None:
                ax.fill_between(s.x[keep], s.lo[keep], s.hi[keep], color=line.get_color(),
                                alpha=0.1 if s.style != "-" else 0.2, lw=0)
            for i, (x, y) in enumerate(s.members if s.partial else []):
                ax.plot(x, y, s.style, color=line.get_color(), lw=0.8, alpha=0.7)
                if len(x) and i < len(s.runs):  # which seed is which: its run folder at its last point
                    ax.annotate(s.runs[i].rsplit("/", 1)[-1], (x[-1], y[-1]), xytext=(3, 0), fontsize=6,
                                textcoords="offset points", color=line.get_color(), va="center")
        if panel.logy and all(np.all(s.y > 0) for s in panel.series):
            ax.set_yscale("log")
        if "iteration" in panel.xlabel:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        ax.grid(alpha=0.3)
        if len(panel.series) > LEGEND_BELOW:
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=1, frameon=False)
        else:
            ax.legend(fontsize=8)
    fig.suptitle(spec.title)
    # tight_layout makes room for a legend under the axes, but leaves about 0.4 in under it: the caption takes it
    bottom = max(caption_in - (0.35 if below else 0.0), 0.05) / height
    fig.text(0.01, 0.01, caption, fontsize=8, va="bottom", ha="left")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def final_row(run: Run) -> tuple[str, str, str, str, str]:
    """(run, iterations, final return ± std, env steps, logged wall time) for the table."""
    x, y, std = run.eval_curve()
    if not len(y):
        env = run.last("data/env_steps")
        return run.label, "—", "—", _fmt(env, ".0f"), duration(run.wall_seconds)
    ret = f"{y[-1]:.4g}" + (f" ± {std[-1]:.3g}" if std is not None else "")
    env = run.last("eval/env_steps")
    env = run.last("data/env_steps") if env is None else env
    return run.label, f"{x[-1]:g}", ret, _fmt(env, ".0f"), duration(run.wall_seconds)


def render_markdown(data: ReportData, logdir: Path, tables: list[Table] | None = None) -> str:
    """``report.md``'s text: each figure with its caption, Problem 2's number, notes, skipped problems, the
    generated tables and the table of final returns. Nothing in it depends on when it was written, so a committed
    report.md can be compared with a fresh one."""
    lines = ["# Model-based RL report", "",
             f"Runs under `{logdir}` ({len(data.runs)} run{'s' if len(data.runs) != 1 else ''}), "
             f"written by `python -m mbrl_lightning report {logdir}` from their TensorBoard event files.", ""]
    problem2 = ["## Problem 2", "", "MPC after one iteration on the obstacles environment:", ""]
    problem2 += [f"- {r}" for r in data.results] + [""]
    section, placed = None, not data.results
    for number, spec in enumerate(data.figures, start=1):
        if spec.problem != section:
            if not placed and spec.problem != "Problem 1":  # Problem 2 is a number, not a figure: in order
                lines += problem2
                placed = True
            section = spec.problem
            lines += [f"## {section}", ""]
        lines += [f"![{spec.title}]({spec.key}.png)", "",
                  f"*Figure {number}. {spec.caption}* ([PDF]({spec.key}.pdf))", ""]
    if not placed:
        lines += problem2
    if data.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in data.notes] + [""]
    if data.skipped:
        lines += ["## Skipped", ""] + [f"- {s}" for s in data.skipped] + [""]
    if tables:
        lines += ["## Tables", "",
                  "The tables that README.md and docs/ embed between `<!-- generated:KEY logdir=LOGDIR -->` markers "
                  "(the key after each heading).", ""]
        for table in tables:
            lines += [f"### {table.title} (`{table.key}`)", "", table.markdown(""), ""]
    lines += ["## Final evaluation returns", "",
              "| run | iterations | final return ± std (episodes) | env steps | logged wall time |",
              "| --- | ---: | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(final_row(run)) + " |" for run in data.runs]
    return "\n".join(lines) + "\n"


def write_markdown(data: ReportData, out: Path, logdir: Path, tables: list[Table] | None = None) -> Path:
    """Write ``report.md`` into ``out``; returns its path."""
    path = Path(out) / "report.md"
    path.write_text(render_markdown(data, logdir, tables))
    return path
