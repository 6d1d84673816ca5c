"""``python -m mbrl_lightning sweep``: run variants of one config side by side (grids, one-at-a-time ablations, seeds).

Example (the brief's Problem 4 ablation: the default run plus each value of each parameter on its own)::

    python -m mbrl_lightning sweep --config configs/mpc/reacher_ablation.yaml \\
        --grid model.init_args.ensemble_size=1,5 \\
        --grid model.init_args.planner.init_args.num_sequences=500,2000 \\
        --grid model.init_args.planner.init_args.horizon=5,20 [--seeds 0,1] [--dry-run] [-- --trainer.max_epochs 3]

Each variant's YAML is written to ``<root>/<sweep>/configs/<run>.yaml`` with the logger pointed at
``<root>/<sweep>/<run>``, and run in turn as ``python -m mbrl_lightning fit --config <run>.yaml``. Keys missing
from the YAML that LightningCLI still accepts (a parameter of the class at that place) go on the command line.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOP_LEVEL_ARGUMENTS = ("seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler", "ckpt_path",
                       "weights_only")
DEFAULT_LOGGER = "pytorch_lightning.loggers.TensorBoardLogger"
_MISSING = object()  # get_dotted: raise KeyError
_ABSENT = object()


class SweepError(ValueError):
    """A bad grid or key; the message names it."""


@dataclass
class Variant:
    """One run of the sweep: its name, what it changes, its YAML and command."""

    name: str
    changes: dict[str, Any]
    config: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    config_path: Path | None = None
    command: list[str] = field(default_factory=list)


@dataclass
class Result:
    """How one variant's run ended."""

    name: str
    returncode: int
    seconds: float
    final_return: float | None
    run_dir: Path | None


# -- values and keys --------------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A grid value as YAML reads it (``5`` -> int, ``true`` -> bool), with ``1e-3`` read as a float too."""
    value = yaml.safe_load(text) if text.strip() else text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_grid(spec: str) -> tuple[str, list[Any]]:
    """``key=v1,v2,...`` -> (key, [v1, v2, ...])."""
    key, sep, values = spec.partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key or not values.strip():
        raise SweepError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. model.init_args.ensemble_size=1,5)")
    parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if len(set(map(_fmt_value, parsed))) != len(parsed):
        raise SweepError(f"--grid {spec!r}: repeated value")
    return key, parsed


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise SweepError(f"--seeds {text!r}: expected integers like 0,1,2") from err


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _name_value(value: Any) -> str:
    text = _fmt_value(value)
    return "".join(c if c.isalnum() or c in "-.+" else "-" for c in text).strip("-") or "none"


def short_labels(keys: list[str]) -> dict[str, str]:
    """The shortest tail of each dotted key (``init_args`` left out) that tells the keys apart."""
    parts = {k: [p for p in k.split(".") if p != "init_args"] or [k] for k in keys}
    labels = {}
    for key, comps in parts.items():
        for n in range(1, len(comps) + 1):
            tail = comps[-n:]
            clash = [o for o, oc in parts.items() if o != key and oc[-n:] == tail]
            if not clash:
                break
        labels[key] = ".".join(tail)
    return labels


def get_dotted(tree: Any, key: str, default: Any = _MISSING) -> Any:
    """The value at a dotted key (list items by index); ``default`` (or KeyError) where the path stops."""
    node = tree
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            if default is _MISSING:
                raise KeyError(key)
            return default
    return node


def _missing_at(tree: Any, parts: list[str]) -> int:
    """Index of the first component of ``parts`` that is not in ``tree`` (``len(parts)`` if all are)."""
    node = tree
    for i, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return i
    return len(parts)


def _init_params(class_path: str) -> set[str] | None:
    """Parameter names of a class's ``__init__`` (through ``**kwargs`` to the bases); None if not importable."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None
    params: set[str] = set()
    for klass in inspect.getmro(cls):
        if "__init__" not in vars(klass):
            continue
        sig = inspect.signature(klass.__init__)
        params |= {p.name for p in sig.parameters.values()
                   if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return params


def known_argument(config: dict[str, Any], key: str) -> bool:
    """Whether LightningCLI accepts ``key`` although the YAML lacks it: the first missing component is a
    parameter of the class configured there (``trainer.*`` -> ``Trainer``, ``.../init_args/x`` -> class_path's
    class), or a top-level LightningCLI argument."""
    parts = key.split(".")
    m = _missing_at(config, parts)
    if m == len(parts):
        return True
    if m == 0:
        return parts[0] in TOP_LEVEL_ARGUMENTS
    parent = get_dotted(config, ".".join(parts[:m]))
    name = parts[m]
    if parts[:m] == ["trainer"]:
        allowed = _init_params("pytorch_lightning.Trainer")
    elif isinstance(parent, dict) and "class_path" in parent and name == "init_args":
        if m + 1 == len(parts):
            return False
        allowed, name = _init_params(str(parent["class_path"])), parts[m + 1]
    elif m >= 2 and parts[m - 1] == "init_args":
        owner = get_dotted(config, ".".join(parts[:m - 1]))
        if not (isinstance(owner, dict) and "class_path" in owner):
            return False
        allowed = _init_params(str(owner["class_path"]))
    else:
        return False
    return allowed is not None and name in allowed


def set_dotted(config: dict[str, Any], key: str, value: Any) -> bool:
    """Set ``key`` in the nested config. Returns False (config untouched) where the YAML lacks the path but
    LightningCLI accepts it (pass it on the command line); raises SweepError naming the key otherwise."""
    parts = key.split(".")
    m = _missing_at(config, parts)
    if m < len(parts):
        if known_argument(config, key):
            return False
        where = ".".join(parts[:m]) or "the top level"
        node = get_dotted(config, ".".join(parts[:m])) if m else config
        have = sorted(map(str, node)) if isinstance(node, dict) else []
        hint = f" (keys there: {', '.join(have)})" if have else ""
        raise SweepError(f"unknown config key {key!r}: {parts[m]!r} is not under {where}{hint}, "
                         "nor an argument LightningCLI accepts there")
    node: Any = config
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value
    return True


def set_logger(config: dict[str, Any], save_dir: str, name: str) -> None:
    """Point the run's TensorBoard logger at ``save_dir/name`` (adding one if the config has none)."""
    trainer = config.setdefault("trainer", {})
    logger = trainer.get("logger")
    loggers = logger if isinstance(logger, list) else [logger]
    found = False
    for item in loggers:
        if isinstance(item, dict) and str(item.get("class_path", "")).endswith("TensorBoardLogger"):
            item["init_args"] = {**(item.get("init_args") or {}), "save_dir": save_dir, "name": name}
            found = True
    if not found:  # no TensorBoard logger (or logger: false): add one, the report reads its event files
        tb = {"class_path": DEFAULT_LOGGER, "init_args": {"save_dir": save_dir, "name": name}}
        kept = [item for item in loggers if isinstance(item, dict)]
        trainer["logger"] = [*kept, tb] if kept else tb


# -- planning the variants --------------------------------------------------------------------------------------
def plan_changes(config: dict[str, Any], grids: list[tuple[str, list[Any]]], mode: str,
                 ) -> list[dict[str, Any]]:
    """The sets of changes, one per variant (before seeds).

    ``product``: every combination. ``one-at-a-time``: the unchanged config first, then each value of each
    grid on its own, the others at the YAML's values (a value equal to the YAML's is the default run itself).
    """
    keys = [k for k, _ in grids]
    if len(set(keys)) != len(keys):
        raise SweepError("the same key is given to --grid twice: " + ", ".join(k for k in keys if keys.count(k) > 1))
    if mode == "product":
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in grids))]
    if mode != "one-at-a-time":
        raise SweepError(f"--mode {mode!r}: expected product or one-at-a-time")
    variants: list[dict[str, Any]] = [{}]
    for key, values in grids:
        default = get_dotted(config, key, _ABSENT)
        variants += [{key: v} for v in values if default is _ABSENT or _fmt_value(v) != _fmt_value(default)]
    return variants


def _cli_value(value: Any) -> str:
    return value if isinstance(value, str) else _fmt_value(value)


def plan_sweep(config_path: Path, grids: list[tuple[str, list[Any]]], mode: str = "one-at-a-time",
               seeds: list[int] | None = None, root: Path = Path("runs/sweeps"), name: str | None = None,
               extra_args: list[str] | None = None) -> list[Variant]:
    """Every variant with its name, YAML (not yet written) and command."""
    with open(config_path) as f:
        base = yaml.safe_load(f)
    if not isinstance(base, dict):
        raise SweepError(f"{config_path}: not a YAML mapping")
    if seeds and any(k == "seed_everything" for k, _ in grids):
        raise SweepError("give seeds either with --seeds or with --grid seed_everything=..., not both")
    sweep = name or Path(config_path).stem
    labels = short_labels([k for k, _ in grids] + (["seed_everything"] if seeds else []))
    labels["seed_everything"] = "seed"
    save_dir = str(Path(root) / sweep)
    variants = []
    for changes in plan_changes(base, grids, mode):
        for seed in (seeds or [None]):
            full = dict(changes) if seed is None else {**changes, "seed_everything": seed}
            run_name = "__".join([sweep] + [f"{labels[k]}={_name_value(v)}" for k, v in full.items()])
            config = copy.deepcopy(base)
            overrides = []
            for key, value in full.items():
                if not set_dotted(config, key, value):
                    overrides.append(f"--{key}={_cli_value(value)}")
            set_logger(config, save_dir, run_name)
            path = Path(root) / sweep / "configs" / f"{run_name}.yaml"
            command = [sys.executable, "-m", "mbrl_lightning", "fit", "--config", str(path), *overrides,
                       *(extra_args or [])]
            variants.append(Variant(run_name, full, config, overrides, path, command))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise SweepError("two variants got the same name: " + ", ".join(sorted({n for n in names
                                                                                if names.count(n) > 1})))
    return variants


def write_config(variant: Variant, source: Path) -> Path:
    """Write the variant's YAML (with a header saying where it came from)."""
    assert variant.config_path is not None
    variant.config_path.parent.mkdir(parents=True, exist_ok=True)
    changed = ", ".join(f"{k}={_fmt_value(v)}" for k, v in variant.changes.items()) or "nothing (the default)"
    header = (f"# generated by `python -m mbrl_lightning sweep` from {source}\n# changed: {changed}\n"
              + (f"# command-line overrides: {' '.join(variant.overrides)}\n" if variant.overrides else ""))
    variant.config_path.write_text(header + yaml.safe_dump(variant.config, sort_keys=False))
    return variant.config_path


# -- running ----------------------------------------------------------------------------------------------------
def _versions(folder: Path) -> set[Path]:
    return {p for p in folder.glob("version_*") if p.is_dir()} if folder.is_dir() else set()


def final_return(run_dir: Path | None) -> float | None:
    """The last ``eval/return`` in the run folder's event files (None if it has none)."""
    if run_dir is None or not any(run_dir.glob("events.out.tfevents.*")):
        return None
    from mbrl_lightning.report.runs import read_scalars

    values = read_scalars(run_dir).get("eval/return")
    return float(values[1][-1]) if values is not None and len(values[1]) else None


def run_variant(variant: Variant, save_dir: Path, log_dir: Path) -> Result:
    """Run one variant in a subprocess, its output shown and kept in ``log_dir/<name>.log``."""
    run_folder = save_dir / variant.name
    before = _versions(run_folder)
    log_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_dir / f"{variant.name}.log", "wb") as log:
        proc = subprocess.Popen(variant.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read1(65536):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                log.write(chunk)
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
    seconds = time.perf_counter() - start
    new = sorted(_versions(run_folder) - before, key=lambda p: int(p.name.split("_")[-1]))
    run_dir = new[-1] if new else None
    return Result(variant.name, code, seconds, final_return(run_dir), run_dir)


def format_summary(results: list[Result]) -> str:
    """A table: run, exit code, wall time, final eval/return."""
    rows = [("run", "exit", "wall time", "final eval/return")]
    for r in results:
        ret = "—" if r.final_return is None else f"{r.final_return:.4g}"
        rows.append((r.name, str(r.returncode), f"{r.seconds:.1f} s", ret))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                     strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = [r.name for r in results if r.returncode != 0]
    lines.append(f"{len(results) - len(failed)}/{len(results)} runs succeeded"
                 + (f"; failed: {', '.join(failed)}" if failed else ""))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the ``sweep`` command (LightningCLI arguments for every run go after ``--``)."""
    p = argparse.ArgumentParser(
        prog="python -m mbrl_lightning sweep",
        description="Run variants of one config in sequence, each logged to <root>/<sweep>/<run name>.",
        epilog="Arguments after -- are passed to every `python -m mbrl_lightning fit` call.")
    p.add_argument("--config", type=Path, required=True, help="the base YAML (e.g. configs/mpc/reacher_ablation.yaml)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="dotted config key and its values; repeat for several keys")
    p.add_argument("--mode", choices=("product", "one-at-a-time"), default=None,
                   help="one-at-a-time (default for several --grid): the default run plus each value alone; "
                        "product (default for one --grid): every combination")
    p.add_argument("--seeds", type=str, default=None, help="comma-separated seed_everything values, e.g. 0,1")
    p.add_argument("--root", type=Path, default=Path("runs/sweeps"), help="where sweeps go (default runs/sweeps)")
    p.add_argument("--name", default=None, help="sweep name (default: the config file's name)")
    p.add_argument("--dry-run", action="store_true", help="write the variant YAMLs and print the commands only")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit code (1 if any run failed, 2 for a bad grid or key)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    try:
        grids = [parse_grid(g) for g in args.grid]
        if not grids and not args.seeds:
            raise SweepError("nothing to sweep: give at least one --grid KEY=V1,V2 or --seeds")
        mode = args.mode or ("one-at-a-time" if len(grids) > 1 else "product")
        seeds = parse_seeds(args.seeds) if args.seeds else None
        if not args.config.is_file():
            raise SweepError(f"--config {args.config}: no such file")
        variants = plan_sweep(args.config, grids, mode, seeds, args.root, args.name, extra)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sweep_dir = args.root / (args.name or args.config.stem)
    for v in variants:
        write_config(v, args.config)
    print(f"sweep {sweep_dir.name}: {len(variants)} runs ({mode}{', seeds ' + args.seeds if seeds else ''}), "
          f"logs in {sweep_dir}")
    if args.dry_run:
        for v in variants:
            print(shlex.join(v.command))
        return 0
    results: list[Result] = []
    try:
        for i, v in enumerate(variants, start=1):
            print(f"\n=== [{i}/{len(variants)}] {v.name}\n$ {shlex.join(v.command)}", flush=True)
            result = run_variant(v, sweep_dir, sweep_dir / "logs")
            if result.returncode != 0:
                print(f"=== {v.name} FAILED (exit code {result.returncode}); see {sweep_dir / 'logs' / v.name}.log",
                      flush=True)
            results.append(result)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        print(format_summary(results))
        return 130
    print("\n" + format_summary(results))
    return 1 if any(r.returncode != 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
