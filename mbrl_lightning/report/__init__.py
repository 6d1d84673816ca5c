"""``python -m mbrl_lightning report <logdir> [--out DIR]``: every figure of the brief from finished runs.

Runs are folders holding TensorBoard event files (``<save_dir>/<name>/version_N``); scalars are read with
TensorBoard's ``EventAccumulator``, experiments are told apart by logger name and ``config.yaml``. The figures'
data come from :func:`build_report`, so tests can check what is drawn against what was logged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbrl_lightning.report.figures import FigureSpec, Panel, ReportData, Series, aggregate, build_report
from mbrl_lightning.report.render import draw, final_row, write_markdown
from mbrl_lightning.report.runs import Run, find_run_dirs, group_seeds, load_run, load_runs, read_scalars

NO_RUNS_EXIT = 2


class NoRunsError(RuntimeError):
    """The log folder holds no TensorBoard event files."""


def make_report(logdir: Path, out: Path | None = None, verbose: bool = True) -> tuple[ReportData, Path]:
    """Load the runs under ``logdir``, draw every figure into ``out`` (default ``<logdir>/report``), write
    ``report.md``; returns the report data and the Markdown path. Raises ``NoRunsError`` without runs."""
    logdir = Path(logdir)
    runs = load_runs(logdir)
    if not runs:
        raise NoRunsError(f"no TensorBoard event files (events.out.tfevents.*) under {logdir}: "
                                "pass the folder your runs log to (e.g. runs/ or runs/sweeps/<name>)")
    out = Path(out) if out is not None else logdir / "report"
    data = build_report(runs)
    out.mkdir(parents=True, exist_ok=True)
    files = {spec.key: draw(spec, out) for spec in data.figures}
    md = write_markdown(data, files, out, logdir)
    if verbose:
        print(f"{len(runs)} runs under {logdir}")
        for spec in data.figures:
            print(f"  {spec.key}: {spec.title}  ({', '.join(str(p) for p in files[spec.key])})")
        for line in data.results:
            print(f"  Problem 2: {line}")
        for line in data.skipped:
            print(f"  skipped: {line}")
        for line in data.notes:
            print(f"  note: {line}")
        print(f"report: {md}")
    return data, md


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the ``report`` command."""
    p = argparse.ArgumentParser(prog="python -m mbrl_lightning report",
                                description="Plot the brief's figures from the TensorBoard event files of finished "
                                            "runs, and write report.md with captions and a table of final returns.")
    p.add_argument("logdir", type=Path, help="folder holding the runs (searched recursively), e.g. runs/")
    p.add_argument("--out", type=Path, default=None, help="output folder (default <logdir>/report)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit code (2 when there is nothing to report)."""
    args = build_parser().parse_args(argv)
    if not args.logdir.is_dir():
        print(f"error: {args.logdir} is not a folder", file=sys.stderr)
        return NO_RUNS_EXIT
    try:
        make_report(args.logdir, args.out)
    except NoRunsError as err:
        print(f"error: {err}", file=sys.stderr)
        return NO_RUNS_EXIT
    return 0


__all__ = ["NoRunsError", "FigureSpec", "Panel", "ReportData", "Run", "Series", "aggregate", "build_report", "draw",
           "final_row", "find_run_dirs", "group_seeds", "load_run", "load_runs", "main", "make_report",
           "read_scalars", "write_markdown"]
