"""``python -m mbrl_lightning report <logdir> [--out DIR]``: every figure of the brief from finished runs.

Runs are folders holding TensorBoard event files (``<save_dir>/<name>/version_N``); scalars are read with
the report's own one-pass event-file reader, experiments are told apart by logger name and ``config.yaml``. The
figures' data come from :func:`build_report` and the tables' from :func:`build_tables`, so tests can check what is
drawn and quoted against what was logged; generated blocks in Markdown pages are rewritten by ``update_blocks``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbrl_lightning.report.figures import FigureSpec, Panel, ReportData, Series, aggregate, build_report
from mbrl_lightning.report.render import draw, final_row, render_markdown, write_markdown
from mbrl_lightning.report.runs import Run, find_run_dirs, group_seeds, load_run, load_runs, read_scalars
from mbrl_lightning.report.tables import Table, build_tables, update_blocks

NO_RUNS_EXIT = 2


class NoRunsError(RuntimeError):
    """The log folder holds no TensorBoard event files."""


class StaleBlockError(RuntimeError):
    """A Markdown page embeds a generated table that the runs no longer give."""


def make_report(logdir: Path, out: Path | None = None, verbose: bool = True, docs: list[Path] | None = None,
                ) -> tuple[ReportData, Path]:
    """Load the runs under ``logdir``, draw every figure into ``out`` (default ``<logdir>/report``), write
    ``report.md`` with the tables, and rewrite the generated blocks that name ``logdir`` in the Markdown pages under
    ``docs``; returns the report data and the Markdown path. Raises ``NoRunsError`` without runs and
    ``StaleBlockError`` when a page's block names a table that the runs do not give."""
    logdir = Path(logdir)
    runs = load_runs(logdir)
    if not runs:
        raise NoRunsError(f"no TensorBoard event files (events.out.tfevents.*) under {logdir}: "
                                "pass the folder your runs log to (e.g. runs/ or runs/sweeps/<name>)")
    out = Path(out) if out is not None else logdir / "report"
    data = build_report(runs)
    out.mkdir(parents=True, exist_ok=True)
    files = {spec.key: draw(spec, out) for spec in data.figures}
    tables = build_tables(data)
    md = write_markdown(data, out, logdir, tables)
    changed, problems = update_blocks(list(docs or []), tables, logdir, out)
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
        for page in changed:
            print(f"tables rewritten in {page}")
    if problems:
        raise StaleBlockError("; ".join(problems))
    return data, md


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the ``report`` command."""
    p = argparse.ArgumentParser(prog="python -m mbrl_lightning report",
                                description="Plot the brief's figures from the TensorBoard event files of finished "
                                            "runs, write report.md with captions and tables, and rewrite the "
                                            "generated tables in README.md and docs/ that name this logdir.")
    p.add_argument("logdir", type=Path, help="folder holding the runs (searched recursively), e.g. runs/")
    p.add_argument("--out", type=Path, default=None, help="output folder (default <logdir>/report)")
    p.add_argument("--docs", type=Path, nargs="*", default=[Path("README.md"), Path("docs")],
                   help="Markdown pages (or folders of them) whose blocks between '<!-- generated:KEY logdir=LOGDIR "
                        "-->' and '<!-- /generated -->' are rewritten with table KEY, where LOGDIR is this logdir "
                        "(relative to the current folder); default: README.md and docs/ (only blocks that name this "
                        "logdir change)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit code (2 when there is nothing to report)."""
    args = build_parser().parse_args(argv)
    if not args.logdir.is_dir():
        print(f"error: {args.logdir} is not a folder", file=sys.stderr)
        return NO_RUNS_EXIT
    try:
        make_report(args.logdir, args.out, docs=args.docs)
    except NoRunsError as err:
        print(f"error: {err}", file=sys.stderr)
        return NO_RUNS_EXIT
    except StaleBlockError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


__all__ = ["NoRunsError", "FigureSpec", "Panel", "ReportData", "Run", "Series", "StaleBlockError", "Table",
           "aggregate", "build_report", "build_tables", "draw", "final_row", "find_run_dirs", "group_seeds", "load_run",
           "load_runs", "main", "make_report", "read_scalars", "render_markdown", "update_blocks", "write_markdown"]
