"""Writing files so that nothing a user had is lost: the one way every skood writer writes.

* :func:`check_output` resolves an output path (``..`` and symlinks) *before* checking it,
  and refuses an output that is, contains, or lies inside an input (a hard link included), a
  folder or special file (a device, a FIFO), or an existing file unless the caller allows
  replacing it.
* :func:`atomic_file` writes to a temporary file beside the target and moves it into place
  only when the write completed: a crash, Ctrl-C or a full disk leaves the old file or nothing,
  never a truncated file that reads as a complete one; without ``replace``, a file that appeared
  at the target meanwhile is kept.
* :func:`check_input_file` / :func:`read_input_file`: an input must be a regular file, read no
  further than its size (a FIFO would block, ``/dev/zero`` never end).
* :func:`atomic_directory` does the same for a folder of outputs: it is filled under a temporary
  name this run created, and renamed into place when complete. On failure only that temporary
  folder is removed; nothing skood did not create in this run is ever removed.
"""

from __future__ import annotations

import contextlib
import errno
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
    """``path`` made absolute with ``..`` and every symlink resolved.

    ``Path("missing/..").exists()`` is False although the path names the current folder: checks
    on the unresolved path are checks on another file than the one written. A ``~`` is a name
    like any other, as for :func:`open` (the shell expands it before skood sees it): a check on
    the expanded path would be a check on another file than the one read or written.
    """
    return Path(os.path.realpath(path))


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
    if not os.fspath(path).strip():  # "" would resolve to the working folder
        raise error(f"{what or 'the path'} is empty; give a file.")
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
        raise error(
            f"{shown} holds more than the {info.st_size} bytes it reports: it grew while it was "
            "read, or it is not a file on disk (a /proc file); read it once it is complete."
        )
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
    same = os.path.abspath(given) == str(target)
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
        Whether an existing regular *file* may be replaced (``--force``). A folder, a device, a
        FIFO or a socket never is.
    folder : bool
        Whether the output is a folder, created by this run.

    Raises
    ------
    ValueError
        The output is, contains or lies inside an input; exists (and may not be replaced); is a
        folder or a special file where a file is written; or the folder that would hold it does
        not exist.
    """
    target = check_not_input(path, inputs, what)
    shown = _shown(path, target, what)
    if folder and (target.exists() or target.is_symlink()):
        raise ValueError(f"{shown} exists; choose a new folder (nothing is replaced).")
    if not folder:
        if os.fspath(path).endswith(("/", os.sep)):
            raise ValueError(f"{shown} ends with a slash, as a folder does; give a file name.")
        _check_replaceable(target, shown, replace)
    if not target.parent.is_dir():
        where = "is not a folder" if target.parent.exists() else "does not exist; create it first"
        raise ValueError(f"{shown}: {target.parent} {where}.")
    return target


def _check_replaceable(target: Path, shown: str, replace: bool) -> None:
    """Refuse to put a file where a folder, a special file or (without ``replace``) a file is."""
    if target.is_symlink():  # still a link once resolved: a loop, which nothing can write through
        raise ValueError(f"{shown} is a symlink that leads nowhere (a loop); remove it first.")
    try:
        mode = target.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there (or its "folder" is a file)
        return
    if stat.S_ISDIR(mode):
        raise ValueError(f"{shown} is a folder; give a file name.")
    if not stat.S_ISREG(mode):  # replacing /dev/null or a FIFO would delete it
        raise ValueError(
            f"{shown} is {_file_kind(mode)}, not a regular file: skood replaces only files. "
            "Write to a file (`-` is standard output)."
        )
    if not replace:
        raise ValueError(f"{shown} exists; pass --force to replace it.")


def _temporary_prefix(target: Path) -> str:
    # Beside the target, so the rename stays on one file system; the name is cut so that a
    # target name of 255 characters (the most most file systems allow) still leaves room.
    return f".{target.name[:64]}."


def _put_in_place(tmp: str, target: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``target``; without ``replace``, never over anything that is there.

    The existence check at the start of a run is minutes old by now: a file created meanwhile
    (another run, the user) is kept. A hard link creates the name only if it is free, atomically;
    where the file system has no hard links, the check is repeated just before the rename.
    """
    if replace:
        _check_replaceable(target, os.fspath(target), True)
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST, "it appeared while this run wrote it, and was kept", os.fspath(target)
        ) from None
    except OSError:  # no hard links here
        if os.path.lexists(target):
            raise FileExistsError(
                errno.EEXIST, "it appeared meanwhile", os.fspath(target)
            ) from None
        os.rename(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike, mode: str = "wb", *, replace: bool = False, **open_kwargs
) -> Iterator:
    """Open a temporary file beside ``path``; move it to ``path`` when the block completes.

    On any exception (a write error, a full disk, Ctrl-C) the temporary file is removed and
    ``path`` is left as it was. An ``OSError`` is re-raised naming ``path`` and saying so.

    Parameters
    ----------
    path : path-like
        The file to write. Resolved first, so a symlink is written through.
    mode : {"wb", "w"}
        Binary or text.
    replace : bool, default=False
        Whether an existing regular file at ``path`` is replaced (keeping its permission bits;
        its other hard links keep the old contents). Without it, a file at ``path``, even one
        that appeared while the block ran, is never replaced: ``FileExistsError``. A folder, a
        device, a FIFO or a socket is never replaced.
    **open_kwargs
        Passed to :func:`open` (``encoding``, ``newline``).
    """
    target = resolve_path(path)
    tmp = None
    try:
        _check_replaceable(target, os.fspath(path), replace=True)  # special files: refused now
        fd, tmp = tempfile.mkstemp(
            dir=target.parent, prefix=_temporary_prefix(target), suffix=".tmp"
        )
        old = target.stat().st_mode if target.exists() else 0o666 & ~_UMASK
        os.chmod(tmp, stat.S_IMODE(old))
        with open(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _put_in_place(tmp, target, replace)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        before = "is unchanged" if os.path.lexists(target) else "was not created"
        raise OSError(
            exc.errno, f"writing {os.fspath(path)} failed ({exc.strerror or exc}); it {before}"
        ) from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; rename it to ``path`` when the block completes.

    ``path`` must not exist, and is not replaced if it appears meanwhile. On any exception only
    the temporary folder, which this call created, is removed.
    """
    target = resolve_path(path)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temporary_prefix(target), suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if os.path.lexists(target):  # appeared meanwhile: never replaced
            raise FileExistsError(errno.EEXIST, "it appeared while it was written; kept", str(path))
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
