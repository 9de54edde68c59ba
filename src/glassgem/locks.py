"""One process per output folder: a lock file that a second `train --resume` or `experiment run` on the
same folder finds held, and refuses, naming the process that holds it.

`folder_lock(folder, option)` takes an exclusive advisory lock (flock) on FOLDER/.glassgem.lock and writes
who holds it (process id, host, start time, command line) into the file. The operating system drops the
lock when its process ends, however it ends, so a killed run never leaves a stale lock behind; the file
is removed when the holder finishes. Where flock does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import GlassgemError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".glassgem.lock"


def _holder_line() -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    return f"process {os.getpid()} on {socket.gethostname()} since {started}: {' '.join(sys.argv)}"


def _read(fd: int) -> str:
    try:
        return " ".join(os.pread(fd, 4096, 0).decode("utf-8", "replace").split()) or "a process that just started"
    except OSError:
        return "another process"


def _acquire(path: Path, option: str) -> int:
    """An open descriptor of `path` holding the lock; GlassgemError naming the holder when it is taken."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise GlassgemError(
                f"{option} {path.parent}: in use by another glassgem command ({holder}); wait for "
                f"it to finish or stop it (the lock is {path})"
            ) from None
        try:  # the holder before us may have removed the file after we opened it: lock the file that is there
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, option: str = "--out") -> Iterator[Path]:
    """Hold FOLDER/.glassgem.lock (the folder is created) for the `with` block; GlassgemError naming `option`,
    the folder and the holder when another process holds it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GlassgemError(f"{option} {folder}: not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    if fcntl is None:
        yield path
        return
    fd = _acquire(path, option)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_holder_line() + "\n").encode("utf-8", "backslashreplace"), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)  # releases the lock


__all__ = ["LOCK_NAME", "folder_lock"]
