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
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "atomic_directory",
    "atomic_file",
    "check_input_file",
    "check_not_input",
    "check_output",
    "read_input_file",
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


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def check_input_file(
    path: str | os.PathLike, what: str = "", *, error: type[Exception] = ValueError
) -> Path:
    """``path`` resolved, once it is known to lead (through any symlinks) to a regular file.

    Checked before anything opens it: opening a FIFO blocks until someone writes to it, a device
    such as ``/dev/zero`` never ends, and opening some devices acts on the device.

    Raises
    ------
    FileNotFoundError
        Nothing exists at the path.
    error
        The path is a directory, a device, a FIFO or a socket (``ValueError`` unless the caller
        names its own error class).
    """
    shown = f"{what} {os.fspath(path)}".strip()
    target = resolve_path(path)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{shown}: no such file") from None
    if not stat.S_ISREG(mode):
        raise error(f"{shown} is not a regular file ({_file_kind(mode)}); nothing was read.")
    return target


def read_input_file(
    path: str | os.PathLike, what: str = "", *, error: type[Exception] = ValueError
) -> bytes:
    """The bytes of a regular file (:func:`check_input_file`), read no further than its size.

    The file is opened non-blocking and checked again on what was opened, in case the path was
    swapped for a FIFO after the check; it is read to the size it had when opened, so the read is
    bounded by the file itself, and a file that grows meanwhile is refused.
    """
    shown = f"{what} {os.fspath(path)}".strip()
    target = check_input_file(path, what, error=error)
    fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{shown} is not a regular file ({_file_kind(info.st_mode)})")
        data = f.read(info.st_size + 1)
    if len(data) > info.st_size:
        raise error(f"{shown} grew while it was read; read it once it is fully written.")
    return data


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
