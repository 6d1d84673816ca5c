"""Checkpoints that survive a kill during their save, and that fail, when broken, with a message naming the file.

Lightning's ``TorchCheckpointIO`` serialises the checkpoint in memory and hands it to fsspec, whose local
"transaction" writes a temporary file in the system temp folder and then ``shutil.move``\\ s it over the target:
nothing is fsync'ed, and where the temp folder and the run folder lie on different filesystems (a tmpfs ``/tmp``
and a cluster's shared disk) the move is a copy, so a kill during it leaves a truncated ``last.ckpt`` in place of
the good one. ``AtomicCheckpointIO`` writes the new file next to the target, fsyncs it and renames it over the
target (``os.replace``, atomic within one folder): at every moment the target is the old file or the new one.

``check_checkpoint`` reads a checkpoint's zip directory and pickled header (memory-mapped: the tensors are not
read) before LightningCLI loads it, and turns a truncated, foreign or other-env checkpoint into a
``CheckpointError`` that says which file, what is wrong with it, and which checkpoint of the same folder loads.
``find_last_checkpoint`` is what ``--ckpt_path last`` resolves to.
"""

from __future__ import annotations

import importlib
import os
import pickle
import uuid
import zipfile
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins import TorchCheckpointIO

PARTIAL_SUFFIX = ".partial"
"""Suffix of a checkpoint being written; a ``.*.partial`` file left in a checkpoint folder is a save that a kill
interrupted (the checkpoint it was replacing is intact) and can be deleted."""

LIGHTNING_KEYS = ("state_dict", "epoch", "global_step", "pytorch-lightning_version")
"""Top-level keys every checkpoint written by ``Trainer.save_checkpoint`` holds."""


class CheckpointError(ValueError):
    """A checkpoint given to ``--ckpt_path`` that cannot be resumed; the message names the file and what to do."""


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: _PATH) -> None:
    """``torch.save(obj, path)`` such that ``path`` is at every moment its old content or the complete new one.

    Writes ``.<random>.partial`` in the same folder, flushes and fsyncs it, renames it over ``path`` and fsyncs
    the folder. An exception during the save removes the temporary file; a kill leaves it behind (harmless).
    """
    path = Path(path)
    _commit(_write_partial(obj, path), path)


def _write_partial(obj: Any, path: Path) -> Path:
    """``torch.save(obj)`` into a new, fsynced ``.<random>.partial`` file beside ``path``; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # no "last" in the name: Lightning's own ckpt_path="last" takes any file of the folder whose name contains it
    tmp = path.parent / f".{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode 0o666 & ~umask, as open() gives
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _commit(tmp: Path, path: Path) -> None:
    """Rename a written ``.partial`` file over ``path`` (atomic within a folder) and make the rename durable."""
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with local saves made atomic and durable (``atomic_torch_save``): a kill,
    a crash or a full disk during a save leaves the previous checkpoint file usable.

    ``MBRLCLI`` installs it in every run whose strategy uses the default ``TorchCheckpointIO``; pass it as
    ``Trainer(plugins=[AtomicCheckpointIO()])`` in a script of your own. Remote paths (``s3://``, ...) are saved by
    the parent class; loading and removal are the parent's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.defer = False
        self.pending: dict[Path, Path] = {}  # target -> its written, not yet renamed .partial file

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Save ``checkpoint`` to ``path`` through a temporary file in the same folder (see the class docstring).

        While ``defer`` is set the written file waits, complete and fsynced, for ``commit()`` (``CheckpointOnSignal``
        sets it during training: a checkpoint then takes the place of the old one only once everything logged up
        to it is on disk)."""
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        tmp = _write_partial(checkpoint, path)
        if not self.defer:
            _commit(tmp, path)
            return
        older = self.pending.pop(path, None)
        if older is not None:  # saved twice before a commit: the newer save wins
            older.unlink(missing_ok=True)
        self.pending[path] = tmp

    def commit(self) -> list[Path]:
        """Rename every deferred save over its target (in the order saved); returns the targets."""
        done = []
        while self.pending:
            path, tmp = next(iter(self.pending.items()))
            del self.pending[path]
            _commit(tmp, path)
            done.append(path)
        return done

    def remove_checkpoint(self, path: _PATH) -> None:
        """Remove a checkpoint, and its deferred save if one waits (ModelCheckpoint's top-k removes old files)."""
        tmp = self.pending.pop(Path(path), None)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        super().remove_checkpoint(path)


def install_atomic_checkpoint_io(trainer: Any) -> bool:
    """Give ``trainer``'s strategy an ``AtomicCheckpointIO`` where it uses Lightning's default ``TorchCheckpointIO``
    (a checkpoint IO the user chose, e.g. an async or cloud one, is kept); returns whether it was installed."""
    strategy = trainer.strategy
    if type(getattr(strategy, "checkpoint_io", None)) is not TorchCheckpointIO:
        return False
    strategy.checkpoint_io = AtomicCheckpointIO()
    return True


def find_last_checkpoint(root: _PATH, version: int | str | None = None) -> Path | None:
    """``<root>/version_N/checkpoints/last.ckpt`` of the highest ``N`` that has one (``version`` given: of that
    version only), where ``root`` is a logger's ``<save_dir>/<name>``; ``None`` when there is none."""
    root = Path(root)
    if version is not None:
        folder = root / (version if isinstance(version, str) else f"version_{version}")
        last = folder / "checkpoints" / "last.ckpt"
        return last if last.is_file() else None
    found: list[tuple[int, Path]] = []
    for folder in root.glob("version_*") if root.is_dir() else []:
        number = folder.name.removeprefix("version_")
        last = folder / "checkpoints" / "last.ckpt"
        if number.isdigit() and last.is_file():
            found.append((int(number), last))
    return max(found)[1] if found else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def inspect_checkpoint(path: _PATH) -> tuple[str | None, dict[str, Any] | None]:
    """(what is wrong with the file, or ``None``; its contents, tensors memory-mapped, when it is a readable
    Lightning checkpoint). Reads only the zip directory and the pickled header, so it is cheap for large files."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): its save was cut off", None
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        return "is not a PyTorch checkpoint (torch.save writes a zip archive; this file is not one)", None
    if not zipfile.is_zipfile(path):
        return (f"is truncated ({size} bytes; the end of its zip archive is missing): its save was cut off, "
                "e.g. by a kill or a full disk"), None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        return ("holds objects that torch's weights_only loading refuses, so it is no checkpoint of this package "
                f"({_first_line(err)})"), None
    except Exception as err:  # a damaged archive: torch names the record it could not read
        return f"cannot be read by torch.load ({_first_line(err)})", None
    if not isinstance(ckpt, dict):
        return f"is not a Lightning checkpoint (it holds a {type(ckpt).__name__}, not a dict)", None
    missing = [key for key in LIGHTNING_KEYS if key not in ckpt]
    if missing:
        keys = ", ".join(map(str, list(ckpt)[:6])) + (", ..." if len(ckpt) > 6 else "")
        return f"is not a Lightning checkpoint (it lacks {missing}; its keys: {keys})", None
    return None, ckpt


def loadable_checkpoints(folder: _PATH, exclude: _PATH | None = None, limit: int | None = None) -> list[Path]:
    """The ``*.ckpt`` files of ``folder`` (but ``exclude``) that ``inspect_checkpoint`` finds sound, newest first;
    at most ``limit`` of them (the newest are inspected first, so a folder of many checkpoints stays cheap)."""
    skip = Path(exclude).resolve() if exclude is not None else None
    files = [p for p in Path(folder).glob("*.ckpt") if p.is_file() and p.resolve() != skip]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    sound: list[Path] = []
    for path in files:
        if limit is not None and len(sound) >= limit:
            break
        if inspect_checkpoint(path)[0] is None:
            sound.append(path)
    return sound


def _saved_env(ckpt: dict[str, Any]) -> str | None:
    """The env id a ``ReplayDataModule`` (or any datamodule saving ``env_id`` beside its ``buffer``) recorded."""
    for value in ckpt.values():
        if isinstance(value, dict) and "env_id" in value and "buffer" in value:
            return str(value["env_id"])
    return None


def _resolve(class_path: str) -> object:
    """The class a class path names (the path itself where it does not import)."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return class_path


def check_checkpoint(path: _PATH, *, env_id: str | None = None, model_class: str | None = None) -> None:
    """Raise ``CheckpointError`` unless ``path`` is a sound Lightning checkpoint saved for ``env_id`` with
    ``model_class`` (each checked where given and recorded in the checkpoint; class paths are compared as the
    classes they import, so ``mbrl_lightning.agents.MPCAgent`` equals ``mbrl_lightning.agents.mpc.MPCAgent``).

    A truncated or foreign file's message names the newest checkpoint of the same folder that loads.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--ckpt_path {path}: no such file.{_instead(path)}")
    problem, ckpt = inspect_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f"--ckpt_path {path}: this file {problem}.{_instead(path)}")
    assert ckpt is not None
    saved_env = _saved_env(ckpt)
    if env_id is not None and saved_env is not None and saved_env != env_id:
        raise CheckpointError(f"--ckpt_path {path}: this checkpoint was saved by a run on env '{saved_env}', but this "
                              f"run's env is '{env_id}'. Resume it with its own run's config (config.yaml beside "
                              "its checkpoints/ folder), or leave out --ckpt_path to start anew.")
    saved_model = (ckpt.get("hyper_parameters") or {}).get("_class_path")
    if model_class is not None and saved_model is not None and _resolve(saved_model) != _resolve(model_class):
        raise CheckpointError(f"--ckpt_path {path}: this checkpoint holds a {saved_model}, but this run's model is "
                              f"{model_class}. Resume it with its own run's config (config.yaml beside its "
                              "checkpoints/ folder), or leave out --ckpt_path to start anew.")


def _instead(path: Path) -> str:
    """What to resume instead of the broken ``path``: the newest sound checkpoint of its folder, if any."""
    if not path.parent.is_dir():
        return ""
    sound = loadable_checkpoints(path.parent, exclude=path, limit=4)
    if not sound:
        return f" No other checkpoint in {path.parent} loads: leave out --ckpt_path to start the run anew."
    others = f" (others that load: {', '.join(p.name for p in sound[1:4])})" if len(sound) > 1 else ""
    return (f" The newest earlier checkpoint in the same folder loads: {sound[0].name}; resume with "
            f"--ckpt_path {sound[0]}{others}.")
