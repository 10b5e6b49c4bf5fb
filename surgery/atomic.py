"""Atomic writes: a result file or folder either appears complete or not at all.

Everything is written to a temporary sibling first and renamed into place, so an error or an
interrupt never leaves a half-written result that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    make_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; move it onto `path` if the block succeeds.

    With `overwrite`, an existing folder at `path` is replaced only once the new one is complete.
    """
    path = Path(path)
    check_new_folder(path, overwrite=overwrite)
    make_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_parent(path: Path) -> None:
    """Create the folders above `path`; a file in the way is bad input (one line), not a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        from surgery.errors import FrankensteinError

        blocking = next(p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir())
        raise FrankensteinError(f"cannot write {path}: {blocking} is a file, not a folder") from None


def check_new_folder(path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """The check `atomic_dir` makes, for callers to make before the slow work that fills the folder:
    nothing may be at `path` unless `overwrite` (and then only a folder, never a file)."""
    from surgery.errors import FrankensteinError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FrankensteinError(f"{path} is a file; give a folder name")
    if path.exists() and not overwrite:
        raise FrankensteinError(f"{path} already exists (pass --overwrite to replace it)")


def replace_dir(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the complete folder `tmp` onto `path` (a sibling), replacing any folder there.

    The old folder is first renamed aside to `.<name>.old`, so at every moment `path` is either the
    old complete folder, missing, or the new one; never a mix.
    """
    tmp, path = Path(tmp), Path(path)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
