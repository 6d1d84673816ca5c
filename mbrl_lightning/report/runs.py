"""Finished runs on disk: find run folders, read their scalars and ``config.yaml``, group seeds."""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

EVENT_GLOB = "events.out.tfevents.*"
_VERSION = re.compile(r"^version_(\d+)$")
_SEED_SUFFIX = re.compile(r"__seed=[^_]+$")
_MISSING = object()

# keys that differ between seeds of one experiment (or between log folders) but not in what was run
_IGNORED_KEYS = ("trainer.logger.init_args.name", "trainer.logger.init_args.save_dir",
                 "trainer.logger.init_args.version", "trainer.logger.init_args.sub_dir", "ckpt_path",
                 "trainer.default_root_dir", "trainer.enable_progress_bar")


@dataclass
class Run:
    """One run folder: its logger name and version, resolved config (if any) and every scalar series."""

    path: Path
    name: str
    version: int | None
    config: dict[str, Any] | None
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    merged_versions: list[int | None] | None = None  # set when a resumed run was merged into this one
    merged_paths: list[Path] | None = None
    wall_seconds: float = 0.0  # summed over the run's event files (each a segment: the first run, resumptions)
    start_time: float | None = None  # wall time of the run's first event (Unix seconds)

    @property
    def label(self) -> str:
        """``name/version_N`` (or just the name when the folder is not a ``version_N`` one)."""
        if self.merged_versions:
            return f"{self.name}/version_" + "+".join(str(v) for v in self.merged_versions)
        return self.name if self.version is None else f"{self.name}/version_{self.version}"

    @property
    def base_name(self) -> str:
        """The logger name without a sweep's ``__seed=N`` suffix."""
        return _SEED_SUFFIX.sub("", self.name)

    def has(self, tag: str) -> bool:
        """Whether the run logged ``tag`` at least once."""
        return tag in self.scalars and len(self.scalars[tag][0]) > 0

    def series(self, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a scalar, one value per step (the last one written at a repeated step)."""
        return self.scalars.get(tag, (np.zeros(0, dtype=np.int64), np.zeros(0)))

    def get(self, key: str, default: Any = None) -> Any:
        """A dotted key of ``config.yaml`` (``model.init_args.ensemble_size``), or ``default``."""
        return get_dotted(self.config, key, default)

    def eval_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(iteration, eval return, eval return std across episodes or None).

        The iteration is the logged ``eval/iteration`` at the same step; runs that do not log it use 1, 2, ...
        """
        steps, ret = self.series("eval/return")
        it_steps, its = self.series("eval/iteration")
        by_step = dict(zip(it_steps.tolist(), its.tolist(), strict=True))
        if len(steps) and all(s in by_step for s in steps.tolist()):
            x = np.array([by_step[s] for s in steps.tolist()], dtype=float)
        else:
            x = np.arange(1, len(ret) + 1, dtype=float)
        std_steps, std = self.series("eval/return_std")
        std_by_step = dict(zip(std_steps.tolist(), std.tolist(), strict=True))
        spread = (np.array([std_by_step[s] for s in steps.tolist()])
                  if len(steps) and all(s in std_by_step for s in steps.tolist()) else None)
        return x, ret, spread

    def last(self, tag: str) -> float | None:
        """The last logged value of ``tag`` (None if never logged)."""
        _, values = self.series(tag)
        return float(values[-1]) if len(values) else None


def get_dotted(tree: Any, key: str, default: Any = None) -> Any:
    """The value at a dotted key of a nested config (list items by index), or ``default`` where the path stops."""
    node = tree
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists as ``{"a.b.0.c": leaf}``."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    if not out and prefix:
        out[prefix] = tree  # keep empty containers
    return out


def find_run_dirs(logdir: Path) -> list[Path]:
    """Every folder under ``logdir`` (itself included) that directly holds a TensorBoard event file."""
    logdir = Path(logdir)
    if not logdir.is_dir():
        return []
    dirs = {p.parent for p in logdir.rglob(EVENT_GLOB) if p.is_file()}
    return sorted(dirs)


def _run_identity(path: Path) -> tuple[str, int | None]:
    match = _VERSION.match(path.name)
    if match:
        return path.parent.name, int(match.group(1))
    return path.name, None


def _records(path: Path) -> Iterator[bytes]:
    """The records of a TFRecord file (TensorBoard's event file): each an 8-byte little-endian length, its 4-byte
    CRC, the data and its 4-byte CRC. Read in one pass without checking the CRCs; a record cut short at the end (a
    run killed while writing) is left out."""
    data = Path(path).read_bytes()
    pos, end = 0, len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack_from("<Q", data, pos)
        start = pos + 12
        if start + length + 4 > end:
            return
        yield data[start:start + length]
        pos = start + length + 4


def _scalar_value(value: Any) -> float | None:
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
        tensor = value.tensor
        for field_name in ("float_val", "double_val"):
            vals = getattr(tensor, field_name)
            if len(vals) == 1:
                return float(vals[0])
        if tensor.tensor_content:
            dtype = {1: "<f4", 2: "<f8"}.get(tensor.dtype)
            if dtype is not None:
                return float(np.frombuffer(tensor.tensor_content, dtype=dtype)[0])
    return None


def read_events(run_dir: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float, float | None]:
    """All scalars of the event files in ``run_dir`` (no subsampling), sorted by step, one value per step (files in
    name order, so a resumed run's later value wins); the logged wall time: for each event file (one per start
    or resumption), last minus first event time, summed; and the time of the first event (None without events)."""
    from tensorboard.compat.proto import event_pb2

    by_tag: dict[str, dict[int, float]] = {}
    total, start = 0.0, None
    for path in sorted(Path(run_dir).glob(EVENT_GLOB)):
        first = last = None
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            first = event.wall_time if first is None else min(first, event.wall_time)
            last = event.wall_time if last is None else max(last, event.wall_time)
            for value in event.summary.value:
                scalar = _scalar_value(value)
                if scalar is not None:
                    by_tag.setdefault(value.tag, {})[int(event.step)] = scalar
        if first is not None:
            total += last - first
            start = first if start is None else min(start, first)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for tag, by_step in by_tag.items():
        steps = np.array(sorted(by_step), dtype=np.int64)
        out[tag] = (steps, np.array([by_step[s] for s in steps.tolist()], dtype=float))
    return out, total, start


def read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalars of the event files in ``run_dir`` (no subsampling), sorted by step, one value per step."""
    return read_events(run_dir)[0]


def read_wall_seconds(run_dir: Path) -> float:
    """Logged wall time: for each event file (one per start or resumption), last minus first event time."""
    return read_events(run_dir)[1]


def load_run(run_dir: Path) -> Run:
    """Read one run folder (scalars, and ``config.yaml`` when LightningCLI wrote one)."""
    run_dir = Path(run_dir)
    name, version = _run_identity(run_dir)
    config = None
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        with open(cfg_path) as f:
            loaded = yaml.safe_load(f)
        config = loaded if isinstance(loaded, dict) else None
    scalars, wall_seconds, start_time = read_events(run_dir)
    return Run(path=run_dir, name=name, version=version, config=config, scalars=scalars, wall_seconds=wall_seconds,
               start_time=start_time)


def load_runs(logdir: Path) -> list[Run]:
    """Every run under ``logdir``, sorted by name and version."""
    runs = [load_run(d) for d in find_run_dirs(logdir)]
    return sorted(runs, key=lambda r: (r.name, -1 if r.version is None else r.version, str(r.path)))


def _is_seed_key(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return last in ("seed", "seed_everything")


@functools.cache
def _class_defaults(class_path: str) -> dict[str, Any]:
    """The ``__init__`` defaults of a config's ``class_path`` (none if it cannot be imported)."""
    module, _, name = class_path.rpartition(".")
    try:
        signature = inspect.signature(getattr(importlib.import_module(module), name).__init__)
    except (ImportError, AttributeError, TypeError, ValueError):
        return {}
    return {p.name: p.default for p in signature.parameters.values() if p.default is not inspect.Parameter.empty}


def _at_class_default(key: str, value: Any, flat: dict[str, Any]) -> bool:
    """``<obj>.init_args.<name>`` holding its class's default: newer code writes such keys into config.yaml
    where an older run's config has none, and the run is the same."""
    prefix, sep, name = key.rpartition(".init_args.")
    class_path = flat.get(prefix + ".class_path")
    if not sep or "." in name or not isinstance(class_path, str):
        return False
    defaults = _class_defaults(class_path)
    return name in defaults and type(defaults[name]) is type(value) and defaults[name] == value


def experiment_config(run: Run) -> dict[str, Any] | None:
    """The run's flattened config without seeds, log location and arguments at their class's default
    (None without ``config.yaml``)."""
    if run.config is None:
        return None
    flat = flatten(run.config)
    return {k: v for k, v in flat.items()
            if not _is_seed_key(k) and not any(k == i or k.startswith(i + ".") for i in _IGNORED_KEYS)
            and not _at_class_default(k, v, flat)}


def config_diff(a: Run, b: Run) -> set[str] | None:
    """Dotted config keys whose values differ between two runs (seeds and log location aside); None if a run
    has no ``config.yaml``."""
    fa, fb = experiment_config(a), experiment_config(b)
    if fa is None or fb is None:
        return None
    return {k for k in fa.keys() | fb.keys() if fa.get(k, _MISSING) != fb.get(k, _MISSING)}


def experiment_key(run: Run) -> str:
    """What a run ran, without its seeds and log location: runs with equal keys are seeds of one experiment.

    From ``config.yaml`` (every key except seeds, logger name/save dir/version); runs without a config fall
    back to their logger name without the ``__seed=N`` suffix.
    """
    flat = experiment_config(run)
    if flat is None:
        return "name:" + run.base_name
    return json.dumps(flat, sort_keys=True, default=str)


def seed_of(run: Run) -> Any:
    """The run's seed: ``seed_everything`` from its config, else its logger name (``..__seed=1``)."""
    return run.get("seed_everything") if run.config is not None else run.name


def _recency(run: Run) -> tuple[int, int]:
    return (-1 if run.version is None else run.version, len(run.series("eval/return")[0]))


def merge_resumed(first: Run, resumed: Run) -> Run:
    """One run from a run and its resumption (``--ckpt_path``) logged to a new version: the scalars of both,
    the resumed run's value where both logged the same step."""
    scalars = dict(first.scalars)
    for tag, (steps, values) in resumed.scalars.items():
        if tag in scalars:
            by_step = dict(zip(*(a.tolist() for a in scalars[tag]), strict=True))
            by_step.update(zip(steps.tolist(), values.tolist(), strict=True))
            order = sorted(by_step)
            scalars[tag] = (np.array(order, dtype=np.int64), np.array([by_step[k] for k in order], dtype=float))
        else:
            scalars[tag] = (steps, values)
    versions = [*(first.merged_versions or [first.version]), resumed.version]
    return Run(resumed.path, resumed.name, resumed.version, resumed.config, scalars,
               merged_versions=versions, merged_paths=[*(first.merged_paths or [first.path]), resumed.path],
               wall_seconds=first.wall_seconds + resumed.wall_seconds, start_time=first.start_time)


def _resumed_from(run: Run, runs: list[Run]) -> Run | None:
    """The run whose checkpoint ``run`` was resumed from (``ckpt_path`` inside ``<name>/version_N/``), if loaded.

    The source must have started before ``run``: a run folder renamed after its resumptions (its ``ckpt_path``
    names its old folder) must not take a later run that now logs in that folder as its source."""
    ckpt = run.get("ckpt_path")
    if not ckpt:
        return None
    parts = Path(str(ckpt)).parts
    for other in runs:
        if other is run or other.version is None:
            continue
        if other.start_time is not None and run.start_time is not None and other.start_time >= run.start_time:
            continue
        tail = (other.name, f"version_{other.version}")
        if any(parts[i:i + 2] == tail for i in range(len(parts) - 1)):
            return other
    return None


def merge_resumptions(runs: list[Run]) -> tuple[list[Run], list[tuple[Run, Run]]]:
    """Runs with every resumption (a run whose ``ckpt_path`` lies in another loaded run's folder) merged into
    the run it continues. Returns the runs and the ``(original, merged)`` pairs."""
    by_path = {r.path: r for r in runs}
    merged: list[tuple[Run, Run]] = []
    for run in sorted(runs, key=_recency):
        source = _resumed_from(run, list(by_path.values()))
        if source is None or run.path not in by_path:
            continue
        combined = merge_resumed(source, run)
        del by_path[source.path]
        by_path[run.path] = combined
        merged.append((source, combined))
    return [r for r in by_path.values()], merged


def group_seeds(runs: list[Run]) -> tuple[list[list[Run]], list[tuple[Run, Run]]]:
    """Runs split into groups that share everything but the seed, in the order of their first run.

    Two runs of one group with the same seed are a re-run: only the later version (the one with more eval
    points on a tie) is kept. Returns the groups and the ``(left out, kept)`` pairs.
    """
    groups: dict[str, dict[Any, Run]] = {}
    dropped: list[tuple[Run, Run]] = []
    for run in runs:
        by_seed = groups.setdefault(experiment_key(run), {})
        seed = json.dumps(seed_of(run), default=str)
        old = by_seed.get(seed)
        if old is None:
            by_seed[seed] = run
            continue
        later, earlier = (run, old) if _recency(run) >= _recency(old) else (old, run)
        by_seed[seed] = later
        dropped.append((earlier, later))
    return [list(g.values()) for g in groups.values()], dropped
