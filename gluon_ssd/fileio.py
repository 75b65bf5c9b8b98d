"""Writing a file so that a reader (or a crash) never sees half of it.

Every file the library writes in place of an older one (parameter files, checkpoints, plots) goes through
:func:`atomic_path` or :func:`atomic_write`: the data is written to a temporary file in the target's folder,
flushed to disk, given the permissions a new file gets under the process umask (``0o666 & ~umask``: 0644
under the usual umask 022), renamed over the target with ``os.replace`` and the folder's entry is flushed
too. A crash at any point leaves either the previous file or the new one, never a mix; an exception in the
writer removes the temporary file and leaves the previous file as it was.

The temporary file is named ``.tmp-<random><ext of the target>``: hidden, and with the target's extension,
so writers that choose a format from the name (matplotlib) write the right one.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

__all__ = ["atomic_path", "atomic_save_ndarrays", "atomic_write", "current_umask", "TEMP_PREFIX"]

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    Linux reports it in ``/proc/self/status``. Elsewhere the only way is ``os.umask``, which sets a new
    value while returning the old one; it is set back at once, under a lock, so no other thread of this
    library creates a file in between (threads outside the library could, for those microseconds).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _fsync_folder(folder: str) -> None:
    # Makes the rename itself durable. Not every system can open a folder (Windows cannot); the file's
    # data is already on disk then, only the new name may be lost in a power cut.
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        log.debug("cannot open folder %s to flush its entries: %s", folder, err)
        return
    try:
        os.fsync(fd)
    except OSError as err:
        log.debug("cannot flush folder %s: %s", folder, err)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path) -> Iterator[str]:
    """A temporary path to write ``path``'s new content to; on success it replaces ``path`` atomically.

    For writers that take a file name (``mx.nd.save``, ``Trainer.save_states``). The folder of ``path`` is
    created when missing.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.

    Yields
    ------
    str
        An empty temporary file in the same folder as ``path``; the writer may also delete and recreate it.

    Raises
    ------
    FileNotFoundError
        The writer left no file at the temporary path.
    Any exception of the writer, after removing the temporary file (``path`` is left untouched).

    Examples
    --------
    >>> with atomic_path("model.params") as tmp:      # doctest: +SKIP
    ...     mx.nd.save(tmp, arrays)
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        if not os.path.isfile(tmp):
            raise FileNotFoundError(f"the writer of {path} left no file at its temporary path {tmp}; "
                                    "write the data to the path it was given")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        # mkstemp creates the file 0600; a new file of the user's gets what their umask allows.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_folder(folder)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """An open file whose content replaces ``path`` atomically when the ``with`` block ends without error.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its folder is created when missing.
    mode : {'wb', 'w'}
        Binary or text.
    encoding : str, optional
        Text mode only; default UTF-8.

    Raises
    ------
    ValueError
        ``mode`` is not a write mode.
    Any exception raised in the block, after removing the temporary file (``path`` is left untouched).

    Examples
    --------
    >>> with atomic_write("meta.json", "w") as f:     # doctest: +SKIP
    ...     json.dump(meta, f)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes a whole new file: mode must be 'wb' or 'w', got {mode!r}")
    if mode == "wb" and encoding is not None:
        raise ValueError("encoding applies to text mode: pass mode='w' with an encoding")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding or "utf-8") if mode == "w" else open(tmp, mode) as f:
            yield f


def atomic_save_ndarrays(path, arrays: dict) -> None:
    """``mx.nd.save(path, arrays)`` through :func:`atomic_path`: never a half file, umask permissions.

    Parameters
    ----------
    path : str or os.PathLike
        The MXNet parameter file to write.
    arrays : dict of str to mx.nd.NDArray
        {key: array} as ``mx.nd.save`` takes it.
    """
    import mxnet as mx  # optional: this module serves the PyTorch stack too, which has no MXNet

    with atomic_path(path) as tmp:
        mx.nd.save(tmp, arrays)
