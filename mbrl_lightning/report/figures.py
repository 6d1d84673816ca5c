"""What each figure of the brief shows, as data: runs are selected by logger name and grouped by ``config.yaml``.

``build_report(runs)`` returns the figures (their series are exactly what gets drawn), the skipped problems
with the reason, and notes; nothing here draws.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mbrl_lightning.report.published import Ours, gap_lines, published_for
from mbrl_lightning.report.runs import Run, config_diff, flatten, get_dotted, group_seeds, merge_resumptions

PLANNER = "model.init_args.planner"
# Problem 4's ablated parameters: (short name, config key, axis words)
ABLATIONS: tuple[tuple[str, str, str], ...] = (
    ("ensemble_size", "model.init_args.ensemble_size", "ensemble size"),
    ("num_sequences", f"{PLANNER}.init_args.num_sequences", "number of candidate action sequences"),
    ("horizon", f"{PLANNER}.init_args.horizon", "planning horizon"),
)
PROBLEM3 = ("obstacles_multi_iter", "reacher_multi_iter", "halfcheetah_multi_iter")
PROBLEM6 = (("halfcheetah_sac", "SAC"), ("halfcheetah_dyna", "Dyna"), ("halfcheetah_mbpo", "MBPO"))


@dataclass
class Series:
    """One line: ``y`` over ``x`` (mean over ``runs`` when several seeds), optional shaded band ``lo``-``hi``."""

    label: str
    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    runs: list[str] = field(default_factory=list)
    spread: str = ""
    style: str = "-"  # matplotlib line style; published curves are dashed
    count: np.ndarray | None = None  # runs that reached each x (a mean over seeds; None: one run)
    members: list[tuple[np.ndarray, np.ndarray]] | None = None  # each seed's (x, y), for a mean over seeds

    @property
    def partial(self) -> bool:
        """Some x has fewer seeds than the group (seeds still going, or evaluated at other x): the mean there is
        not over every seed, so the figure draws each seed and the mean only where all have a point."""
        return (self.count is not None and self.members is not None and len(self.count) > 0
                and bool((self.count < len(self.members)).any()))

    @property
    def unequal(self) -> bool:
        """The last x has fewer seeds than the group: its final value is not a mean over every seed."""
        return self.partial and int(self.count[-1]) < len(self.members)

    def seeds_at(self, i: int) -> str:
        """`` (k of n seeds)`` where only some seeds reached index ``i``, else nothing."""
        if self.count is None or self.members is None or not len(self.count) or int(self.count[i]) == len(self.members):
            return ""
        return f" ({int(self.count[i])} of {len(self.members)} seeds)"


@dataclass
class Panel:
    """One set of axes."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    logy: bool = False


@dataclass
class FigureSpec:
    """One figure: file stem, title, caption (drawn under the axes and repeated in the Markdown), panels."""

    key: str
    title: str
    caption: str
    panels: list[Panel]
    problem: str = ""


@dataclass
class ReportData:
    """Everything the report shows."""

    figures: list[FigureSpec]
    skipped: list[str]
    notes: list[str]
    runs: list[Run]
    results: list[str] = field(default_factory=list)  # Problem 2's number (no figure: one iteration)


def aggregate(label: str, curves: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], runs: list[str],
              ) -> Series:
    """Mean over runs at every x any run reached; band = min-max over runs (several runs) or ± the run's own
    std across evaluation episodes (one run that logged it)."""
    if len(curves) == 1:
        x, y, std = curves[0]
        if std is None:
            return Series(label, x, y, runs=runs)
        return Series(label, x, y, y - std, y + std, runs=runs, spread="± std over evaluation episodes")
    xs = np.unique(np.concatenate([c[0] for c in curves]))
    stacked = np.full((len(curves), len(xs)), np.nan)
    present = np.zeros((len(curves), len(xs)), dtype=int)  # seeds with a point at each x (a NaN value counts)
    for i, (x, y, _) in enumerate(curves):
        stacked[i, np.searchsorted(xs, x)] = y
        present[i, np.searchsorted(xs, x)] = 1
    return Series(label, xs, np.nanmean(stacked, axis=0), np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0),
                  runs=runs, spread=f"min-max over {len(curves)} seeds", count=present.sum(axis=0),
                  members=[(np.asarray(x), np.asarray(y)) for x, y, _ in curves])


def _group_label(group: list[Run]) -> str:
    names = sorted({r.base_name for r in group})
    base = names[0] if len(names) == 1 else " + ".join(names)
    if len(group) == 1:
        return group[0].label if group[0].version not in (None, 0) else group[0].name
    return f"{base} ({len(group)} seeds)"


def _eval_series(label: str, group: list[Run], max_x: float | None = None) -> Series:
    curves = []
    for run in group:
        x, y, std = run.eval_curve()
        if max_x is not None:
            keep = x <= max_x
            x, y, std = x[keep], y[keep], None if std is None else std[keep]
        curves.append((x, y, std))
    return aggregate(label, curves, [r.label for r in group])


def _loss_series(label: str, group: list[Run]) -> Series:
    return aggregate(label, [(*run.series("train/loss"), None) for run in group], [r.label for r in group])


def _finals(series: list[Series], fmt: str = "{:.4g}") -> str:
    parts = [f"{s.label} {fmt.format(s.y[-1])}{s.seeds_at(-1)}" for s in series if len(s.y)]
    return "; ".join(parts)


def _spreads(series: list[Series]) -> str:
    seeds = any(s.spread.startswith("min-max") for s in series)
    episodes = any(s.spread.startswith("±") for s in series)
    thin = (" Thin lines: each seed of a group whose seeds do not share every x (runs still going), named at its "
            "end by its run folder, its mean drawn only where every seed has a point."
            if any(s.partial for s in series) else "")
    if seeds and episodes:
        return (" Shaded: min-max over seeds for lines that average several seeds, ± std over evaluation "
                "episodes for single runs." + thin)
    if seeds:
        return " Lines: mean over seeds; shaded: min-max over seeds." + thin
    if episodes:
        return " Shaded: ± std of the return over evaluation episodes."
    return ""


def _best(series: list[Series]) -> str:
    """The highest final return, where every line ends at the same x with all its seeds (else they differ in data)."""
    finals = [(s.y[-1], s.label) for s in series if len(s.y)]
    if len(finals) < 2 or len({float(s.x[-1]) for s in series if len(s.x)}) > 1 or any(s.unequal for s in series):
        return ""
    return f" Highest final return: {max(finals)[1]}."


class _Builder:
    def __init__(self, runs: list[Run]) -> None:
        self.runs = runs
        self.used: set[str] = set()
        self.figures: list[FigureSpec] = []
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.results: list[str] = []

    def select(self, prefix: str, tag: str = "eval/return") -> list[Run]:
        return [r for r in self.runs if r.name.startswith(prefix) and r.has(tag)]

    def groups(self, runs: list[Run]) -> list[list[Run]]:
        groups, dropped = group_seeds(runs)
        for old, new in dropped:
            note = f"{old.label} is left out: {new.label} re-ran the same config and seed."
            if note not in self.notes:
                self.notes.append(note)
            self.used.add(str(old.path))
        return groups

    def use(self, group: list[Run]) -> None:
        self.used.update(str(p) for r in group for p in (r.merged_paths or [r.path]))

    # -- Problem 1 ---------------------------------------------------------------------------------------
    def problem1(self) -> None:
        runs = self.select("halfcheetah_0_iter", "train/loss")
        if not runs:
            self.skipped.append("Problem 1: no run named halfcheetah_0_iter* logged train/loss.")
            return
        series = []
        for group in self.groups(runs):
            self.use(group)
            series.append(_loss_series(_group_label(group), group))
        envs = sorted({str(r.get("data.init_args.env_id")) for r in runs if r.get("data.init_args.env_id")})
        data = f"random-policy {', '.join(envs)} data" if envs else "random-policy data"
        caption = ("Problem 1: per-gradient-step training loss (MSE of normalised state deltas, mean over ensemble "
                   f"members) of the dynamics model on {data}. Final loss: {_finals(series)}."
                   + _spreads(series))
        self.figures.append(FigureSpec("problem1_model_loss", "Problem 1: dynamics model training loss", caption,
                                       [Panel("halfcheetah_0_iter*", "gradient step", "train/loss (log scale)",
                                              series, logy=True)], "Problem 1"))

    # -- Problem 2 ---------------------------------------------------------------------------------------
    def problem2(self) -> None:
        runs = self.select("obstacles_1_iter")
        if not runs:
            self.skipped.append("Problem 2: no run named obstacles_1_iter* logged eval/return.")
            return
        for group in self.groups(runs):
            self.use(group)
            series = _eval_series(_group_label(group), group)
            text = f"{series.label}: eval return after iteration {series.x[-1]:g} = {series.y[-1]:.4g}"
            if len(group) == 1 and group[0].last("eval/return_std") is not None:
                text += f" ± {group[0].last('eval/return_std'):.3g} (std over evaluation episodes)"
            self.results.append(text + ".")

    # -- Problem 3 ---------------------------------------------------------------------------------------
    def problem3(self) -> None:
        panels = []
        missing = []
        for name in PROBLEM3:
            runs = self.select(name)
            if not runs:
                missing.append(name)
                continue
            series = []
            for group in self.groups(runs):
                self.use(group)
                series.append(_eval_series(_group_label(group), group))
            panels.append(Panel(name, "MBRL iteration", "eval return", series))
        if not panels:
            self.skipped.append("Problem 3: no run named " + ", ".join(f"{n}*" for n in PROBLEM3)
                                + " logged eval/return.")
            return
        if missing:
            self.skipped.append("Problem 3 panels: no eval/return from " + ", ".join(missing) + ".")
        all_series = [s for p in panels for s in p.series]
        caption = ("Problem 3: MPC (random shooting) evaluation return after each MBRL iteration, the model retrained "
                   f"on the growing replay buffer. Final return: {_finals(all_series)}." + _spreads(all_series))
        self.figures.append(FigureSpec("problem3_multi_iter", "Problem 3: MBRL with on-policy data", caption,
                                       panels, "Problem 3"))

    # -- Problem 4 ---------------------------------------------------------------------------------------
    def problem4(self) -> None:
        runs = [r for r in self.select("reacher_ablation") if r.config is not None]
        if not runs:
            self.skipped.append("Problem 4: no run named reacher_ablation* with config.yaml logged eval/return.")
            return
        default_values = self._ablation_defaults(runs)
        named = [r for r in runs if r.base_name == "reacher_ablation"]
        reference = named[0] if named else next(
            (r for r in runs if all(_hashable(r.get(k)) == default_values[n] for n, k, _ in ABLATIONS)), None)
        for name, key, words in ABLATIONS:
            others = [(n, k) for n, k, _ in ABLATIONS if n != name]
            if reference is not None:  # everything but this parameter (and seeds) as in the default run
                chosen = [r for r in runs if (config_diff(r, reference) or set()) <= {key}]
            else:
                chosen = [r for r in runs if all(_hashable(r.get(k)) == default_values[n] for n, k in others)]
            values = sorted({_hashable(r.get(key)) for r in chosen}, key=_sort_key)
            if len(values) < 2:
                self.skipped.append(f"Problem 4 ({words}): no reacher_ablation run varies {name} alone "
                                    "(the other parameters at their defaults).")
                continue
            by_value: dict[Any, list[Run]] = {}
            for run in chosen:
                by_value.setdefault(_hashable(run.get(key)), []).append(run)
            series = []
            for value in values:
                for group in self.groups(by_value[value]):
                    self.use(group)
                    tag = " (default)" if value == default_values[name] else ""
                    label = f"{name}={value}{tag}"
                    if len(group) > 1:
                        label += f", {len(group)} seeds"
                    series.append(_eval_series(label, group))
            fixed = ", ".join(f"{n}={default_values[n]}" for n, _ in others)
            caption = (f"Problem 4: effect of the {words} on the reacher MPC return ({fixed} held at their "
                       f"defaults). Final return: {_finals(series)}." + _best(series) + _spreads(series))
            self.figures.append(FigureSpec(f"problem4_{name}", f"Problem 4: effect of {words}", caption,
                                           [Panel(f"reacher_ablation: {name}", "MBRL iteration", "eval return",
                                                  series)], "Problem 4"))

    def _ablation_defaults(self, runs: list[Run]) -> dict[str, Any]:
        """The run named exactly ``reacher_ablation`` holds the defaults; else each parameter's most common value."""
        named = [r for r in runs if r.base_name == "reacher_ablation"]
        if named:
            return {n: _hashable(named[0].get(k)) for n, k, _ in ABLATIONS}
        defaults = {}
        for n, k, _ in ABLATIONS:
            counts = Counter(_hashable(r.get(k)) for r in runs)
            defaults[n] = counts.most_common(1)[0][0]
        self.notes.append("Problem 4: no run is named exactly reacher_ablation; defaults taken as each parameter's "
                          "most common value: " + ", ".join(f"{n}={v}" for n, v in defaults.items()) + ".")
        return defaults

    # -- Problem 5 ---------------------------------------------------------------------------------------
    def problem5(self) -> None:
        cem_runs = self.select("halfcheetah_cem")
        if not cem_runs:
            self.skipped.append("Problem 5: no run named halfcheetah_cem* logged eval/return.")
            return
        cem_runs += self.select("halfcheetah_icem") + self.select("halfcheetah_mppi")  # beyond the brief, beside
        series = []
        max_x = 0.0
        for group in self.groups(cem_runs):
            self.use(group)
            s = _eval_series(_planner_label(group[0]) + (f", {len(group)} seeds" if len(group) > 1 else ""), group)
            series.append(s)
            max_x = max(max_x, float(s.x.max()) if len(s.x) else 0.0)
        series.sort(key=lambda s: s.label)
        labels = Counter(s.label for s in series)
        for s in series:
            if labels[s.label] > 1:
                s.label += f" [{s.runs[0]}]"
        baseline = self.select("halfcheetah_multi_iter")
        missing = "" if baseline else " (no halfcheetah_multi_iter run for the random-shooting baseline)"
        for group in self.groups(baseline):  # already drawn in Problem 3; here only the first iterations
            series.insert(0, _eval_series(f"random shooting ({_group_label(group)}, first {max_x:g} iterations)",
                                          group, max_x=max_x))
        beyond = ("; iCEM and MPPI runs (beyond the brief) beside them"
                  if any(not r.name.startswith("halfcheetah_cem") for r in cem_runs) else "")
        caption = (f"Problem 5: random shooting vs CEM on the cheetah{missing}{beyond}. "
                   f"Final return: {_finals(series)}."
                   + _best(series) + _spreads(series))
        self.figures.append(FigureSpec("problem5_cem", "Problem 5: random shooting vs CEM", caption,
                                       [Panel("halfcheetah", "MBRL iteration", "eval return", series)], "Problem 5"))

    # -- Problem 6 ---------------------------------------------------------------------------------------
    def problem6(self) -> None:
        series = []
        for prefix, method in PROBLEM6:
            for group in self.groups(self.select(prefix)):
                self.use(group)
                length = _rollout_length(group[0])
                label = method + (f" (rollout length {length})" if length is not None else "")
                name = _group_label(group)
                label += "" if name == prefix else f" [{name}]"
                series.append(_eval_series(label, group))
        if not series:
            self.skipped.append("Problem 6: no run named " + ", ".join(f"{p}*" for p, _ in PROBLEM6)
                                + " logged eval/return.")
            return
        caption = ("Problem 6: SAC trained on real data only vs Dyna-style and MBPO model rollouts added to its "
                   f"replay data. Final return: {_finals(series)}." + _best(series) + _spreads(series))
        self.figures.append(FigureSpec("problem6_mbpo", "Problem 6: SAC vs Dyna vs MBPO", caption,
                                       [Panel("halfcheetah", "iteration", "eval return", series)], "Problem 6"))

    # -- beyond the brief: gymnasium's own tasks ----------------------------------------------------------
    def standard_tasks(self) -> None:
        """One figure per gymnasium task (an env id outside ``mbrl/``): every method's return against the real
        env steps it had collected when evaluated, so PETS, MBPO and SAC compare at equal data."""
        tasks: dict[str, list[Run]] = {}
        for run in self.runs:
            env_id = str(run.get("data.init_args.env_id", ""))
            if env_id and not env_id.startswith("mbrl/") and run.has("eval/return") and run.has("eval/env_steps"):
                tasks.setdefault(env_id, []).append(run)
        for env_id, runs in sorted(tasks.items()):
            series: list[Series] = []
            ours: list[Ours] = []
            for group in self.groups(runs):
                self.use(group)
                curves = []
                for run in group:
                    steps, ret = run.series("eval/return")
                    env_steps = dict(zip(*(a.tolist() for a in run.series("eval/env_steps")), strict=True))
                    std = dict(zip(*(a.tolist() for a in run.series("eval/return_std")), strict=True))
                    keep = [i for i, st in enumerate(steps.tolist()) if st in env_steps]
                    x = np.array([env_steps[steps[i]] for i in keep], dtype=float)
                    spread = (np.array([std[steps[i]] for i in keep]) if all(steps[i] in std for i in keep)
                              else None)
                    curves.append((x, ret[keep], spread))
                method = _method_label(group[0])
                series.append(aggregate(f"{method} [{_group_label(group)}]", curves, [r.label for r in group]))
                ours.append(Ours(method.split(" ")[0], series[-1].label, series[-1].x, series[-1].y,
                                 [series[-1].seeds_at(i) for i in range(len(series[-1].x))]))
            stem = "task_" + "".join(c if c.isalnum() else "_" for c in env_id)
            caption = (f"{env_id}: evaluation return against the real env steps collected so far. Final return: "
                       f"{_finals(series)}." + _best(series) + _spreads(series))
            published = [c for c in published_for(env_id) if c.method in {o.method for o in ours}]
            for curve in published:
                series.append(Series(f"{curve.method}, published ({curve.env_id})", np.asarray(curve.x),
                                     curve.mean, *((np.min(curve.rows, 0), np.max(curve.rows, 0))
                                                   if len(curve.rows) > 1 else (None, None)),
                                     spread=curve.how, style="--"))
            if published:
                caption += (" Dashed: published curves, " + "; ".join(
                    f"{c.method} from {c.source} on {c.env_id} ({c.how})" for c in published) + ". Gap: "
                    + "; ".join(gap_lines(published, ours)) + ".")
            self.figures.append(FigureSpec(stem, f"{env_id}: PETS, MBPO and SAC", caption,
                                           [Panel(env_id, "env steps", "eval return", series)], "Standard tasks"))

    # -- everything else ---------------------------------------------------------------------------------
    def others(self) -> None:
        rest = [r for r in self.runs if str(r.path) not in self.used]
        for group in self.groups(rest):
            label = _group_label(group)
            stem = "run_" + "".join(c if c.isalnum() or c in "-_=." else "_" for c in label)
            if all(r.has("eval/return") for r in group):
                series = [_eval_series(label, group)]
                panel = Panel(label, "MBRL iteration", "eval return", series)
                what = "evaluation return"
            elif all(r.has("train/loss") for r in group):
                series = [_loss_series(label, group)]
                panel = Panel(label, "gradient step", "train/loss (log scale)", series, logy=True)
                what = "training loss"
            else:
                self.skipped.append(f"{label}: logged neither eval/return nor train/loss; no figure.")
                continue
            self.use(group)
            folders = f" ({', '.join(series[0].runs)})" if len(group) > 1 else ""
            caption = (f"Run {label}{folders}: {what} (not one of the brief's "
                       f"named experiments). Final value: {_finals(series)}." + _spreads(series))
            self.figures.append(FigureSpec(stem, f"{label}: {what}", caption, [panel], "Other runs"))


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _planner_label(run: Run) -> str:
    cls = str(run.get(f"{PLANNER}.class_path", "")).rsplit(".", 1)[-1]
    if cls == "CEM":
        return f"CEM, {run.get(f'{PLANNER}.init_args.num_iterations', '?')} iterations"
    names = {"ICEM": "iCEM", "MPPI": "MPPI", "RandomShooting": "random shooting"}
    return f"{names.get(cls, cls) or 'unknown planner'} ({run.base_name})"


def _method_label(run: Run) -> str:
    """PETS (TS-inf, 10 particles) / MPC (RandomShooting) / MBPO (L 1) / SAC: what a standard-task run is."""
    cls = str(run.get("model.class_path", "")).rsplit(".", 1)[-1]
    init = "model.init_args"
    if cls == "MPCAgent":
        prop = run.get(f"{init}.propagation", "mean")
        if prop in ("ts_inf", "ts1"):
            return f"PETS ({'TS-inf' if prop == 'ts_inf' else 'TS1'}, {run.get(f'{init}.num_particles')} particles)"
        return f"MPC ({str(run.get(f'{PLANNER}.class_path', '')).rsplit('.', 1)[-1]})"
    if cls == "MBPO":
        if run.get(f"{init}.rollout_length") == 0 and run.get(f"{init}.rollout_schedule") is None:
            return "SAC"
        schedule = run.get(f"{init}.rollout_schedule")
        length = "->".join(map(str, schedule[2:])) if schedule else str(_rollout_length(run))
        freq = run.get(f"{init}.model_train_freq")  # the authors' schedule: model trained every N env steps
        return f"MBPO (L {length}" + (f", model every {freq} env steps)" if freq else ")")
    return cls or "unknown"


def _rollout_length(run: Run) -> Any:
    """A config value whose key names the model rollout length (``...rollout_length``), if the run has one."""
    for key, value in flatten(run.config or {}).items():
        last = key.rsplit(".", 1)[-1]
        if "rollout" in last and ("length" in last or "horizon" in last):
            return value
    return None


def build_report(runs: list[Run]) -> ReportData:
    """Every figure the runs allow, in the brief's order, then one figure per remaining run group."""
    runs, merged = merge_resumptions(runs)
    b = _Builder(runs)
    b.notes += [f"{old.label} and its resumption from a checkpoint are one run: {new.label}." for old, new in merged]
    b.problem1()
    b.problem2()
    b.problem3()
    b.problem4()
    b.problem5()
    b.problem6()
    b.standard_tasks()
    b.others()
    return ReportData(b.figures, b.skipped, b.notes, runs, b.results)


__all__ = ["ABLATIONS", "FigureSpec", "Panel", "ReportData", "Series", "aggregate", "build_report", "get_dotted"]
