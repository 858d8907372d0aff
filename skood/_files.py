"""Writing files so that nothing a user had is lost: the one way every skood writer writes.

* :func:`check_output` resolves an output path (``~``, ``..`` and symlinks) *before* checking it,
  and refuses an output that is, contains, or lies inside an input, or that exists (unless the
  caller allows replacing a file).
* :func:`atomic_file` writes to a temporary file beside the target and renames it into place
  only when the write completed: a crash, Ctrl-C or a full disk leaves the old file or nothing,
  never a truncated file that reads as a complete one.
* :func:`atomic_directory` does the same for a folder of outputs: it is filled under a temporary
  name this run created, and renamed into place when complete. On failure only that temporary
  folder is removed; nothing skood did not create in this run is ever removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "atomic_directory",
    "atomic_file",
    "check_input_file",
    "check_not_input",
    "check_output",
    "resolve_path",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp / mkdtemp create files and folders for their owner only; an output takes the mode a plain
# open() or mkdir() would give it. Read once, at import: os.umask can only be read by setting it.
_UMASK = _umask()


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` made absolute with ``~``, ``..`` and every symlink resolved.

    ``Path("missing/..").exists()`` is False although the path names the current folder: checks
    on the unresolved path are checks on another file than the one written.
    """
    return Path(os.path.realpath(Path(path).expanduser()))


def check_input_file(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` resolved, once it is known to be a regular file (symlinks followed).

    A missing path raises ``FileNotFoundError``; a folder, a device such as ``/dev/zero`` (read
    until memory runs out), a FIFO (a read blocks forever) or a socket raises ``ValueError``.
    """
    import stat

    shown = f"{what} {os.fspath(path)}".strip()
    target = resolve_path(path)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{shown}: no such file") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise ValueError(f"{shown} is {kind}; give a file.")
    return target


def _related(target: Path, given: Path) -> str | None:
    if target == given or (target.exists() and given.exists() and os.path.samefile(target, given)):
        return "is"  # the same path, or another name (a hard link) of the same file
    if given in target.parents:
        return "lies inside"
    if target in given.parents:
        return "contains"
    return None


def check_not_input(
    path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str
) -> Path:
    """``path`` resolved, once it is known not to be, contain or lie inside any of ``inputs``."""
    if not os.fspath(path).strip():  # "" resolves to the working folder
        raise ValueError(f"{what} is empty; give a path.")
    target = resolve_path(path)
    for given in inputs:
        if given is None:
            continue
        relation = _related(target, resolve_path(given))
        if relation:
            raise ValueError(
                f"{_shown(path, target, what)} {relation} the input {os.fspath(given)}: refusing "
                "to write there, since it could overwrite or remove what you gave. Choose a path "
                "outside every input."
            )
    return target


def _shown(path, target: Path, what: str) -> str:
    given = os.fspath(path)
    same = os.path.abspath(os.path.expanduser(given)) == str(target)
    return f"{what} {given}" + ("" if same else f" (= {target})")


def check_output(
    path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None] = (),
    *,
    what: str = "the output",
    replace: bool = False,
    folder: bool = False,
) -> Path:
    """Check that writing ``path`` loses nothing the user has; return it resolved.

    Parameters
    ----------
    path : path-like
        The output file (or, with ``folder``, the output folder) about to be written.
    inputs : iterable of path-like or None
        Files and folders this run reads; None entries are skipped.
    what : str
        How the error messages name the output (``"--out"``, ``"NEW"``).
    replace : bool
        Whether an existing *file* may be replaced (``--force``). An existing folder never is.
    folder : bool
        Whether the output is a folder, created by this run.

    Raises
    ------
    ValueError
        The output is, contains or lies inside an input; exists (and may not be replaced); is a
        folder where a file is written; or the folder that would hold it does not exist.
    """
    target = check_not_input(path, inputs, what)
    shown = _shown(path, target, what)
    if folder and (target.exists() or target.is_symlink()):
        raise ValueError(f"{shown} exists; choose a new folder (nothing is replaced).")
    if not folder and target.is_dir():
        raise ValueError(f"{shown} is a folder; give a file name.")
    if not folder and target.exists() and not replace:
        raise ValueError(f"{shown} exists; pass --force to replace it.")
    if not target.parent.is_dir():
        raise ValueError(f"{shown}: the folder {target.parent} does not exist; create it first.")
    return target


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", **open_kwargs) -> Iterator:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block completes.

    On any exception (a write error, a full disk, Ctrl-C) the temporary file is removed and
    ``path`` is left as it was. An ``OSError`` is re-raised naming the file and saying so.

    Parameters
    ----------
    path : path-like
        The file to write (replaced only when the block completes).
    mode : {"wb", "w"}
        Binary or text.
    **open_kwargs
        Passed to :func:`open` (``encoding``, ``newline``).
    """
    target = resolve_path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        before = "is unchanged" if target.exists() else "was not created"
        raise OSError(
            exc.errno, f"writing {os.fspath(path)} failed ({exc.strerror or exc}); it {before}"
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; rename it to ``path`` when the block completes.

    ``path`` must not exist. On any exception only the temporary folder, which this call
    created, is removed.
    """
    target = resolve_path(path)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if target.exists() or target.is_symlink():  # appeared meanwhile: never replaced
            raise FileExistsError(f"{os.fspath(path)} appeared while it was written; left as is")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
