"""The report's tables, as data: every number the README and docs/ quote comes from one of these, built from the
logged runs by ``build_tables``, so a figure in prose cannot drift from its log.

A table renders to Markdown; links to figures are written ``{fig}name.png`` and resolved against the folder the
Markdown lands in (the report's own ``report.md``, or a page of the docs that embeds the table between the markers
``<!-- generated:KEY logdir=LOGDIR -->`` and ``<!-- /generated -->``, which ``update_blocks`` rewrites).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mbrl_lightning.report.figures import FigureSpec, ReportData, Series, _eval_series, _group_label
from mbrl_lightning.report.published import GAP_STEPS, published_for, references_for, task_of
from mbrl_lightning.report.runs import Run, group_seeds

FIG = "{fig}"  # replaced by the figures' folder relative to the Markdown file


@dataclass(frozen=True)
class Band:
    """What the brief expects of a run, in its words, and the interval that states (open ends as None)."""

    text: str
    lo: float | None = None
    hi: float | None = None

    def verdict(self, value: float) -> str:
        if self.lo is not None and value < self.lo:
            return "below"
        if self.hi is not None and value > self.hi:
            return "above"
        return "inside"


# The brief's experiments (problem, logger name, the brief's expectation). Problem 1's band is on the training loss
# (first logged step below 0.2, against step 500); the others on the final evaluation return. Problem 4 is one row
# per ablated parameter (its figure).
BRIEF_RUNS: tuple[tuple[str, str, Band | None], ...] = (
    ("1", "halfcheetah_0_iter", Band("loss below 0.2 by step 500", None, 500)),
    ("2", "obstacles_1_iter", Band("greater than -70", -70, None)),
    ("3", "obstacles_multi_iter", Band("around -25 to -20", -25, -20)),
    ("3", "reacher_multi_iter", Band("around -300 to -250", -300, -250)),
    ("3", "halfcheetah_multi_iter", Band("around 250-350", 250, 350)),
    ("4", "problem4_ensemble_size", None),
    ("4", "problem4_num_sequences", None),
    ("4", "problem4_horizon", None),
    ("5", "halfcheetah_cem_2", Band("around 800 or higher (CEM)", 800, None)),
    ("5", "halfcheetah_cem", Band("around 800 or higher (CEM)", 800, None)),
    ("6", "halfcheetah_sac", None),
    ("6", "halfcheetah_dyna", None),
    ("6", "halfcheetah_mbpo", Band("around 700 or higher (rollout length 10)", 700, None)),
)
PROBLEM1_LOSS = 0.2  # the brief: "the loss should go below 0.2 by iteration 500"


@dataclass
class Table:
    """One Markdown table: ``key`` names it in report.md and in the docs' markers."""

    key: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""  # one paragraph under the table: what the cells are
    align: list[str] = field(default_factory=list)  # per column "---" or "---:"

    def markdown(self, figures: str = "") -> str:
        """The table (and its note) as Markdown, figure links relative to ``figures`` ("" or "docs/report/")."""
        align = self.align or ["---"] * len(self.header)
        lines = ["| " + " | ".join(self.header) + " |", "| " + " | ".join(align) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        text = "\n".join(lines)
        if self.note:
            text += "\n\n" + self.note
        return text.replace(FIG, figures)


# -- formatting ----------------------------------------------------------------------------------------------------
def fmt(value: float | None, spec: str = ".4g") -> str:
    """A logged value as the report writes it (4 significant digits; "—" where there is none)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


def duration(seconds: float) -> str:
    """Logged wall time: seconds below 2 min, minutes below 100 min, hours above."""
    if seconds <= 0:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 6000 else f"{seconds / 3600:.2f} h"


def _pm(series: Series, i: int) -> str:
    """``mean ± std over episodes`` (one run) or ``mean (min-max)`` (several seeds) at index ``i``."""
    y = fmt(float(series.y[i]))
    if series.lo is None or series.hi is None:
        return y
    if series.spread.startswith("min-max"):
        n, of = (int(series.count[i]), len(series.runs)) if series.count is not None else (0, 0)
        if n == 1:  # only some seeds got this far: say so rather than a band of one
            return f"{y} (1 of {of} seeds)"
        seeds = f"; {n} of {of} seeds" if n < of else ""
        return f"{y} ({fmt(float(series.lo[i]))} to {fmt(float(series.hi[i]))}{seeds})"
    return f"{y} ± {fmt(float(series.hi[i] - series.y[i]), '.3g')}"


def _figure(data: ReportData, key: str) -> FigureSpec | None:
    return next((f for f in data.figures if f.key == key), None)


def _series_of(data: ReportData, run_name: str) -> tuple[FigureSpec, Series] | None:
    """The first figure series drawn from runs of this logger name (``name/version_N`` labels)."""
    for spec in data.figures:
        for panel in spec.panels:
            for s in panel.series:
                if s.runs and all(r.split("/version_")[0] == run_name for r in s.runs):
                    return spec, s
    return None


def _runs_named(data: ReportData, name: str) -> list[Run]:
    return [r for r in data.runs if r.name == name]


def _first_below(run: Run, threshold: float) -> float | None:
    steps, loss = run.series("train/loss")
    below = np.flatnonzero(loss < threshold)
    return float(steps[below[0]]) if len(below) else None


def _episodes(run: Run) -> int | None:
    """``num_episodes`` of the run's Evaluate callback (config.yaml)."""
    for cb in (run.get("trainer.callbacks") or []):
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith(".Evaluate"):
            n = (cb.get("init_args") or {}).get("num_episodes")
            return int(n) if n else None
    return None


def _link(spec: FigureSpec | None, text: str) -> str:
    return f"[{text}]({FIG}{spec.key}.png)" if spec is not None else "—"


# -- the tables ----------------------------------------------------------------------------------------------------
def results_table(data: ReportData) -> Table | None:
    """The brief's runs: problem, run, the brief's band, ours, where ours stands, the figure."""
    rows = []
    for problem, name, band in BRIEF_RUNS:
        if name.startswith("problem4_"):
            spec = _figure(data, name)
            if spec is None:
                continue
            series = spec.panels[0].series
            param = name.removeprefix("problem4_")
            values = ", ".join(f"{s.label.split('=', 1)[1]}: {fmt(float(s.y[-1]))}" for s in series if len(s.y))
            rows.append([problem, f"`reacher_ablation`, {param}", "—", values, "—", _link(spec, "Problem 4")])
            continue
        if problem == "1":
            runs = _runs_named(data, name)
            if not runs:
                continue
            run = runs[-1]
            step = _first_below(run, PROBLEM1_LOSS)
            ours = (f"first below {PROBLEM1_LOSS} at step {fmt(step, '.0f')}; {fmt(run.last('train/loss'))} at the "
                    f"last step")
            verdict = "—" if step is None or band is None else band.verdict(step)
            rows.append([problem, f"`{name}`", band.text if band else "—", ours, verdict,
                         _link(_figure(data, "problem1_model_loss"), "Problem 1")])
            continue
        found = _series_of(data, name)
        if found is None:  # no figure (Problem 2): the runs' own curve
            groups = group_seeds(_runs_named(data, name))[0] if _runs_named(data, name) else []
            if not groups or not any(r.has("eval/return") for r in groups[-1]):
                continue
            found = (None, _eval_series(name, groups[-1]))
        spec, series = found
        if spec is not None and spec.key == "problem5_cem" and series.label.startswith("random shooting"):
            continue
        ours = f"{_pm(series, -1)} after iteration {fmt(float(series.x[-1]), 'g')}"
        verdict = band.verdict(float(series.y[-1])) if band else "—"
        # Problem 2 has no figure (one iteration): its number is Problem 2's line of report.md
        figure = _link(spec, spec.problem) if spec is not None else f"[report]({FIG}report.md#problem-2)"
        rows.append([problem, f"`{name}`", band.text if band else "—", ours, verdict, figure])
    if not rows:
        return None
    return Table("results", "The brief's runs", ["problem", "run", "the brief expects", "ours", "ours against it",
                                                 "figure"], rows,
                 "Ours: the final evaluation return ± its std over the evaluation episodes (one seed each).",
                 ["---:", "---", "---", "---", "---", "---"])


def _series_at(series: Series) -> dict[float, int]:
    return {float(x): i for i, x in enumerate(series.x)}


def _iteration_rows(series: list[Series]) -> list[list[str]]:
    """One row per iteration any series has, one ``mean ± std`` / ``mean (min to max)`` cell per series."""
    xs = sorted({float(x) for s in series for x in s.x})
    index = [_series_at(s) for s in series]
    return [[fmt(x, "g")] + [_pm(s, idx[x]) if x in idx else "" for s, idx in zip(series, index, strict=True)]
            for x in xs]


def iteration_table(data: ReportData, figure_key: str, key: str, title: str) -> Table | None:
    """Each series of a figure per iteration (rows) and line (columns): ``mean ± std over episodes``."""
    spec = _figure(data, figure_key)
    if spec is None:
        return None
    series = [s for p in spec.panels for s in p.series]
    return Table(key, title, ["iteration", *(s.label for s in series)], _iteration_rows(series),
                 "Evaluation return after each iteration ± its std over the evaluation episodes "
                 f"({_link(spec, 'figure')}).", ["---:"] * (len(series) + 1))


def problem1_table(data: ReportData) -> Table | None:
    runs = sorted((r for r in data.runs if r.name.startswith("halfcheetah_0_iter") and r.has("train/loss")),
                  key=lambda r: r.label)
    if not runs:
        return None
    rows = []
    for run in runs:
        steps, _ = run.series("train/loss")
        rows.append([f"`{run.name}`", fmt(float(steps[-1]) + 1, ".0f"), fmt(run.last("train/loss")),
                     fmt(_first_below(run, PROBLEM1_LOSS), ".0f"), fmt(run.last("val/loss")),
                     duration(run.wall_seconds)])
    return Table("problem1", "Problem 1: the dynamics model",
                 ["run", "gradient steps", "final training loss", f"first step below {PROBLEM1_LOSS}",
                  "held-out loss", "logged wall time"], rows,
                 "Loss: MSE of the normalised state deltas, mean over the ensemble members; held-out: the "
                 f"DataModule's validation split ({_link(_figure(data, 'problem1_model_loss'), 'figure')}).",
                 ["---", "---:", "---:", "---:", "---:", "---:"])


def ablation_table(data: ReportData) -> Table | None:
    """Problem 4: each value's final return, and its difference to the default in standard errors."""
    rows = []
    for key in ("problem4_ensemble_size", "problem4_num_sequences", "problem4_horizon"):
        spec = _figure(data, key)
        if spec is None:
            continue
        series = spec.panels[0].series
        default = next((s for s in series if "(default)" in s.label), None)
        for s in series:
            run = next((r for r in data.runs if r.label == s.runs[0]), None) if len(s.runs) == 1 else None
            n = _episodes(run) if run is not None else None
            diff = "—"
            if default is not None and s is not default and n and s.lo is not None and default.lo is not None:
                d_run = next((r for r in data.runs if r.label == default.runs[0]), None)
                n_d = _episodes(d_run) if d_run is not None and len(default.runs) == 1 else None
                if n_d:
                    sd, sd_d = float(s.hi[-1] - s.y[-1]), float(default.hi[-1] - default.y[-1])
                    se = math.sqrt(sd**2 / n + sd_d**2 / n_d)
                    delta = float(s.y[-1] - default.y[-1])
                    diff = f"{delta:+.1f} ({delta / se:+.1f} s.e.)" if se > 0 else f"{delta:+.1f}"
            rows.append([key.removeprefix("problem4_"), s.label.split("=", 1)[1], _pm(s, -1), fmt(n, "d"), diff])
    if not rows:
        return None
    return Table("problem4", "Problem 4: ablations", ["parameter", "value", "final return", "episodes",
                                                       "difference to the default"], rows,
                 "Final return ± its std over the evaluation episodes; the difference to the default run's final "
                 "return, and that difference over its standard error (sqrt(s1²/n1 + s2²/n2) from the two runs' "
                 "episode std and counts).", ["---", "---", "---:", "---:", "---:"])


def _task_series(data: ReportData) -> list[tuple[str, FigureSpec, list[Series]]]:
    out = []
    for spec in data.figures:
        if spec.problem != "Standard tasks":
            continue
        env_id = spec.panels[0].title
        out.append((env_id, spec, [s for s in spec.panels[0].series if s.style == "-"]))
    return out


def standard_tasks_table(data: ReportData) -> Table | None:
    """Every standard-task run group: seeds, env steps, final and best return, logged wall time."""
    rows = []
    by_label = {r.label: r for r in data.runs}
    for env_id, spec, series in _task_series(data):
        for s in series:
            runs = [by_label[label] for label in s.runs if label in by_label]
            walls = ", ".join(duration(r.wall_seconds) for r in runs)
            # seeds still running end at different env steps: the final row is the last one every seed reached
            ends = [float(r.series("eval/env_steps")[1][-1]) for r in runs if r.has("eval/env_steps")]
            last = len(s.x) - 1 if len(ends) < 2 else int(np.searchsorted(s.x, min(ends), side="right")) - 1
            steps = fmt(float(s.x[last]), ".0f")
            if len(ends) > 1 and max(ends) > min(ends):
                steps += " (seeds at " + ", ".join(fmt(e, ".0f") for e in ends) + ")"
            best = int(np.argmax(s.y[: last + 1])) if len(s.y) else None
            rows.append([f"[{env_id}]({FIG}{spec.key}.png)", s.label, str(len(runs)), steps,
                         _pm(s, last), "—" if best is None else f"{fmt(float(s.y[best]))} at {s.x[best]:.0f}",
                         walls])
    if not rows:
        return None
    return Table("standard-tasks", "Standard tasks: every run", ["task", "method [runs]", "seeds", "env steps",
                                                                  "final return", "best return (at env steps)",
                                                                  "logged wall time"], rows,
                 "Returns of the deterministic policy (SAC, MBPO) or the planner (PETS) against the real env steps "
                 "collected so far; several seeds: mean (min to max) at the last env steps every seed reached, one: "
                 "± std over the evaluation episodes; wall time per seed.",
                 ["---", "---", "---:", "---:", "---:", "---:", "---:"])


# The run groups of the current configs (logger names) that the README's headline table sets beside the published
# curves, per task; the gap table of docs/standard_tasks.md lists every group, earlier configs' runs included.
HEADLINE_RUNS: dict[str, tuple[str, ...]] = {"Hopper": ("mbpo_hopper", "sac_hopper")}


def gap_tables(data: ReportData, headline: bool = False) -> list[Table]:
    """Per task with published curves: our groups, the published means and the reference measurements at
    ``GAP_STEPS``; ours with our share of the published mean of the same method. ``headline``: only the groups
    of ``HEADLINE_RUNS`` (tables ``headline-<task>``)."""
    tables = []
    names = {r.label: r.base_name for r in data.runs}  # a sweep's seeds (name__seed=N) belong to their config
    for env_id, spec, series in _task_series(data):
        curves = published_for(env_id)
        refs = [r for r in references_for(env_id) if r.headline or not headline]
        if not curves and not refs:
            continue
        if headline:
            keep = HEADLINE_RUNS.get(task_of(env_id), ())
            series = [s for s in series if s.runs and all(names.get(label) in keep for label in s.runs)]
            if not series:
                continue
        header = ["env steps"] + [s.label for s in series]
        header += [f"{c.method}, published ({c.env_id})" for c in curves] + [r.label for r in refs]
        rows = []
        for steps in GAP_STEPS:
            row = [f"{steps / 1000:g}k"]
            for s in series:
                i = _series_at(s).get(steps)
                if i is None:
                    row.append("")
                    continue
                cell = _pm(s, i)
                method = s.label.split(" ")[0]
                curve = next((c for c in curves if c.method == method), None)
                if curve is not None and curve.x[0] <= steps <= curve.x[-1] and curve.at(steps) > 0:
                    cell += f"; {100 * float(s.y[i]) / curve.at(steps):.0f} %"
                row.append(cell)
            for c in curves:
                if not c.x[0] <= steps <= c.x[-1]:
                    row.append("")
                    continue
                cell = fmt(c.at(steps), ".0f")
                if len(c.rows) > 1:
                    lo = min(float(np.interp(steps, c.x, r)) for r in c.rows)
                    hi = max(float(np.interp(steps, c.x, r)) for r in c.rows)
                    cell += f" ({lo:.0f} to {hi:.0f})"
                row.append(cell)
            row += [r.cell(steps) for r in refs]
            if any(cell for cell in row[1:]):
                rows.append(row)
        sources = [f"{c.method} published: {c.source} on {c.env_id} ({c.how})" for c in curves]
        by_source: dict[str, list[str]] = {}
        for r in refs:
            by_source.setdefault(r.source, []).append(r.label)
        sources += [f"{', '.join(labels)}: {source}" for source, labels in by_source.items()]
        note = (f"{_link(spec, 'Figure')}. Ours: mean over seeds (min to max) or one run ± std over its evaluation "
                "episodes, at exactly these "
                "env steps; after the semicolon, our share of the published mean of the same method. Published "
                "means are linear between the published points. " + "; ".join(sources) + ".")
        key = ("headline-" if headline else "gap-") + task_of(env_id).lower()
        title = f"{env_id} against published curves" + (": the current configs" if headline else "")
        tables.append(Table(key, title, header, rows, note, ["---:"] * len(header)))
    return tables


BRIEF_NAMES = ("halfcheetah_0_iter", "halfcheetah_0_iter_lr3e-3", "halfcheetah_0_iter_wide", "obstacles_1_iter",
               "obstacles_multi_iter", "reacher_multi_iter", "halfcheetah_multi_iter", "halfcheetah_cem_2",
               "halfcheetah_cem", "halfcheetah_sac", "halfcheetah_dyna", "halfcheetah_mbpo")


def wall_time_table(data: ReportData) -> Table | None:
    """The brief's runs' logged wall time, and their sum."""
    runs = [r for r in data.runs if r.name in BRIEF_NAMES or r.name.startswith("reacher_ablation")]
    if not runs:
        return None
    runs.sort(key=lambda r: -r.wall_seconds)
    rows = []
    for run in runs:
        x, y, _ = run.eval_curve()
        rows.append([f"`{run.label}`", fmt(float(x[-1]), "g") if len(y) else "1", duration(run.wall_seconds)])
    total = sum(r.wall_seconds for r in runs)
    rows.append([f"all {len(runs)} runs", "", duration(total)])
    return Table("brief-wall-time", "The brief's wall time", ["run", "iterations", "logged wall time"], rows,
                 "Per event file (a start or a resumption), last minus first event time, summed; one thread per run.",
                 ["---", "---:", "---:"])


def _per_1000(run: Run, tag: str, env_steps: float, less: tuple[str, ...] = ()) -> str:
    """``tag``'s logged seconds, summed, per 1000 env steps; minus the timers in ``less`` that ran inside it."""
    _, values = run.series(tag)
    if not len(values) or env_steps <= 0:
        return "—"
    inside = sum(float(run.series(t)[1].sum()) for t in less)
    return fmt(1000 * (float(values.sum()) - inside) / env_steps, ".1f")


def speed_table(data: ReportData) -> Table | None:
    """SAC and MBPO runs: logged seconds per 1000 env steps, in all and per part (from the runs' own timers)."""
    rows = []
    for run in data.runs:
        if str(run.get("model.class_path", "")).rsplit(".", 1)[-1] != "MBPO" or not run.has("data/env_steps"):
            continue
        steps = run.last("data/env_steps") or 0.0
        random_steps = next((float((cb.get("init_args") or {}).get("num_steps", 0))
                             for cb in (run.get("trainer.callbacks") or [])
                             if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith(".CollectRandom")),
                            0.0)
        policy_steps = steps - random_steps
        rows.append([f"`{run.label}`", fmt(steps, ".0f"), duration(run.wall_seconds),
                     fmt(1000 * run.wall_seconds / policy_steps, ".1f") if policy_steps > 0 else "—",
                     # rollouts (and, with model_train_freq, the model trainings: model/seconds) run inside the
                     # updates' timer
                     _per_1000(run, "sac/seconds", policy_steps, ("mbpo/rollout_seconds", "model/seconds")),
                     _per_1000(run, "model/train_seconds", policy_steps),
                     _per_1000(run, "mbpo/rollout_seconds", policy_steps)])
    if not rows:
        return None
    return Table("speed", "SAC and MBPO: seconds per 1000 env steps",
                 ["run", "env steps", "logged wall time", "wall s / 1000 policy steps", "SAC updates",
                  "model training", "model rollouts"], rows,
                 "Seconds per 1000 env steps of the policy (random warm-up steps left out): the logged wall time, "
                 "and the sums of the run's own timers (`sac/seconds` less the rollouts and model trainings that run "
                 "inside it, `model/train_seconds`, `mbpo/rollout_seconds`); evaluation and collection make up the "
                 "rest.",
                 ["---", "---:", "---:", "---:", "---:", "---:", "---:"])


def bf16_runs_table(data: ReportData) -> Table | None:
    """Whole MPC runs that planned in bfloat16 (logger name ``bf16_<name>``) beside the float32 runs of ``<name>``,
    per iteration: the run-level half of bf16's effect on returns (the paired half is benchmarks/bf16_returns.py)."""
    series = []
    for name in sorted({r.name for r in data.runs if r.name.startswith("bf16_")}):
        pair = []
        for run_name, precision in ((name.removeprefix("bf16_"), "float32"), (name, "bfloat16")):
            groups, _ = group_seeds([r for r in data.runs if r.name == run_name and r.has("eval/return")])
            if groups:
                pair.append(_eval_series(f"{_group_label(groups[0])}, {precision}", groups[0]))
        if len(pair) == 2:
            series += pair
    if not series:
        return None
    return Table("bf16-runs", "Whole runs planning in bfloat16 beside float32",
                 ["iteration", *(s.label for s in series)], _iteration_rows(series),
                 "Evaluation return after each iteration: one run ± its std over the evaluation episodes, or the "
                 "mean over seeds (min to max). Each pair has the same config but for the planning precision "
                 "(`--model.init_args.bf16 true`) and the number of iterations.",
                 ["---:"] * (len(series) + 1))


def build_tables(data: ReportData) -> list[Table]:
    """Every table the runs allow, in the report's order."""
    tables = [results_table(data), problem1_table(data),
              iteration_table(data, "problem3_multi_iter", "problem3", "Problem 3: return per iteration"),
              ablation_table(data),
              iteration_table(data, "problem5_cem", "problem5", "Problem 5: return per iteration"),
              iteration_table(data, "problem6_mbpo", "problem6", "Problem 6: return per iteration"),
              standard_tasks_table(data), *gap_tables(data), *gap_tables(data, headline=True),
              wall_time_table(data), speed_table(data),
              bf16_runs_table(data)]
    return [t for t in tables if t is not None]


# -- generated blocks in Markdown pages ----------------------------------------------------------------------------
BLOCK = re.compile(r"(<!-- generated:(?P<key>[\w.-]+) logdir=(?P<logdir>\S+) -->\n)(?P<body>.*?)(<!-- /generated -->)",
                   re.DOTALL)


def figures_relative(page: Path, out: Path) -> str:
    """The report folder relative to a Markdown page's folder, as a link prefix (``docs/report/``, ``report/``)."""
    rel = os.path.relpath(Path(out).resolve(), Path(page).resolve().parent)
    return "" if rel == "." else rel.replace(os.sep, "/") + "/"


def render_blocks(text: str, page: Path, tables: dict[str, Table], logdir: Path, out: Path,
                  root: Path | None = None) -> tuple[str, list[str]]:
    """``text`` with every block that names ``logdir`` rewritten from ``tables``; and the problems found (a block
    naming a table the runs did not give). A block's ``logdir=`` is relative to ``root`` (default: the current
    folder, where the report command runs)."""
    problems: list[str] = []
    here = Path(logdir).resolve()
    base = Path.cwd() if root is None else Path(root)

    def replace(match: re.Match) -> str:
        if (base / match["logdir"]).resolve() != here:
            return match.group(0)
        table = tables.get(match["key"])
        if table is None:
            problems.append(f"{page}: no table '{match['key']}' from the runs under {logdir}")
            return match.group(0)
        return match.group(1) + table.markdown(figures_relative(page, out)) + "\n" + match.group(5)

    return BLOCK.sub(replace, text), problems


def markdown_pages(paths: list[Path]) -> list[Path]:
    """The Markdown files named, and those in the folders named (recursively)."""
    pages: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            pages += sorted(path.rglob("*.md"))
        elif path.is_file() and path.suffix == ".md":
            pages.append(path)
    return pages


def update_blocks(paths: list[Path], tables: list[Table], logdir: Path, out: Path) -> tuple[list[Path], list[str]]:
    """Rewrite the generated blocks of the Markdown pages under ``paths`` that name ``logdir``; returns the pages
    changed and the problems found."""
    by_key = {t.key: t for t in tables}
    changed, problems = [], []
    for page in markdown_pages(paths):
        if page.resolve().parent == Path(out).resolve():
            continue  # the report's own report.md
        text = page.read_text()
        new, found = render_blocks(text, page, by_key, logdir, out)
        problems += found
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed, problems


__all__ = ["BLOCK", "BRIEF_RUNS", "Band", "Table", "build_tables", "duration", "figures_relative", "fmt",
           "markdown_pages", "render_blocks", "update_blocks"]
