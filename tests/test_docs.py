"""The README and docs/ quote only numbers the logs give, and name only files a fresh clone has.

The tables between ``<!-- generated:KEY logdir=results -->`` and ``<!-- /generated -->`` in README.md and docs/*.md,
and the whole of docs/report/report.md, must be exactly what ``python -m mbrl_lightning report results --out
docs/report`` writes from the event files in results/: a number typed or left stale in one of them fails here.
Every repository path those pages name in a command or a link must exist in the repository (not ignored by git),
except what a training command on the same page creates (``runs/<name>/...``).
"""

from __future__ import annotations

import difflib
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from mbrl_lightning.report import build_report, build_tables, load_runs, render_markdown
from mbrl_lightning.report.tables import BLOCK, figures_relative, render_blocks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
OUT = ROOT / "docs" / "report"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), RESULTS / "README.md"]


@pytest.fixture(scope="module")
def report():
    data = build_report(load_runs(RESULTS))
    return data, {t.key: t for t in build_tables(data)}


def stale(page: Path, text: str, tables: dict) -> list[str]:
    """What is wrong with the generated blocks of ``text`` (a page at ``page``): a diff per stale block."""
    new, problems = render_blocks(text, page, tables, RESULTS, OUT, root=ROOT)
    if new != text:
        diff = difflib.unified_diff(text.splitlines(), new.splitlines(), "committed", "from the logs", lineterm="", n=0)
        problems.append(f"{page.relative_to(ROOT)}: generated table differs from the logs (rerun `python -m "
                        "mbrl_lightning report results --out docs/report`):\n" + "\n".join(diff))
    return problems


def test_generated_tables_match_the_logs(report):
    _, tables = report
    problems, keys = [], []
    for page in PAGES:
        text = page.read_text()
        keys += [m["key"] for m in BLOCK.finditer(text)]
        problems += stale(page, text, tables)
    assert not problems, "\n\n".join(problems)
    # the README's results table and the docs' tables are all there
    assert {"results", "problem1", "problem3", "problem4", "problem5", "problem6", "standard-tasks", "gap-hopper",
            "brief-wall-time", "speed"} <= set(keys)


def test_report_md_matches_the_logs(report):
    data, tables = report
    committed = (OUT / "report.md").read_text()
    fresh = render_markdown(data, Path("results"), list(tables.values()))
    diff = "\n".join(difflib.unified_diff(committed.splitlines(), fresh.splitlines(), "committed", "from the logs",
                                          lineterm="", n=0))
    assert committed == fresh, "docs/report/report.md differs from the logs:\n" + diff


def test_a_changed_number_in_a_generated_table_is_caught(report):
    """The check above is a real one: one digit changed in the README's results table, or a row dropped from a
    docs table, and it fails."""
    _, tables = report
    readme = ROOT / "README.md"
    text = readme.read_text()
    lines = text.split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith("| 1 | `halfcheetah_0_iter` |"))
    cells = lines[i].split(" | ")
    cells[3] = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), cells[3], count=1)  # "ours": one digit
    changed = "\n".join(lines[:i] + [" | ".join(cells)] + lines[i + 1:])
    assert changed != text
    assert stale(readme, text, tables) == []
    assert stale(readme, changed, tables)
    page = ROOT / "docs" / "results.md"
    text = page.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `halfcheetah_0_iter_wide` |"))
    assert stale(page, text.replace(row + "\n", ""), tables)


def test_readme_is_a_user_guide():
    """At most about 300 lines, with the results table and a figure on its first two screens."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    first = "\n".join(lines[:120])
    assert "<!-- generated:results logdir=results -->" in first and "![" in first
    ci = (ROOT / ".ci" / "run").read_text()
    install, test = 'pip install torch==2.13.0 && pip install -e ".[dev]"', "python -m pytest -q"
    assert f"{install} && {test}" in "\n".join(lines)
    assert test in ci and "pip install -q torch==2.13.0" in ci


# -- paths -----------------------------------------------------------------------------------------------------------
CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def repo_files() -> set[str]:
    """The files a commit of this working tree holds: tracked, or untracked and not ignored (and present)."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return {f for f in out.splitlines() if (ROOT / f).is_file()}


def commands(text: str) -> list[list[str]]:
    """Every line of code (fenced blocks and inline code) as shell words, continuation lines joined."""
    blocks = CODE_BLOCK.findall(text)
    pieces = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    pieces += INLINE.findall(CODE_BLOCK.sub("", text))
    out = []
    for piece in pieces:
        try:
            out.append(shlex.split(piece, comments=True))
        except ValueError:
            out.append(piece.split())
    return out


def _option(words: list[str], name: str) -> str | None:
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def created_paths(words: list[str]) -> tuple[list[str], list[str]]:
    """(prefixes, exact paths) a command creates: a ``fit`` without ``--ckpt_path`` its run folder
    ``<save_dir>/<name>/`` (``version_N/`` when it sets the version), ``--out`` its folder and what is under it, and a
    ``--trainer.logger.init_args.save_dir`` value itself."""
    prefixes, exact = [], []
    save_dir = _option(words, "--trainer.logger.init_args.save_dir")
    if save_dir:
        exact.append(save_dir.rstrip("/"))
    out = _option(words, "--out")
    if out:
        prefixes.append(out.rstrip("/") + "/")
        exact.append(out.rstrip("/"))
    if "fit" in words and _option(words, "--ckpt_path") is None and _option(words, "--config"):
        config = ROOT / _option(words, "--config")
        if config.is_file():
            logger = ((yaml.safe_load(config.read_text()).get("trainer") or {}).get("logger") or {})
            init = logger.get("init_args") or {} if isinstance(logger, dict) else {}
            name = _option(words, "--trainer.logger.init_args.name") or init.get("name", "lightning_logs")
            folder = f"{(save_dir or init.get('save_dir', '.')).rstrip('/')}/{name}/"
            version = _option(words, "--trainer.logger.init_args.version")
            prefixes.append(folder + (f"version_{version}/" if version is not None else ""))
    return prefixes, exact


def named_paths(words: list[str], top: set[str]) -> list[str]:
    """Words (or ``--opt=value`` values) that name a path inside the repository or under runs/."""
    paths = []
    for word in words:
        for piece in word.split("="):
            piece = piece.strip("()[],;:'\"").removeprefix("./")
            if "/" not in piece or "://" in piece or piece.startswith("/") or any(c in piece for c in "<>*{}$~"):
                continue
            if piece.split("/", 1)[0] in top | {"runs"}:
                paths.append(piece)
    return paths


def test_every_path_the_docs_name_exists_in_a_fresh_clone():
    files = repo_files()
    dirs = {parent.as_posix() for f in files for parent in Path(f).parents}
    top = {f.split("/", 1)[0] for f in files if "/" in f}

    def exists(path: str) -> bool:
        path = path.rstrip("/")
        return path in files or path in dirs

    problems = []
    for page in PAGES:
        text = page.read_text()
        rel = page.relative_to(ROOT)
        words = commands(text)
        prefixes, exact = [], []
        for w in words:
            p, e = created_paths(w)
            prefixes += p
            exact += e
        for w in words:
            for path in named_paths(w, top):
                if exists(path) or path.rstrip("/") in exact or any(path.startswith(p) for p in prefixes):
                    continue
                problems.append(f"{rel}: `{path}` is not in the repository and no command on the page creates it")
        for target in LINK.findall(CODE_BLOCK.sub("", text)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            try:
                inside = path.relative_to(ROOT).as_posix()
            except ValueError:
                problems.append(f"{rel}: link {target} leaves the repository")
                continue
            if not exists(inside) and inside != ".":
                problems.append(f"{rel}: link {target} names {inside}, which is not in the repository")
    assert not problems, "\n".join(problems)


def test_the_path_check_is_precise():
    """A checkpoint under results/ is not in a clone; one under runs/ is allowed only after the command that trains
    it."""
    top = {"configs", "results", "docs"}
    resume = shlex.split("python -m mbrl_lightning fit --config configs/mbpo/hopper.yaml "
                         "--ckpt_path runs/mbpo_hopper/version_1/checkpoints/last.ckpt")
    assert named_paths(resume, top) == ["configs/mbpo/hopper.yaml", "runs/mbpo_hopper/version_1/checkpoints/last.ckpt"]
    assert created_paths(resume) == ([], [])  # a resume does not create the run it needs
    train = shlex.split("python -m mbrl_lightning fit --config configs/mbpo/hopper.yaml --seed_everything 1 "
                        "--trainer.logger.init_args.version 1")
    assert created_paths(train) == (["runs/mbpo_hopper/version_1/"], [])
    other = shlex.split("python -m mbrl_lightning fit --config configs/mpc/halfcheetah_cem.yaml "
                        "--trainer.logger.init_args.name halfcheetah_cem_2 --trainer.logger.init_args.save_dir results")
    assert created_paths(other) == (["results/halfcheetah_cem_2/"], ["results"])
    files = repo_files()
    assert "results/halfcheetah_multi_iter/version_0/checkpoints/last.ckpt" not in files


def test_no_checkpoint_is_in_git():
    out = subprocess.run(["git", "ls-files", "*.ckpt"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        pytest.skip("not a git checkout")
    assert out.stdout == ""
    assert "*.ckpt" in (ROOT / ".gitignore").read_text().splitlines()


def test_figure_links_are_relative_to_the_page():
    assert figures_relative(ROOT / "README.md", OUT) == "docs/report/"
    assert figures_relative(ROOT / "docs" / "results.md", OUT) == "report/"
    assert figures_relative(OUT / "report.md", OUT) == ""
