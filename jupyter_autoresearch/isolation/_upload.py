"""The target's folder as one archive, for evaluation workers that do not share its storage.

Packed once on the caller's side and unpacked once per machine that evaluates
candidates (a Dask worker). Symbolic links are followed, so a linked data set travels
with the folder; session records, version control and caches stay behind.
"""

from __future__ import annotations

import glob
import io
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..protocol._errors import EvaluationError

__all__ = ["SKIPPED", "make_read_only", "pack_folder", "unpack_folder"]

#: Folders never uploaded: session records (candidates must not read them), version
#: control and caches.
SKIPPED = frozenset({".autoresearch", ".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints"})

_MB = 1024 * 1024


def _files(folder: Path) -> Iterator[tuple[Path, str, int]]:
    """Every regular file under ``folder`` (links followed, each folder once): path, name in the archive, size."""
    seen: set[tuple[int, int]] = set()
    pending = [(folder, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            info = directory.stat()
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue  # unreadable here: unreadable for candidates too
        if (info.st_dev, info.st_ino) in seen:
            continue  # a link back up the tree
        seen.add((info.st_dev, info.st_ino))
        for entry in entries:
            name = f"{prefix}{entry.name}"
            try:
                if entry.is_dir():
                    if entry.name not in SKIPPED:
                        pending.append((Path(entry.path), f"{name}/"))
                elif entry.is_file():
                    yield Path(entry.path), name, entry.stat().st_size
            except OSError:
                continue  # a dangling link


def pack_folder(folder: Path, limit_mb: float) -> bytes:
    """A compressed tar of ``folder``, refused when its files add up to more than ``limit_mb``.

    Raises:
        EvaluationError: the folder is larger than the limit (one line naming both ways out).
    """
    files = list(_files(folder))
    size = sum(size for _, _, size in files)
    if size > limit_mb * _MB:
        raise EvaluationError(
            f"the target's folder {folder} holds {size / _MB:.1f} MB, over the upload limit of {limit_mb:g} MB; "
            "raise --upload-limit, or put the folder on storage every Dask worker reads at the same path "
            "and pass --shared-folder"
        )
    buffer = io.BytesIO()
    # Level 1: most of what compression saves on data files, at a fraction of its time.
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1, dereference=True) as archive:
        for path, name, _ in files:
            try:
                archive.add(path, arcname=name, recursive=False)
            except OSError:
                continue  # gone or unreadable since it was listed
    return buffer.getvalue()


def unpack_folder(data: bytes, destination: Path) -> None:
    """Unpack an archive of :func:`pack_folder` into ``destination`` (created if needed)."""
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        archive.extractall(destination, filter="data")


def make_read_only(folder: Path, patterns: Sequence[str], before: Sequence[str] = ()) -> None:
    """Files matching ``patterns`` (globs relative to ``folder``) become read-only; those
    that matched ``before`` but no longer do become writable again."""

    def matching(globs: Sequence[str]) -> set[Path]:
        found = (folder / p for g in globs for p in glob.glob(g, root_dir=folder, recursive=True))
        return {p for p in found if p.is_file() and not p.is_symlink()}

    protected = matching(patterns)
    writable = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for path in matching(before) - protected:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    for path in protected:
        path.chmod(path.stat().st_mode & ~writable)
